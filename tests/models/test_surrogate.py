"""The multiscale CNN surrogate: config, shapes, learning beats the mean, checkpoints, resume, CLI."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from data_pipeline.io import read_properties, write_properties
from models.surrogate import (MultiscaleCNN, SurrogateConfig, SurrogateTrainer, load_surrogate,
                              load_surrogate_config, main)
from models.surrogate.evaluate import evaluate_surrogate
from models.toy import make_toy_dataset

PROPS3 = ["porosity", "k_xx", "k_yy", "k_zz"]


@pytest.fixture(scope="module")
def toy3d(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("sur3d"), n=100, size=16, dims=3, seed=0)


@pytest.fixture(scope="module")
def toy2d(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("sur2d"), n=40, size=16, dims=2, seed=1)


def cfg3d(**kw):
    base = dict(dims=3, input_size=16, components=PROPS3, scales=2, channels=[8, 16], head_width=32,
                batch_size=8, epochs=2, num_threads=1, lr=3e-3, split_fractions=[0.6, 0.2, 0.2])
    return SurrogateConfig(**{**base, **kw})


# --- config -------------------------------------------------------------------------------------
def test_config_defaults_and_round_trip():
    cfg = SurrogateConfig()
    assert cfg.components == ["porosity", "k_xx", "k_yy", "k_zz", "k_xy", "k_xz", "k_yz"]
    assert SurrogateConfig(dims=2, input_size=16).components == ["porosity", "k_xx", "k_yy", "k_xy"]
    assert SurrogateConfig.from_dict(cfg.to_dict()) == cfg
    # integers arriving as floats from a search space
    assert SurrogateConfig.from_dict({"batch_size": 8.0, "scales": 2.0}).batch_size == 8


@pytest.mark.parametrize("bad, field", [({"latent_dim": 4}, "latent_dim"), ({"components": ["k_zz"], "dims": 2}, "components"),
                                        ({"input_size": 18, "scales": 3}, "input_size"), ({"norm": "layer"}, "norm")])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        SurrogateConfig.from_dict(bad)


@pytest.mark.parametrize("name, dims, size", [("surrogate_smoke.yaml", 3, 16), ("surrogate_32.yaml", 3, 32),
                                              ("surrogate_2d.yaml", 2, 64)])
def test_shipped_configs_load(name, dims, size):
    from pathlib import Path

    cfg = load_surrogate_config(Path(__file__).resolve().parents[2] / "configs" / name)
    assert (cfg.dims, cfg.input_size) == (dims, size)
    assert all(c[-2] in "xyz"[:dims] and c[-1] in "xyz"[:dims] for c in cfg.components if c.startswith("k_"))


def test_config_file_error_names_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("lr: 0.01\nbogus: 1\n")
    with pytest.raises(ValueError, match="s.yaml.*bogus"):
        load_surrogate_config(path)


# --- model --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims, size, scales", [(2, 16, 3), (2, 20, 2), (3, 16, 3), (3, 24, 2)])
def test_model_shapes(dims, size, scales):
    model = MultiscaleCNN(dims, size, n_outputs=5, scales=scales, channels=[4, 8, 8])
    x = (torch.rand(3, 1, *(size,) * dims) < 0.4).float()
    assert model(x).shape == (3, 5)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.zeros(3, 1, *(size + 2,) * dims))


def test_model_sees_periodic_shift_as_the_same_volume():
    """Circular padding + global pooling: a periodic translation (same physics) gives the same output."""
    torch.manual_seed(0)
    model = MultiscaleCNN(3, 16, n_outputs=3, scales=2, channels=[4, 8]).eval()
    x = (torch.rand(2, 1, 16, 16, 16) < 0.4).float()
    # shifts by multiples of the coarsest branch's total stride (pool 2 x two stride-2 stages = 8)
    shifted = torch.roll(x, shifts=(8, 0, 8), dims=(2, 3, 4))
    torch.testing.assert_close(model(x), model(shifted), atol=1e-5, rtol=1e-4)


# --- training -----------------------------------------------------------------------------------
def test_tiny_surrogate_beats_the_mean_on_held_out_data(toy3d, tmp_path):
    t = SurrogateTrainer(cfg3d(epochs=25, patience=0), toy3d)
    assert len(t.augmenter) == 48
    summary = t.fit(tmp_path / "run", log=None)
    m = t.evaluate("test", out_dir=tmp_path / "eval")
    assert m["n_samples"] == 20
    # normalized MSE far below predicting the training mean, R^2 of log10 k clearly positive
    assert m["mse_norm"] < 0.25 * m["mse_norm_mean_baseline"], m
    assert m["r2_log_k_diag"] > 0.6 and m["r2_porosity"] > 0.8, m
    assert m["medrel_k"] < 0.5
    for name in ("parity.png", "error_vs_porosity.png", "loss_curves.png", "metrics.json"):
        assert (tmp_path / "eval" / name).is_file()
    # the best checkpoint reloads weights-only and predicts exactly what the trained model predicts
    sur = load_surrogate(summary["best_dir"])
    ims = t.val_set.volumes()
    np.testing.assert_allclose(sur.predict_log(ims), t.surrogate().predict_log(ims), rtol=1e-6, atol=1e-6)
    rows = sur.predict(ims[:2])
    assert set(rows[0]) == {"porosity", "pred_porosity", "k_xx", "k_yy", "k_zz"}
    assert rows[0]["porosity"] == pytest.approx(ims[0].mean())
    assert all(r["k_xx"] > 0 for r in rows)
    # test-time augmentation over the 48 symmetries: still a valid prediction of the same quality
    m_tta = evaluate_surrogate(sur, toy3d, tta=True)
    assert m_tta["r2_log_k_diag"] > 0.6


def test_resume_reproduces_an_uninterrupted_run(toy2d, tmp_path):
    cfg = SurrogateConfig(dims=2, input_size=16, components=["porosity", "k_xx", "k_yy"], scales=2,
                          channels=[4, 8], head_width=16, batch_size=8, epochs=3, num_threads=1)
    full = SurrogateTrainer(cfg, toy2d)
    hist_full = [full.train_epoch() for _ in range(3)]
    part = SurrogateTrainer(cfg, toy2d)
    part.train_epoch()
    part.save_checkpoint(tmp_path / "last")
    resumed = SurrogateTrainer.resume(tmp_path / "last", toy2d)
    hist = [resumed.train_epoch() for _ in range(2)]
    for a, b in zip(hist_full[1:], hist):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    state = torch.load(tmp_path / "last" / "train_state.pt", weights_only=True)
    assert "augment_rng" in state
    assert json.loads((tmp_path / "last" / "metrics.json").read_text())["kind"] == "permeability-surrogate"


def test_wrong_input_shape_and_pvae_folder_are_clear_errors(toy2d, tmp_path):
    cfg = SurrogateConfig(dims=2, input_size=32, components=["porosity", "k_xx"], scales=2, channels=[4])
    with pytest.raises(ValueError, match="input_size 32"):
        SurrogateTrainer(cfg, toy2d)
    (tmp_path / "pvae").mkdir()
    (tmp_path / "pvae" / "config.json").write_text(json.dumps({"latent_dim": 8}))
    with pytest.raises(ValueError, match="pVAE checkpoint"):
        load_surrogate(tmp_path / "pvae")


# --- command line -------------------------------------------------------------------------------
def test_cli_train_evaluate_predict_labels_a_folder(toy2d, tmp_path, capsys):
    out = tmp_path / "run"
    sets = ["dims=2", "input_size=16", "components=[porosity,k_xx,k_yy,k_xy]", "scales=2", "channels=[4,8]",
            "epochs=2", "num_threads=1", "batch_size=8"]
    assert main(["train", "--dataset", str(toy2d), "--out", str(out)] + sum([["--set", s] for s in sets], [])) == 0
    assert (out / "best" / "model.safetensors").is_file() and (out / "eval" / "parity.png").is_file()
    assert main(["evaluate", "--checkpoint", str(out / "best"), "--dataset", str(toy2d), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"r2_k_xx", "medrel_k", "medrel_offdiag", "mse_norm_mean_baseline"} <= set(metrics)

    # a folder where half the samples have a solver label: predict fills only the others
    props = read_properties(toy2d)
    solver_ids = set(props["sample_id"][::2])
    write_properties(toy2d, props[props["sample_id"].isin(solver_ids)].assign(labeler="lbm"))
    try:
        csv = tmp_path / "pred.csv"
        assert main(["predict", "--checkpoint", str(out / "best"), "--dataset", str(toy2d), "--out", str(csv),
                     "--write-properties"]) == 0
        pred = pd.read_csv(csv, dtype={"sample_id": str})
        assert len(pred) == 40 and pred["labeler"].str.startswith("surrogate:").all()
        merged = read_properties(toy2d)
        assert len(merged) == 40 and merged["sample_id"].is_unique
        by = merged.set_index("sample_id")["labeler"]
        assert all(by[s] == "lbm" for s in solver_ids)
        assert all(by[s].startswith("surrogate:") for s in set(by.index) - solver_ids)
    finally:
        write_properties(toy2d, props)
    assert main(["predict", "--checkpoint", str(tmp_path / "nope"), "--dataset", str(toy2d)]) == 2
    assert "not a surrogate checkpoint" in capsys.readouterr().err


# --- k = 0: a percolation class, not a number -------------------------------------------------------
@pytest.fixture(scope="module")
def solver2d(tmp_path_factory):
    """30 blob images (16x16) labeled by the D2Q9 solver; at porosity 0.3-0.55 some do not percolate
    along an axis (k = 0 there)."""
    from data_pipeline.io import property_columns, write_volume
    from data_pipeline.permeability import permeability
    from data_pipeline.synth import blobs
    from core.io import write_yaml

    root = tmp_path_factory.mktemp("solver2d")
    rows = []
    for i, phi in enumerate(np.linspace(0.3, 0.55, 30)):
        im = blobs((16, 16), porosity=float(phi), blobiness=1.0, seed=i)
        write_volume(root / "volumes" / f"s{i:03d}.tif", im)
        res = permeability(im, tol=1e-4, device="cpu")
        rows.append({"sample_id": f"s{i:03d}", "porosity": res.porosity, "k_xx": res.k[0, 0], "k_yy": res.k[1, 1],
                     "k_xy": res.k[0, 1], "steps": res.steps, "converged": res.converged, "residual": res.residual,
                     "max_mach": res.max_mach, "labeler": "lbm", "status": "ok", "error": ""})
    write_yaml(root / "dataset.yaml", {"dims": 2, "shape": [16, 16], "voxel_size": None, "pore": 1})
    df = pd.DataFrame(rows)
    write_properties(root, df[[c for c in property_columns(2) if c in df.columns]])
    return root


def test_non_percolating_k_is_left_out_of_training_and_predicted_as_zero(solver2d, tmp_path):
    cfg = SurrogateConfig(dims=2, input_size=16, components=["porosity", "k_xx", "k_yy"], scales=2,
                          channels=[8, 16], head_width=16, batch_size=8, epochs=2, num_threads=1,
                          split_fractions=[0.6, 0.2, 0.2])
    t = SurrogateTrainer(cfg, solver2d)
    raw = t.train_set.targets  # (N, 3) porosity, k_xx, k_yy from the solver
    zero = raw[:, 1:] == 0
    assert zero.any() and (~zero).any(), "the fixture must hold both percolating and blocked axes"
    # the blocked axes are missing values (NaN), not log10(k_floor) = -6 pulling the fit
    y = t.y_train.numpy()[:, 1:]
    assert np.isnan(y[zero]).all() and np.isfinite(y[~zero]).all()
    assert np.isfinite(t.y_train.numpy()[:, 0]).all()
    t.fit(tmp_path / "run", log=None)
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in t.history)
    # prediction: k = 0 exactly where the solver found no path through the periodic box, > 0 elsewhere
    ims = t.train_set.volumes()
    rows = t.surrogate().predict(ims)
    pred = np.array([[r["k_xx"], r["k_yy"]] for r in rows])
    assert (pred[zero] == 0).all() and (pred[~zero] > 0).all()
    # evaluation scores log10 k over the percolating samples only and counts the others
    m = evaluate_surrogate(t.surrogate(), solver2d, split="train")
    assert m["n_nonpercolating_k_xx"] + m["n_nonpercolating_k_yy"] == int(zero.sum())
    assert np.isfinite(m["mse_norm"]) and m["mse_norm_mean_baseline"] < 5.0, m
