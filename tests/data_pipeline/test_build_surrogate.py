"""Surrogate and mixed labeling in the build: labeler per row, seeded solver fraction, running check,
reproducibility, resume rules, errors. A tiny surrogate is trained once on a small LBM dataset."""
import json
import shutil

import numpy as np
import pytest
import yaml

from data_pipeline import build
from data_pipeline.dataset import VoxelDataset, labeled_table
from data_pipeline.io import DataError, read_properties, read_volume
from data_pipeline.label_surrogate import RELERR, assign_labelers, solver_key

GENS = {"blobs": {"weight": 2, "porosity": {"uniform": [0.5, 0.8]}},
        "foam": {"porosity": {"uniform": [0.7, 0.9]}, "cell_size": 6.0}}
SIZE = 12
DIAG = ["k_xx", "k_yy", "k_zz"]
SOLVER = {"tol": 1e-5}


def build_dataset(cfg, **kw):
    """The build with the surrogate labeler the command line injects (data_pipeline never imports models)."""
    from models.surrogate import load_checked_surrogate
    return build.build_dataset(cfg, load_labeler=load_checked_surrogate, **kw)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny surrogate (12^3, porosity + diagonal k) trained for 2 epochs on 12 solver-labeled samples."""
    from models.surrogate import SurrogateConfig, SurrogateTrainer

    root = tmp_path_factory.mktemp("surrogate")
    data = build_dataset(build.BuildConfig(out=str(root / "train"), size=SIZE, n_samples=12, seed=100,
                                                 generators=GENS, solver=SOLVER, parallel="serial"), progress=False)
    cfg = SurrogateConfig(dims=3, input_size=SIZE, components=["porosity"] + DIAG, scales=2, channels=[4, 8],
                          head_width=16, batch_size=4, epochs=2, num_threads=1, device="cpu",
                          split_fractions=[0.6, 0.2, 0.2])
    SurrogateTrainer(cfg, data).fit(root / "run", log=None)
    return root / "run" / "best"


def cfg_for(out, model, **kw):
    base = dict(out=str(out), size=SIZE, n_samples=8, seed=0, generators=GENS, solver=SOLVER, parallel="serial",
                surrogate=str(model), surrogate_device="cpu")
    return build.BuildConfig(**{**base, **kw})


def test_surrogate_labels_every_row_without_the_solver(model, tmp_path, monkeypatch, capfd):
    def no_solver(*a, **k):
        raise AssertionError("the solver must not run with label: surrogate")
    monkeypatch.setattr(build, "label_sample", no_solver)
    out = build_dataset(cfg_for(tmp_path / "ds", model, label="surrogate", surrogate_batch_size=3),
                              progress=False)
    props = read_properties(out)
    assert len(props) == 8 and (props.labeler == "surrogate").all() and (props.status == "ok").all()
    assert (props[DIAG] > 0).all().all() and "k_xy" not in props.columns  # the model predicts the diagonal only
    for sid, phi in zip(props.sample_id, props.porosity):  # porosity measured, not predicted
        assert read_volume(out / "volumes" / f"{sid}.tif").mean() == pytest.approx(phi)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["label"] == "surrogate" and meta["solver"] is None
    assert meta["labeling"]["surrogate"]["folder"] == str(model)
    assert meta["labeling"]["labelers"] == {"surrogate": 8}
    assert len(VoxelDataset(out, split="all")) == 8 and labeled_table(out, labelers=["lbm"]).empty
    capfd.readouterr()
    build_dataset(cfg_for(tmp_path / "ds", model, label="surrogate"), progress=False)
    assert "8 already labeled, labeling 0" in capfd.readouterr().out


def test_mixed_records_labeler_per_row_and_reproduces(model, tmp_path, capfd):
    cfg = cfg_for(tmp_path / "a", model, label="mixed", lbm_fraction=0.5, n_samples=10, seed=4)
    out = build_dataset(cfg, progress=False)
    printed = capfd.readouterr().out
    props = read_properties(out).set_index("sample_id")
    expected = assign_labelers(list(props.index), "mixed", 0.5, seed=4)
    assert props.labeler.to_dict() == expected  # the seeded rule, row by row
    lbm = props[props.labeler == "lbm"]
    sur = props[props.labeler == "surrogate"]
    assert len(lbm) == sum(solver_key(4, s) < 0.5 for s in props.index) and len(lbm) >= 2 and len(sur) >= 2
    assert (props.status == "ok").all() and (props[DIAG] > 0).all().all()
    # running check: relative error of the surrogate on every solver row, nothing on surrogate rows
    for c in [f"{RELERR}_{k}" for k in DIAG] + [RELERR]:
        assert lbm[c].notna().all() and sur[c].isna().all()
    rel = (lbm[[f"{RELERR}_{k}" for k in DIAG]]).max(axis=1)
    np.testing.assert_allclose(lbm[RELERR], rel)
    assert lbm.converged.astype(bool).all() and sur.steps.isna().all()
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    check = meta["labeling"]["surrogate_check"]
    assert check["n"] == len(lbm) and check["median_max_diag"] == pytest.approx(float(np.median(lbm[RELERR])))
    assert meta["labeling"]["labelers"] == {"lbm": len(lbm), "surrogate": len(sur)}
    assert meta["labeling"]["lbm_fraction"] == 0.5 and meta["solver"] == SOLVER
    assert f"{len(lbm)} lbm, {len(sur)} surrogate" in printed and "running check: surrogate median rel. err" in printed
    assert list(labeled_table(out, labelers=["lbm"]).sample_id) == list(lbm.index)
    assert len(VoxelDataset(out, split="all", labelers=["surrogate"])) == len(sur)

    # the same seed into another folder: same assignment, same values
    again = read_properties(build_dataset(cfg_for(tmp_path / "b", model, label="mixed", lbm_fraction=0.5,
                                                        n_samples=10, seed=4), progress=False)).set_index("sample_id")
    assert again.labeler.equals(props.labeler)
    cols = ["porosity", *DIAG, "k_xy", "k_xz", "k_yz", "steps", RELERR]
    np.testing.assert_array_equal(again[cols].to_numpy(float), props[cols].to_numpy(float))
    # another seed: another assignment (same rule)
    other = assign_labelers(list(props.index), "mixed", 0.5, seed=5)
    assert other != expected


def test_assignment_is_per_sample_nested_and_near_the_fraction():
    ids = [f"s{i:05d}" for i in range(4000)]
    a = assign_labelers(ids, "mixed", 0.3, seed=7)
    assert assign_labelers(ids[:100], "mixed", 0.3, seed=7) == {s: a[s] for s in ids[:100]}  # independent of n
    assert assign_labelers(ids[::-1], "mixed", 0.3, seed=7) == a  # and of order
    b = assign_labelers(ids, "mixed", 0.6, seed=7)
    assert {s for s in ids if a[s] == "lbm"} <= {s for s in ids if b[s] == "lbm"}  # a larger fraction adds
    assert sum(v == "lbm" for v in a.values()) / 4000 == pytest.approx(0.3, abs=0.03)  # 4 sigma
    assert set(assign_labelers(ids, "mixed", 0.0).values()) == {"surrogate"}
    assert set(assign_labelers(ids, "mixed", 1.0).values()) == {"lbm"}


def test_resume_rules_mode_change_and_model_change(model, tmp_path, capfd):
    out = build_dataset(cfg_for(tmp_path / "ds", model, label="mixed", lbm_fraction=0.5, n_samples=6,
                                      seed=4), progress=False)
    first = read_properties(out).set_index("sample_id")
    n_lbm = int((first.labeler == "lbm").sum())
    capfd.readouterr()
    # label: surrogate keeps the solver rows (never replaced by a cheaper label)
    build_dataset(cfg_for(tmp_path / "ds", model, label="surrogate", n_samples=6, seed=4), progress=False)
    assert "6 already labeled, labeling 0" in capfd.readouterr().out
    # a different model: its surrogate rows are relabeled, the check recomputed, the model recorded
    other = tmp_path / "other_model"
    shutil.copytree(model, other)
    norm = json.loads((other / "norm.json").read_text())
    norm["mean"] = [m + 0.3 for m in norm["mean"]]  # shifts every log10 k prediction
    (other / "norm.json").write_text(json.dumps(norm))
    build_dataset(cfg_for(tmp_path / "ds", other, label="surrogate", n_samples=6, seed=4), progress=False)
    assert f"{n_lbm} already labeled, labeling {6 - n_lbm}" in capfd.readouterr().out
    second = read_properties(out).set_index("sample_id")
    s_ids = first.index[first.labeler == "surrogate"]
    l_ids = first.index[first.labeler == "lbm"]
    assert (second.loc[s_ids, "k_xx"] != first.loc[s_ids, "k_xx"]).all()
    assert second.loc[l_ids, "k_xx"].equals(first.loc[l_ids, "k_xx"])  # solver rows untouched ...
    assert (second.loc[l_ids, RELERR] != first.loc[l_ids, RELERR]).all()  # ... but checked against the new model
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["labeling"]["surrogate"]["folder"] == str(other)
    # label: lbm relabels exactly the surrogate rows with the solver, keeps the solver rows as they were
    capfd.readouterr()
    build_dataset(cfg_for(tmp_path / "ds", model, label="lbm", n_samples=6, seed=4), progress=False)
    assert f"{n_lbm} already labeled, labeling {6 - n_lbm}" in capfd.readouterr().out
    third = read_properties(out).set_index("sample_id")
    assert (third.labeler == "lbm").all() and (third.status == "ok").all()
    assert third.loc[l_ids, "seconds"].equals(first.loc[l_ids, "seconds"])


def test_errors_missing_model_mismatch_fraction(model, tmp_path):
    with pytest.raises(DataError, match="label: surrogate needs a trained surrogate"):
        build.BuildConfig(out=str(tmp_path / "x"), label="surrogate")
    with pytest.raises(DataError, match="label: mixed needs a trained surrogate"):
        build.BuildConfig(out=str(tmp_path / "x"), label="mixed", lbm_fraction=0.5)
    with pytest.raises(DataError, match=r"lbm_fraction must be in \[0, 1\], got 1.5"):
        build.BuildConfig(out=str(tmp_path / "x"), label="mixed", surrogate=str(model), lbm_fraction=1.5)
    with pytest.raises(DataError, match="is not a folder"):
        build_dataset(cfg_for(tmp_path / "x", tmp_path / "nope", label="surrogate"), progress=False)
    with pytest.raises(DataError, match="config.json: missing"):
        build_dataset(cfg_for(tmp_path / "x", tmp_path, label="surrogate"), progress=False)
    with pytest.raises(DataError, match=r"takes dims 3 volumes of 12\^3 voxels; the dataset has dims 3, shape \[16"):
        build_dataset(cfg_for(tmp_path / "x", model, label="mixed", size=16), progress=False)
    with pytest.raises(DataError, match="the dataset has dims 2"):
        build_dataset(cfg_for(tmp_path / "x", model, label="surrogate", dims=2), progress=False)
    assert not (tmp_path / "x").exists()  # refused before anything is written
    # the command line: same checks, exit status 2 with the reason
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({"out": str(tmp_path / "y"), "size": 16, "n_samples": 2, "generators": GENS}))
    assert build.main(["--config", str(cfg_path), "--label", "mixed", "--no-progress"]) == 2
    assert build.main(["--config", str(cfg_path), "--label", "mixed", "--surrogate", str(model),
                       "--lbm-fraction", "-0.1", "--no-progress"]) == 2
    assert build.main(["--config", str(cfg_path), "--label", "surrogate", "--surrogate", str(model),
                       "--no-progress"]) == 2
    assert build.load_build_config(cfg_path, label="mixed", surrogate=str(model), lbm_fraction=0.25).lbm_fraction == 0.25


@pytest.mark.slow
def test_mixed_through_ray_matches_serial(model, tmp_path):
    kw = dict(label="mixed", lbm_fraction=0.5, n_samples=6, seed=4)
    ray_out = build_dataset(cfg_for(tmp_path / "ray", model, parallel="ray", num_cpus=2, **kw), progress=False)
    ser_out = build_dataset(cfg_for(tmp_path / "ser", model, **kw), progress=False)
    a, b = read_properties(ray_out).set_index("sample_id"), read_properties(ser_out).set_index("sample_id")
    assert a.labeler.equals(b.labeler) and (a.labeler == "lbm").any()
    cols = ["porosity", *DIAG, RELERR]
    np.testing.assert_array_equal(a[cols].to_numpy(float), b[cols].to_numpy(float))
