"""The build: config checks, deterministic plan, labeling (real LBM solver), Ray, resume after a kill."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from data_pipeline import build
from data_pipeline.dataset import VoxelDataset
from data_pipeline.io import DataError, property_columns, read_properties, read_volume

ROOT = Path(__file__).resolve().parents[2]
GENS = {"blobs": {"weight": 2, "porosity": {"uniform": [0.5, 0.8]}},
        "foam": {"porosity": {"uniform": [0.7, 0.9]}, "cell_size": 6.0}}


def write_cfg(path: Path, **kw) -> Path:
    cfg = {"out": str(path.parent / "ds"), "size": 12, "n_samples": 4, "generators": GENS, **kw}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_unknown_key_names_key_and_file(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml", n_sampels=3)
    with pytest.raises(DataError, match=r"c.yaml: unknown config key\(s\) \['n_sampels'\]"):
        build.load_build_config(cfg)
    with pytest.raises(DataError, match="unknown generator 'sponge'"):
        build.BuildConfig(out="x", generators={"sponge": {}})
    assert build.load_build_config(write_cfg(tmp_path / "d.yaml"), n_samples=7).n_samples == 7


def test_plan_is_per_sample_deterministic():
    a = build.BuildConfig(out="x", n_samples=5, generators=GENS, seed=1)
    b = build.BuildConfig(out="x", n_samples=50, generators=GENS, seed=1)
    plans = [build.plan_sample(a, i) for i in range(5)]
    assert plans == [build.plan_sample(b, i) for i in range(5)]  # independent of n_samples
    assert plans != [build.plan_sample(build.BuildConfig(out="x", generators=GENS, seed=2), i) for i in range(5)]
    assert {p["generator"] for p in [build.plan_sample(b, i) for i in range(50)]} == {"blobs", "foam"}
    assert all(0.5 <= p["params"]["porosity"] <= 0.9 for p in plans)


def test_label_sample_straight_duct_and_failure():
    im = np.zeros((8, 12, 12), bool)
    im[:, 4:8, 4:8] = True  # square duct along z, side a = 4
    row = build.label_sample(im, {"tol": 1e-6})
    assert row["status"] == "ok" and row["porosity"] == pytest.approx(16 / 144)
    # Poiseuille flow in a square duct: k = 0.035144 a^4 / A_box (whole-volume average)
    assert row["k_zz"] == pytest.approx(0.0351443 * 4 ** 4 / 144, rel=0.1)
    assert abs(row["k_xx"]) < 1e-8 and abs(row["k_yy"]) < 1e-8
    bad = build.label_sample(np.zeros((6, 6, 6), bool))
    assert bad["status"] == "failed" and "SolverError" in bad["error"]


def test_build_with_ray_then_rerun_labels_nothing(tmp_path, capfd):
    cfg = build.load_build_config(write_cfg(tmp_path / "c.yaml", num_cpus=2, n_samples=5))
    out = build.build_dataset(cfg, progress=False)
    props = read_properties(out)
    cols = property_columns(3)
    assert list(props.columns[:len(cols)]) == cols
    assert list(props.sample_id) == [f"s{i:05d}" for i in range(5)]
    assert (props.status == "ok").all() and (props.labeler == "lbm").all()
    assert (props[["k_xx", "k_yy", "k_zz"]] > 0).all().all()
    for sid, phi in zip(props.sample_id, props.porosity):
        assert read_volume(out / "volumes" / f"{sid}.tif").mean() == pytest.approx(phi)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["dims"] == 3 and meta["shape"] == [12, 12, 12] and meta["label"] == "lbm"
    assert meta["source"]["generators"] == GENS and meta["source"]["seed"] == 0
    samples = pd.read_csv(out / "samples.csv")
    assert set(samples.generator) <= {"blobs", "foam"}
    capfd.readouterr()
    build.build_dataset(cfg, progress=False)
    assert "5 already labeled, labeling 0" in capfd.readouterr().out
    assert read_properties(out).equals(props)
    ds = VoxelDataset(out, split="all")
    assert len(ds) == 5 and ds[0][1].shape == (4,)
    # a different config into the same folder is refused
    with pytest.raises(DataError, match=r"different config \(fields \['seed'\]\)"):
        build.build_dataset(build.load_build_config(tmp_path / "c.yaml", seed=5), progress=False)


def test_killed_build_resumes_without_relabeling(tmp_path):
    cfg_path = write_cfg(tmp_path / "c.yaml", n_samples=10, size=16, parallel="serial")
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "data_pipeline", "build", "--config", str(cfg_path)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "ds"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if (out / "properties.csv").is_file() and len(read_properties(out)) >= 2:
                break
            assert proc.poll() is None, "the build ended before it could be interrupted"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the hardest interruption: no cleanup runs
    finally:
        proc.wait()
    before = read_properties(out)  # a whole CSV: written atomically
    n_before = len(before)
    assert 2 <= n_before < 10 and (before.status == "ok").all()
    cfg = build.load_build_config(cfg_path)
    labeled = []
    real = build.label_sample

    def spy(im, solver=None, label="lbm"):  # records calls, runs the real labeler
        labeled.append(im.mean())
        return real(im, solver, label)
    build.label_sample = spy
    try:
        build.build_dataset(cfg, progress=False)
    finally:
        build.label_sample = real
    after = read_properties(out).set_index("sample_id")
    assert len(labeled) == 10 - n_before and len(after) == 10 and (after.status == "ok").all()
    for _, row in before.iterrows():  # finished rows untouched (same solve time and steps)
        assert after.loc[row.sample_id, "seconds"] == row.seconds and after.loc[row.sample_id, "steps"] == row.steps


def test_failures_are_rows_and_porosity_only_label(tmp_path):
    gens = {"tight": {"generator": "spheres", "porosity": 0.2, "radius": 3, "overlap": False},
            "blobs": {"porosity": 0.6}}
    cfg = build.BuildConfig(out=str(tmp_path / "ds"), size=12, n_samples=6, generators=gens, label="none")
    out = build.build_dataset(cfg, progress=False)
    props = read_properties(out).set_index("sample_id")
    plans = {build.plan_sample(cfg, i)["sample_id"]: build.plan_sample(cfg, i)["family"] for i in range(6)}
    assert set(plans.values()) == {"tight", "blobs"}
    for sid, fam in plans.items():
        if fam == "tight":
            assert props.loc[sid, "status"] == "failed" and "too low for non-overlapping" in props.loc[sid, "error"]
        else:
            assert props.loc[sid, "status"] == "ok" and props.loc[sid, "porosity"] == pytest.approx(0.6, abs=1e-3)
    assert "k_xx" not in props.columns  # porosity only: no empty permeability columns
    assert len(VoxelDataset(out, split="all", properties=["porosity"])) == 6 - list(plans.values()).count("tight")
    with pytest.raises(DataError, match=r"solver: unknown option\(s\) \['tolerance'\]"):
        build.build_dataset(build.BuildConfig(out=str(tmp_path / "d2"), size=8, n_samples=1, generators=gens,
                                              solver={"tolerance": 1e-5}), progress=False)


def test_a_datasets_own_yaml_as_build_config_names_the_label_route(tmp_path):
    from data_pipeline.io import write_yaml

    ds = tmp_path / "imported"
    ds.mkdir()
    write_yaml(ds / "dataset.yaml", {"dims": 2, "shape": [8, 8], "pore": "uint8", "label": "none"})
    with pytest.raises(DataError, match=r"not a build config; to label its volumes run `python -m data_pipeline "
                                         r"label .*imported`, or build with a config that has `source: "):
        build.load_build_config(ds / "dataset.yaml")


def test_label_verb_labels_an_imported_folder_in_place(tmp_path):
    """import -> label: the volumes stay, properties.csv gets a D2Q9 row per sample (failed ones too)."""
    import numpy as np
    import pandas as pd

    from data_pipeline.importers import import_volumes
    from data_pipeline.label import main as label_main

    src = tmp_path / "tif"
    src.mkdir()
    import tifffile

    im = np.zeros((16, 16), np.uint8)
    im[6:10, :] = 1  # a slit along x: k_xx > 0, k_yy = 0
    tifffile.imwrite(src / "slit.tif", im)
    tifffile.imwrite(src / "closed.tif", np.zeros((16, 16), np.uint8))  # no pore: a failed row, kept
    ds = import_volumes("images2d", [src], tmp_path / "data", voxel_size=1e-6)
    assert label_main([str(ds), "--serial", "--no-progress"]) == 0
    props = pd.read_csv(ds / "properties.csv").set_index("sample_id")
    assert list(props.index.sort_values()) == ["closed", "slit"]
    assert props.loc["slit", "status"] == "ok" and props.loc["slit", "k_xx"] > 0 and props.loc["slit", "k_yy"] == 0
    assert props.loc["closed", "status"] == "failed" and props.loc["closed", "error"]
    meta = yaml.safe_load((ds / "dataset.yaml").read_text())
    assert meta["dims"] == 2 and meta["voxel_size"] == 1e-6 and meta["label"] == "lbm"
    # the build record names the source, not the synthesis defaults (dims 3, size 32, a blobs generator)
    assert meta["build"]["identity"] == {"source": str(ds)}
    assert not {"dims", "size", "n_samples", "seed", "generators"} & set(meta["build"]["config"])
    # an older record with the synthesis fields too still resumes (only the source identifies the build)
    meta["build"]["identity"].update(dims=3, size=32, seed=0)
    (ds / "dataset.yaml").write_text(yaml.safe_dump(meta))
    assert label_main([str(ds), "--serial", "--no-progress"]) == 0


def test_recheck_percolation_relabels_rows_the_topology_test_contradicts(tmp_path, capsys):
    """A row written by the topology test before its 2026-12-02 fix (k_xx = 0 on a slit that
    percolates along x) is found and relabeled; rows that agree are left as they are."""
    import tifffile

    from data_pipeline.importers import import_volumes
    from data_pipeline.io import write_properties
    from data_pipeline.label import main as label_main

    src = tmp_path / "tif"
    src.mkdir()
    for name, rows in {"slit_a": slice(6, 10), "slit_b": slice(3, 8)}.items():
        im = np.zeros((16, 16), np.uint8)
        im[rows, :] = 1  # along x: k_xx > 0, k_yy = 0
        tifffile.imwrite(src / f"{name}.tif", im)
    ds = import_volumes("images2d", [src], tmp_path / "data")
    assert label_main([str(ds), "--serial", "--no-progress"]) == 0
    good = pd.read_csv(ds / "properties.csv").set_index("sample_id")
    assert (good["k_xx"] > 0).all() and (good["k_yy"] == 0).all()
    stale = good.copy()
    stale.loc["slit_a", ["k_xx", "steps"]] = [0.0, 0]  # what the old test could write
    write_properties(ds, stale.reset_index())
    assert label_main([str(ds), "--serial", "--no-progress"]) == 0  # a plain rerun keeps the row
    assert pd.read_csv(ds / "properties.csv").set_index("sample_id").loc["slit_a", "k_xx"] == 0
    capsys.readouterr()
    assert label_main([str(ds), "--serial", "--no-progress", "--recheck-percolation"]) == 0
    assert "1 solver row(s) with k = 0 on an axis the topology test finds percolating" in capsys.readouterr().out
    after = pd.read_csv(ds / "properties.csv").set_index("sample_id")
    assert after.loc["slit_a", "k_xx"] == pytest.approx(good.loc["slit_a", "k_xx"], rel=1e-6)
    assert after.loc["slit_a", "steps"] > 0 and after.loc["slit_a", "k_yy"] == 0
    assert after.loc["slit_b"].equals(good.loc["slit_b"])  # untouched
