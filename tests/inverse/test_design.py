"""End to end with a tiny trained pVAE on a tiny LBM-labeled dataset: design, verify, report, errors.

One module-scoped fixture builds the dataset (24 blobs of 16^3 labeled by the real solver at a
loose tolerance, the same settings verify the candidates) and trains the model for a few epochs.
"""

import numpy as np
import pandas as pd
import pytest

from data_pipeline.io import K_COLUMNS, read_volume, write_properties, write_volume, write_yaml

SIZE = 16
SOLVER = {"tol": 1e-3, "max_steps": 4000, "threads": 2}


def make_dataset(root, n=24, seed=0):
    from data_pipeline.permeability import permeability_batch
    from data_pipeline.synth import blobs

    rng = np.random.default_rng(seed)
    ids, ims = [], []
    for i in range(n):
        phi = float(rng.uniform(0.35, 0.7))
        ims.append(blobs((SIZE,) * 3, porosity=phi, blobiness=1.0, seed=seed * 1000 + i))
        ids.append(f"s{i:03d}")
        write_volume(root / "volumes" / f"{ids[-1]}.tif", ims[-1])
    res = permeability_batch(ims, **SOLVER)
    rows = []
    for sid, r in zip(ids, res):
        k = np.asarray(r.k)
        row = {"sample_id": sid, "porosity": r.porosity}
        for c in K_COLUMNS[3]:
            row[c] = float(k["xyz".index(c[2]), "xyz".index(c[3])])
        row.update(steps=r.steps, converged=r.converged, residual=r.residual, max_mach=r.max_mach,
                   labeler="lbm", status="ok", error="")
        rows.append(row)
    write_properties(root, pd.DataFrame(rows))
    write_yaml(root / "dataset.yaml", {"dims": 3, "shape": [SIZE] * 3, "voxel_size": 1e-6, "pore": 1,
                                       "solver": SOLVER})
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from models.config import PVAEConfig
    from models.train import Trainer

    root = tmp_path_factory.mktemp("inverse")
    data = make_dataset(root / "data")
    cfg = PVAEConfig(dims=3, input_size=SIZE, channels=[8, 16], latent_dim=4, regressor_depth=1,
                     regressor_width=32, epochs=12, batch_size=8, lr=3e-3, beta=0.05, patience=100,
                     device="cpu", num_threads=2, n_generate=4, seed=0)
    Trainer(cfg, data).fit(root / "train", log=None)
    return {"root": root, "data": data, "ckpt": root / "train" / "best"}


def held_out(data):
    from data_pipeline.dataset import VoxelDataset
    test = VoxelDataset(data, "test", properties=["porosity", "k_xx", "k_yy", "k_zz"])
    return test.ids, test.targets


def design_cfg(trained, out, **kw):
    from inverse.config import DesignConfig
    base = dict(model=str(trained["ckpt"]), methods=["bo"], n_calls=14, n_initial=6, n_candidates=2,
                solver=SOLVER, out=str(out), mlflow=False, figures=False, seed=3)
    base.update(kw)
    return DesignConfig(**base)


def test_held_out_target_is_designed_and_verified(trained, tmp_path):
    from inverse.design import design

    ids, y = held_out(trained["data"])
    phi, kxx = float(y[0, 0]), float(y[0, 1])
    cfg = design_cfg(trained, tmp_path / "a", targets=[f"porosity={phi:.4f},k_xx={kxx:.5g}"],
                     methods=["bo", "gradient"], figures=True,
                     tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", mlflow=True)
    out = design(cfg, log=lambda *a: None)
    res = pd.read_csv(tmp_path / "a" / "results.csv")
    assert list(res.columns[:6]) == ["target_id", "method", "candidate", "pred_porosity", "verified_porosity", "hit"]
    assert {"pred_k_xx", "verified_k_xx", "err_k_xx", "threshold", "threshold_rule"} <= set(res.columns)
    assert len(res) == 4 and set(res["method"]) == {"bo", "gradient"}
    # the binarization hits the target porosity; the solver confirms it
    assert (abs(res["verified_porosity"] - phi) <= cfg.tol_porosity).all()
    assert res["converged"].all() and (res["verified_k_xx"] > 0).all()
    # ... to the voxel: the pore count of the goal, after cleaning and the flips it needed (recorded)
    n = SIZE ** 3
    assert (abs(res["binary_porosity"] * n - (res["porosity_goal"] * n).round()) < 0.5).all()
    assert (res["flipped"] >= 0).all() and res["flipped"].dtype.kind == "i"
    # hit == within both tolerances, recomputed from the table
    expect = (abs(res["verified_porosity"] - phi) <= 0.02) & (abs(res["verified_k_xx"] - kxx) <= 0.15 * kxx + 1e-12)
    assert (res["hit"] == expect).all()
    for tif in res["tif"]:
        im = read_volume(tmp_path / "a" / tif)
        assert im.shape == (SIZE,) * 3
    figs = {p.name for p in (tmp_path / "a" / "figures").iterdir()}
    assert {"convergence_t0.png", "slices_t0.png", "pred_vs_verified.png"} <= figs
    import mlflow
    run = mlflow.MlflowClient(cfg.tracking_uri).get_run(out.run_id)
    assert run.data.params["methods"] == "bo,gradient" and "bo_hit_rate" in run.data.metrics
    # z stays in the stated box
    from inverse.model_source import load_bundle
    from inverse.objective import latent_space
    b = load_bundle(str(trained["ckpt"]))
    space = latent_space(b.mu_train, cfg.bounds, cfg.quantile, cfg.box_margin)
    z = res[[c for c in res.columns if c.startswith("z") and c[1:].isdigit()]].to_numpy()
    assert space.inside(z, atol=1e-6).all() and res["inside_box"].all()


def test_same_seed_gives_identical_results(trained, tmp_path):
    from inverse.design import design

    cfgs = [design_cfg(trained, tmp_path / n, targets=["porosity=0.5,k_yy>=0.01"], methods=["bo", "random"],
                       n_candidates=1) for n in ("a", "b")]
    for c in cfgs:
        design(c, log=lambda *a: None)
    a, b = ((tmp_path / n / "results.csv").read_bytes() for n in ("a", "b"))
    assert a == b


def test_impossible_target_is_flagged_as_extrapolation(trained, tmp_path):
    from inverse.design import design

    cfg = design_cfg(trained, tmp_path / "x", targets=["porosity=0.97,k_xx=50"])
    out = design(cfg, log=lambda *a: None)
    s = pd.read_csv(tmp_path / "x" / "targets.csv")
    assert s.loc[0, "status"] == "extrapolation" and "outside the training labels" in s.loc[0, "notes"]
    assert s.loc[0, "nearest_porosity"] <= 0.75  # the nearest achievable value is inside the labels
    assert out.results.empty  # not silently attempted


def test_clear_errors_for_bad_model_and_unknown_property(trained, tmp_path, capsys, monkeypatch):
    from inverse.design import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    rc = main(["--model", str(tmp_path / "nowhere"), "--target", "porosity=0.5", "--out", str(tmp_path / "o"),
               "--no-mlflow"])
    assert rc == 2 and "no such checkpoint folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "norm.json"):
        (broken / f).write_text((trained["ckpt"] / f).read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    rc = main(["--model", str(broken), "--target", "porosity=0.5", "--out", str(tmp_path / "o"), "--no-mlflow"])
    assert rc == 2 and "cannot load the checkpoint" in capsys.readouterr().err
    rc = main(["--model", "models:/no-such-model@champion", "--target", "porosity=0.5", "--out",
               str(tmp_path / "o"), "--no-mlflow"])
    err = capsys.readouterr().err
    assert rc == 2 and "no-such-model" in err and "cannot download" in err
    rc = main(["--model", str(trained["ckpt"]), "--target", "porosity=0.5,k_q=1", "--out", str(tmp_path / "o"),
               "--no-mlflow"])
    err = capsys.readouterr().err
    assert rc == 2 and "'k_q'" in err and "k_xx" in err


def test_interpolate_between_two_samples(trained, tmp_path):
    from inverse.interpolate import main

    ids, _ = held_out(trained["data"])
    out = tmp_path / "path"
    rc = main([ids[0], ids[1], "--steps", "4", "--model", str(trained["ckpt"]), "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out / "interpolation.csv")
    assert list(df["t"]) == [0.0, 1 / 3, 2 / 3, 1.0] or np.allclose(df["t"], np.linspace(0, 1, 4))
    assert (abs(df["binary_porosity"] - df["decoded_porosity"]) <= 0.01).all()
    assert len(list((out / "volumes").glob("*.tif"))) == 4 and (out / "interpolation.png").is_file()


def test_promoted_model_is_resolved_from_the_registry(trained, tmp_path, monkeypatch):
    """`tuning promote` registers models:/pvae@champion; the inverse stage loads the same weights from it."""
    import mlflow
    import torch

    from inverse.model_source import load_bundle
    from tuning.promote import promote

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    from core.tracking import get_or_create_experiment
    exp_id = get_or_create_experiment(uri, "trials")  # artifacts under tmp_path, not ./mlruns
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.set_tags({"best_checkpoint": str(trained["root"] / "train"), "dataset": str(trained["data"])})
    promote(uri, run.info.run_id, name="pvae", alias="champion", check=False)
    b = load_bundle("models:/pvae@champion", cache_dir=tmp_path / "cache")
    local = load_bundle(str(trained["ckpt"]))
    assert b.dataset == local.dataset and np.allclose(b.mu_train, local.mu_train)
    z = torch.zeros(1, b.cfg.latent_dim)
    assert torch.equal(b.model.decode(z), local.model.decode(z))


# --- decoder-aware objectives and surrogate screening (issues 5 and 8) -------------------------
@pytest.fixture(scope="module")
def surrogate(trained):
    """A tiny surrogate trained on the same dataset (1 epoch: the tests check plumbing, not accuracy)."""
    from models.surrogate import SurrogateTrainer

    cfg = dict(dims=3, input_size=SIZE, components=["porosity", "k_xx", "k_yy", "k_zz"], scales=2,
               channels=[4, 8], head_depth=0, epochs=1, batch_size=8, device="cpu", num_threads=2, seed=0)
    SurrogateTrainer(cfg, trained["data"]).fit(trained["root"] / "sur", log=None)
    return trained["root"] / "sur" / "best"


def test_reencode_objective_is_the_regressor_on_the_reencoded_delivered_volume(trained):
    import torch

    from inverse.delivered import Delivery, decode_probabilities, make_objective
    from inverse.model_source import load_bundle
    from inverse.objective import latent_space
    from inverse.postprocess import binarize_clean
    from inverse.targets import parse_target

    b = load_bundle(str(trained["ckpt"]))
    space = latent_space(b.mu_train)
    t = parse_target("porosity=0.5,k_xx=0.03")
    obj = make_objective("reencode", t, b.model, b.norm, space, Delivery(b.model, b.norm, t))
    z = np.concatenate([b.mu_train[:3], space.lo[None] + 0.3 * (space.hi - space.lo)])  # (4, L)
    pred = obj.predict(z)  # (4, P)
    with torch.no_grad():
        ims = np.stack([binarize_clean(p, "target", 0.5)[0] for p in decode_probabilities(b.model, z)])
        mu, _ = b.model.encode(torch.as_tensor(ims, dtype=torch.float32)[:, None])  # (4, L)
        expect = b.norm.inverse(b.model.predict_properties(mu).numpy())  # (4, P)
    assert np.allclose(pred[:, 1:], expect[:, 1:], rtol=1e-5)  # k: regressor on the re-encoded volume
    assert np.allclose(pred[:, 0], ims.reshape(4, -1).mean(axis=1))  # porosity: measured on the volume
    assert np.allclose(pred[:, 0], 0.5, atol=2.0 / ims[0].size)  # the delivered volume meets the goal
    # the delivered volume IS what the objective judged, and values = distance + penalty
    assert all(np.array_equal(d.im, im) for d, im in zip(obj.delivery(z), ims))
    obj.n_evals = 0
    v = obj.values(z)
    assert obj.n_evals == 4 and np.allclose(v, obj.distances(z) + obj._penalty(torch.as_tensor(z)).numpy())
    with pytest.raises(TypeError, match="not differentiable"):
        obj.torch_values(torch.as_tensor(z))


def test_solver_objective_solves_the_delivered_volume_along_the_targeted_axis_only(trained):
    import torch

    from data_pipeline.permeability import permeability
    from inverse.delivered import Delivery, make_objective, solver_axes, solver_properties
    from inverse.model_source import load_bundle
    from inverse.objective import latent_space
    from inverse.targets import parse_target

    assert solver_axes(["porosity", "k_xx"]) == [0] and solver_axes(["k_zz", "k_yz", "k_xy"]) == [0, 1, 2]
    b = load_bundle(str(trained["ckpt"]))
    space = latent_space(b.mu_train)
    t = parse_target("porosity=0.5,k_yy=0.03")
    obj = make_objective("solver", t, b.model, b.norm, space, Delivery(b.model, b.norm, t), solver=SOLVER)
    z = np.concatenate([b.mu_train[:2], space.lo[None] + 0.3 * (space.hi - space.lo)])  # (3, L)
    pred = obj.predict(z)  # (3, P)
    ims = [d.im for d in obj.delivery(z)]
    j = b.norm.names.index("k_yy")
    for im, row in zip(ims, pred):
        ref = permeability(im, axes=[1], **SOLVER)  # the solver on exactly the delivered volume
        assert row[j] == pytest.approx(ref.k[1, 1], rel=1e-9) and row[j] > 0
        assert row[0] == pytest.approx(im.mean())  # porosity measured
    # untargeted components are not solved: they keep the regressor's prediction for z
    i = b.norm.names.index("k_xx")
    assert np.allclose(pred[:, i], obj.delivery.regressor_raw(z)[:, i])
    # a solve that fails inside the search is recorded with its reason and counts as k = 0 (worst)
    raw, errors = solver_properties(b.norm.names, np.stack(ims[:1]), ["k_yy"],
                                    {**SOLVER, "mach_bound": 1e-12, "rescale": False}, pred[:1])
    assert "Mach" in errors[0] and raw[0, j] == 0.0 and raw[0, 0] == pytest.approx(ims[0].mean())
    # cached by z: a second call solves nothing (the same array comes back), values = distance + penalty
    assert np.array_equal(obj.predict(z), pred)
    assert np.allclose(obj.values(z), obj.distances(z) + obj._penalty(torch.as_tensor(z)).numpy())


def test_solver_objective_design_predicts_what_the_verification_measures(trained, tmp_path):
    from inverse.design import main

    ids, y = held_out(trained["data"])
    out = tmp_path / "sv"
    args = ["--model", str(trained["ckpt"]), "--target", f"porosity={y[0, 0]:.4f},k_xx={y[0, 1]:.5g}",
            "--out", str(out), "--no-mlflow", "--method", "bo,random", "--n-calls", "8",
            "--property-model", "solver"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"solver: {SOLVER}\nsearch_solver: {{tol: 1.0e-3}}\nn_initial: 4\nn_candidates: 2\n"
                   "manifold_weight: 0.0\nfigures: false\n")
    assert main(args + ["--config", str(cfg)]) == 0
    res = pd.read_csv(out / "results.csv")
    assert set(res["property_model"]) == {"solver"} and len(res) == 4
    # the search's estimate IS the solver on the delivered volume (x driven alone vs all three axes
    # until each meets the tolerance: the same k up to the convergence tolerance)
    assert np.allclose(res["pred_k_xx"], res["verified_k_xx"], rtol=0.02)
    assert np.allclose(res["pred_porosity"], res["verified_porosity"])
    expect = (abs(res["verified_porosity"] - y[0, 0]) <= 0.02) & (abs(res["verified_k_xx"] / y[0, 1] - 1) <= 0.15)
    assert (res["hit"] == expect).all()
    # the best candidate of each method is the best objective the search saw, or a texture variant
    # of its latent that the same objective judged better (noise_seed > 0)
    s = pd.read_csv(out / "targets.csv").set_index("method")
    assert (s.loc[["bo", "random"], "search_solver_errors"] == 0).all()
    best = res[res["candidate"] == 0].set_index("method")
    for m in ("bo", "random"):
        if best.loc[m, "noise_seed"] == 0:
            assert best.loc[m, "objective"] == pytest.approx(s.loc[m, "best_objective"])
        else:
            assert best.loc[m, "objective"] < s.loc[m, "best_objective"]


def test_surrogate_screening_sends_only_n_candidates_to_the_solver(trained, surrogate, tmp_path, monkeypatch):
    import inverse.design as d

    calls = []
    real = d.verify_batch

    def counting(ims, solver=None):
        calls.append(len(ims))
        return real(ims, solver)

    monkeypatch.setattr(d, "verify_batch", counting)
    ids, y = held_out(trained["data"])
    cfg = design_cfg(trained, tmp_path / "s", targets=[f"porosity={y[0, 0]:.4f},k_xx={y[0, 1]:.5g}"],
                     methods=["random", "gradient"], property_model="surrogate", surrogate=str(surrogate),
                     screen_top=5, n_candidates=2)
    d.design(cfg, log=lambda *a: None)
    assert calls == [2, 2]  # one solver batch per target and method: 2 candidates each, not 5
    res = pd.read_csv(tmp_path / "s" / "results.csv")
    assert len(res) == 4 and res["converged"].all() and (res["verified_k_xx"] > 0).all()
    # gradient descends the regressor; its trajectory is judged by the surrogate objective like random's points
    assert dict(zip(res["method"], res["property_model"])) == {"random": "surrogate", "gradient": "surrogate"}
    # best screen first, picked among the 5 screened latents; the solver still decides the hit
    for _, g in res.groupby("method"):
        assert g["screen_distance"].is_monotonic_increasing and g["screen_from"].between(0, 4).all()
    phi, kxx = y[0, 0], y[0, 1]
    expect = (abs(res["verified_porosity"] - phi) <= 0.02) & (abs(res["verified_k_xx"] - kxx) <= 0.15 * kxx + 1e-12)
    assert (res["hit"] == expect).all()
    s = pd.read_csv(tmp_path / "s" / "targets.csv")
    # up to screen_top distinct latents screened (gradient's steps may be fewer distinct ones)
    assert s.set_index("method").loc["random", "screened"] == 5 and s["screened"].between(2, 5).all()


def test_surrogate_screened_variants_go_to_the_solver_best_estimate_first(trained, surrogate, tmp_path):
    """variant_screen: variants 1..6 of the best latent are labeled by the surrogate, and the
    noise_variants solver calls go to the best-estimated ones; each delivered variant carries the
    surrogate's estimate of its own structure. Without a surrogate (or with latent screening) the
    setting is refused by name."""
    from inverse.config import DesignConfig
    from inverse.delivered import Delivery, load_design_surrogate
    from inverse.design import design
    from inverse.model_source import load_bundle
    from inverse.targets import build_targets

    with pytest.raises(ValueError, match="variant_screen"):
        DesignConfig(variant_screen=4)
    with pytest.raises(ValueError, match="variant_screen"):
        DesignConfig(variant_screen=4, surrogate="sur", screen_top=12)
    ids, y = held_out(trained["data"])
    phi, kxx = float(y[0, 0]), float(y[0, 1])
    out = tmp_path / "vs"
    design(design_cfg(trained, out, targets=[f"porosity={phi:.4f},k_xx={kxx:.5g}+-2%"], surrogate=str(surrogate),
                      screen_top=0, variant_screen=6, noise_variants=3, porosity_shift=0.0, n_candidates=3),
           log=lambda *a: None)
    rows = pd.read_csv(out / "results.csv")
    var = rows[rows["noise_seed"] > 0]
    assert len(var) >= 1 and var["noise_seed"].between(1, 6).all()
    # the surrogate's ranking of the six variants, by their k_xx error (porosity holds by construction)
    bundle = load_bundle(str(trained["ckpt"]))
    sur = load_design_surrogate(str(surrogate), bundle.cfg)
    z = var[[f"z{d}" for d in range(bundle.model.latent_dim)]].to_numpy(float)
    assert np.allclose(z, z[:1])  # variants of one latent: the search's best
    delivery = Delivery(bundle.model, bundle.norm, build_targets([f"porosity={phi:.4f},k_xx={kxx:.5g}+-2%"])[0])
    est = {s: sur.predict(delivery(z[0], s)[0].im[None])[0]["k_xx"] for s in range(1, 7)}
    ranked = sorted(est, key=lambda s: abs(np.log(est[s] / kxx)))
    assert set(var["noise_seed"]) <= set(ranked[:3])  # three solver calls: the three best estimates
    for _, row in var.iterrows():  # each variant's own surrogate estimate, recorded beside the solver's
        im = read_volume(out / row["tif"])
        assert np.isclose(row["sur_k_xx"], sur.predict(im[None])[0]["k_xx"], rtol=1e-5)
        assert np.isclose(row["sur_k_xx"], est[int(row["noise_seed"])], rtol=1e-5)


def test_same_seed_gives_identical_results_with_decoder_aware_objectives(trained, surrogate, tmp_path):
    from inverse.design import design

    for pm in ("reencode", "surrogate", "solver"):
        for n in ("a", "b"):
            design(design_cfg(trained, tmp_path / f"{pm}{n}", targets=["porosity=0.5,k_xx>=0.01"],
                              methods=["bo", "random"], n_calls=10, n_initial=4, n_candidates=1, property_model=pm,
                              surrogate=str(surrogate) if pm == "surrogate" else None, screen_top=3),
                   log=lambda *a: None)
        a, b = ((tmp_path / f"{pm}{n}" / "results.csv").read_bytes() for n in ("a", "b"))
        assert a == b


def test_clear_errors_for_surrogate_settings(trained, surrogate, tmp_path, capsys):
    import json

    from safetensors.torch import save_file

    from inverse.config import DesignConfig
    from inverse.design import main
    from models.surrogate import MultiscaleCNN, SurrogateConfig

    with pytest.raises(ValueError, match="property_model.*--surrogate PATH"):
        DesignConfig(property_model="surrogate")
    base = ["--model", str(trained["ckpt"]), "--target", "porosity=0.5,k_xx=0.03", "--out", str(tmp_path / "o"),
            "--no-mlflow", "--method", "random", "--n-calls", "12", "--no-verify"]
    assert main(base + ["--property-model", "surrogate"]) == 2
    assert "needs a surrogate checkpoint" in capsys.readouterr().err
    assert main(base + ["--surrogate", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    # a surrogate trained for 8^3 volumes cannot judge the pVAE's 16^3 ones
    small = tmp_path / "sur8"
    small.mkdir()
    scfg = SurrogateConfig(dims=3, input_size=8, components=["porosity", "k_xx"], scales=2, channels=[4])
    save_file(MultiscaleCNN.from_config(scfg).state_dict(), str(small / "model.safetensors"))
    (small / "config.json").write_text(json.dumps(scfg.to_dict()))
    (small / "norm.json").write_text(json.dumps({"names": ["porosity", "k_xx"], "mean": [0, 0], "std": [1, 1],
                                                 "log": [False, True], "k_floor": 1e-6}))
    assert main(base + ["--property-model", "surrogate", "--surrogate", str(small)]) == 2
    err = capsys.readouterr().err
    assert "(8, 8, 8)" in err and "(16, 16, 16)" in err
    # a surrogate that does not predict a targeted property
    from inverse.delivered import check_surrogate
    from inverse.model_source import load_bundle
    from models.surrogate import load_surrogate
    with pytest.raises(ValueError, match=r"does not predict \['k_xy'\]"):
        check_surrogate(load_surrogate(surrogate), load_bundle(str(trained["ckpt"])).cfg, "s", ["porosity", "k_xy"])


def test_reference_target_holds_designs_to_the_reference_morphology(trained, tmp_path):
    """ref=<sample> with match_reference: the decoder-aware objective adds the specific-surface
    penalty against that sample, and the ranking objective in results.csv carries it; with
    material_band "all" a target without a sample gets the material's band instead."""
    from inverse.design import design

    ids, y = held_out(trained["data"])
    spec = f"porosity={y[0, 0]:.4f},k_xx={y[0, 1]:.5g},ref={ids[0]}"
    runs = {}
    for match in (True, False):
        cfg = design_cfg(trained, tmp_path / str(match), targets=[spec], methods=["random"], n_calls=6,
                         property_model="solver", search_solver={"tol": 1e-3}, manifold_weight=0.0,
                         match_reference=match, morphology_weight=100.0)
        design(cfg, log=lambda *a: None)
        runs[match] = pd.read_csv(tmp_path / str(match) / "results.csv")
    on, off = runs[True], runs[False]
    assert {"ss_ratio_ref", "s2_distance_ref", "looks_like_ref"} <= set(on.columns)
    lo, hi = 0.8, 1.25
    lr = np.log(on["ss_ratio_ref"].to_numpy())
    d = np.maximum(np.log(lo) - lr, 0) + np.maximum(lr - np.log(hi), 0)
    # objective = target distance (manifold weight 0) + the reference-morphology penalty
    assert np.allclose(on["objective"] - on["distance"], 100.0 * (d / np.log(hi)) ** 2, rtol=1e-6, atol=1e-9)
    assert np.allclose(off["objective"], off["distance"])  # match_reference false: no penalty

    # material_band "all": a target without a reference sample is held to the material's band
    # (specific surface over the training median at its porosity), the default leaves it free
    plain = f"porosity={y[0, 0]:.4f},k_xx={y[0, 1]:.5g}"
    for band in ("all", "optimize"):
        cfg = design_cfg(trained, tmp_path / band, targets=[plain], methods=["random"], n_calls=6,
                         property_model="solver", search_solver={"tol": 1e-3}, manifold_weight=0.0,
                         material_band=band, morphology_weight=100.0, morphology_band=[0.999, 1.001])
        design(cfg, log=lambda *a: None)
        runs[band] = pd.read_csv(tmp_path / band / "results.csv")
    from inverse.model_source import load_bundle
    from inverse.morphology_check import MorphologyReference

    b = load_bundle(str(trained["ckpt"]))
    ref = MorphologyReference(b.dataset, b.ids_train, seed=cfg.seed)  # the design's own reference

    def penalty(col, lo, hi):  # 100 (d / ln hi)^2, d = distance of ln(ratio) outside [ln lo, ln hi]
        lr = np.log(runs["all"][col].to_numpy())
        d = np.maximum(np.log(lo) - lr, 0) + np.maximum(lr - np.log(hi), 0)
        return d, 100.0 * (d / np.log(hi)) ** 2

    d, surface = penalty("ss_ratio_train", 0.999, 1.001)  # a narrow band: the candidates lie outside it and pay
    assert (d > 0).any(), runs["all"]["ss_ratio_train"].tolist()
    # ... plus the material's isotropy and the spread of its solid, each against the training range
    expect = surface + penalty("anisotropy_ratio_train", *ref.anisotropy_band)[1] + penalty("spread_ratio_train", *ref.spread_band)[1]
    got = runs["all"]["objective"] - runs["all"]["distance"]
    assert np.allclose(got, expect, rtol=1e-3)  # the ratios are written as float32
    assert np.allclose(runs["optimize"]["objective"], runs["optimize"]["distance"])
    with pytest.raises(ValueError, match="material_band"):
        design_cfg(trained, tmp_path / "bad", material_band="every")


# --- issue 14: baselines under one solver budget; a hit needs a converged verification ----------
def label_distance(phi_t, k_t, phi, k, tol_phi=0.02, tol_k=0.15):
    """Target distance of exact porosity and k_xx conditions, written out: (d phi / tol)^2 plus
    (log(k / k_t) / log(1 + tol))^2 above the target, (log(k_t / k) / -log(1 - tol))^2 below it."""
    r = np.log(np.where(k > 0, k, np.nan) / k_t)
    d_k = np.where(r >= 0, r / np.log1p(tol_k), -r / -np.log1p(-tol_k))
    return np.where(np.isfinite(d_k), ((phi - phi_t) / tol_phi) ** 2 + d_k ** 2, np.inf)


def test_lookup_delivers_the_training_samples_with_the_closest_labels_and_verifies_them(trained, tmp_path):
    from inverse.design import design
    from inverse.model_source import load_bundle

    b = load_bundle(str(trained["ckpt"]))
    ids, y = held_out(trained["data"])
    phi, kxx = float(f"{y[0, 0]:.4f}"), float(f"{y[0, 1]:.5g}")
    design(design_cfg(trained, tmp_path / "l", targets=[f"porosity={phi},k_xx={kxx}"], methods=["lookup"],
                      n_candidates=3), log=lambda *a: None)
    res = pd.read_csv(tmp_path / "l" / "results.csv", dtype={"source_id": str})
    j = b.properties.index("k_xx")
    d = label_distance(phi, kxx, b.y_train[:, 0], b.y_train[:, j])
    nearest = [b.ids_train[i] for i in np.argsort(d, kind="stable")[:3]]
    assert list(res["source_id"]) == nearest and not set(nearest) & set(ids)  # training samples, not the target's
    labels = pd.read_csv(trained["data"] / "properties.csv", dtype={"sample_id": str}).set_index("sample_id")
    for _, r in res.iterrows():
        # the structure itself is delivered (not decoded, not thresholded: its porosity is its own)
        im = read_volume(tmp_path / "l" / r["tif"]).astype(bool)
        assert np.array_equal(im, read_volume(trained["data"] / "volumes" / f"{r['source_id']}.tif").astype(bool))
        lab = labels.loc[r["source_id"]]
        assert r["verified_porosity"] == pytest.approx(lab["porosity"], abs=1e-7)  # results.csv: 8 digits
        # the same solver settings as the labels (a batch of 3 here, of 24 there: within the tolerance)
        assert r["verified_k_xx"] == pytest.approx(lab["k_xx"], rel=0.01)
        assert r["pred_k_xx"] == pytest.approx(lab["k_xx"]) and r["property_model"] == "labels"
        assert r["converged"] and r["threshold_rule"] == "none"
        assert np.isfinite(r["ss_ratio_train"]) and np.isfinite(r["s2_nearest_train"])  # morphology too
    expect = (res["converged"] & (abs(res["verified_porosity"] - phi) <= 0.02)
              & (abs(res["verified_k_xx"] - kxx) <= 0.15 * kxx + 1e-12))
    assert (res["hit"] == expect).all()
    t = pd.read_csv(tmp_path / "l" / "timing.csv").iloc[0]
    assert (t["search_solver_calls"], t["verify_solver_calls"], t["solver_calls"]) == (0, 3, 3)


def test_a_verification_that_did_not_converge_is_not_a_hit(trained):
    from data_pipeline.permeability import permeability_batch
    from inverse.design import Candidate, verify_step
    from inverse.evaluation import ladder_hit
    from inverse.targets import parse_target

    labels = pd.read_csv(trained["data"] / "properties.csv", dtype={"sample_id": str})
    sid = labels.loc[labels["k_xx"] > 0, "sample_id"].iloc[0]
    im = read_volume(trained["data"] / "volumes" / f"{sid}.tif").astype(bool)
    capped = {**SOLVER, "max_steps": 100}  # stopped before the tolerance is met
    r = permeability_batch([im], **capped)[0]
    assert not r.converged and r.k[0, 0] > 0
    spec = f"porosity={r.porosity:.6f},k_xx={r.k[0, 0]:.6g}"
    t = parse_target(spec)

    def candidate():
        return Candidate("t0", t.describe(), "lookup", 0, "labels", 0, 0.0, 0.0, 0.0, True, pred={}, regz={},
                         z=np.zeros(4), im=im)

    capped_c, full_c = candidate(), candidate()
    verify_step(design_cfg(trained, "unused", solver=capped), t, [capped_c], ["porosity", "k_xx"])
    v = capped_c.verification
    assert not v.converged and t.hit(v.values)  # the values are inside the tolerance ...
    assert capped_c.hit is False  # ... but an unconverged solve is not a measurement
    assert not ladder_hit(spec, v.values, v.converged, v.error, 0.02, 0.15)
    assert ladder_hit(spec, v.values, True, "", 0.02, 0.15)  # the same values, converged, would hit
    # the same structure solved to the tolerance: converged, a hit
    verify_step(design_cfg(trained, "unused"), t, [full_c], ["porosity", "k_xx"])
    assert full_c.verification.converged and full_c.hit is True


def test_a_maximize_design_above_its_porosity_goal_is_not_a_hit(trained):
    """k grows by porosity alone: a design whose cleaning left it more porous than the goal it was
    binarized at (inside the training range) does not count, however high its k."""
    from inverse.design import Candidate, verify_step
    from inverse.targets import parse_target, with_training_bars

    labels = pd.read_csv(trained["data"] / "properties.csv", dtype={"sample_id": str})
    row = labels.loc[labels["k_xx"] > 0].iloc[0]
    im = read_volume(trained["data"] / "volumes" / f"{row['sample_id']}.tif").astype(bool)
    bar = np.array([[row["porosity"], 0.5 * row["k_xx"]]])  # a bar the structure beats
    t = with_training_bars(parse_target("maximize:k_xx"), bar, ["porosity", "k_xx"])
    cfg = design_cfg(trained, "unused")
    results = {}
    for goal in (im.mean(), im.mean() - 0.03):  # delivered at its goal / 0.03 above it
        c = Candidate("t0", t.describe(), "bo", 0, "solver", 0, 0.0, 0.0, 0.0, True, pred={}, regz={},
                      z=np.zeros(4), im=im, porosity_goal=float(goal), morphology={"ss_ratio_train": 1.0})
        verify_step(cfg, t, [c], ["porosity", "k_xx"])
        assert c.verification.values["k_xx"] > t.condition("k_xx").low
        results[round(float(im.mean() - goal), 2)] = (c.hit, c.verification.morph_ok)
    assert results == {0.0: (True, True), 0.03: (False, False)}


def test_a_maximize_design_stretched_along_the_flow_is_not_a_hit(trained):
    """Stretching a structure's grains along x raises k_xx above a bar the structure itself misses and
    keeps its specific surface inside the band; its anisotropy, outside the training range, is what
    stops it counting as the material (and what the search's penalty charges)."""
    from inverse.delivered import Delivery, DeliveredObjective
    from inverse.design import Candidate, verify_step
    from inverse.model_source import load_bundle
    from inverse.morphology_check import MorphologyReference
    from inverse.objective import latent_space
    from inverse.targets import parse_target, with_training_bars

    b = load_bundle(str(trained["ckpt"]))
    ref = MorphologyReference(b.dataset, b.ids_train)
    labels = pd.read_csv(trained["data"] / "properties.csv", dtype={"sample_id": str}).set_index("sample_id")
    sid = labels.loc[b.ids_train].query("k_xx > 0").index[0]
    im = read_volume(trained["data"] / "volumes" / f"{sid}.tif").astype(bool)  # (Z, Y, X)
    stretched = np.repeat(im[:, :, ::4], 4, axis=2)  # every 4th x plane, 4 voxels long: grains along x
    assert abs(stretched.mean() - im.mean()) < 0.05
    cols = {n: ref.columns(v) for n, v in (("own", im), ("stretched", stretched))}
    lo, hi = ref.anisotropy_band
    assert lo <= cols["own"]["anisotropy_ratio_train"] <= hi and cols["own"]["anisotropy_ok"]
    assert cols["stretched"]["anisotropy_ratio_train"] > hi and not cols["stretched"]["anisotropy_ok"]
    bar = np.array([[im.mean(), 1.05 * labels.loc[sid, "k_xx"]]])  # just above the structure's own k_xx
    t = with_training_bars(parse_target("maximize:k_xx"), bar, ["porosity", "k_xx"])
    cfg = design_cfg(trained, "unused")
    out = {}
    for name, v in (("own", im), ("stretched", stretched)):
        m = dict(cols[name], ss_ratio_train=1.0)  # the surface band held: only the anisotropy differs
        c = Candidate("t0", t.describe(), "bo", 0, "solver", 0, 0.0, 0.0, 0.0, True, pred={}, regz={},
                      z=np.zeros(4), im=v, porosity_goal=float(v.mean()), morphology=m)
        verify_step(cfg, t, [c], ["porosity", "k_xx"])
        out[name] = (c.verification.values["k_xx"], c.hit, c.verification.morph_ok)
    assert out["own"][0] < t.condition("k_xx").low and out["own"][1:] == (False, True)  # below the bar
    assert out["stretched"][0] > t.condition("k_xx").low  # above the bar ...
    assert out["stretched"][1:] == (False, False)  # ... and not the material
    # the search charges it: a penalty on the anisotropy ratio above the band's edge, none inside
    obj = DeliveredObjective(t, b.model, b.norm, latent_space(b.mu_train), Delivery(b.model, b.norm, t),
                             "reencode", manifold_weight=0.0)
    obj.set_morphology(lambda v: 1.0, (0.75, 1.33), 100.0, extra=[(ref.anisotropy_ratio, ref.anisotropy_band)])
    pen = obj.morphology_penalty_of(np.log([[1.0, cols[n]["anisotropy_ratio_train"]] for n in ("own", "stretched")]))
    assert pen[0] == 0.0 and pen[1] > 1.0


def test_every_method_gets_the_same_solver_budget_and_gradient_is_judged_by_the_solver(trained, tmp_path):
    from inverse.design import design
    from inverse.evaluation import phase_iou
    from inverse.targets import build_targets

    ids, y = held_out(trained["data"])
    cfg = design_cfg(trained, tmp_path / "g", targets=[f"porosity={y[1, 0]:.4f},k_xx={y[1, 1]:.5g}"],
                     methods=["bo", "random", "gradient", "lookup"], property_model="solver", n_calls=8,
                     n_initial=4, n_candidates=2, gradient_steps=30)
    out = design(cfg, log=lambda *a: None)
    tm = pd.read_csv(tmp_path / "g" / "timing.csv").set_index("method")
    assert tm.loc["bo", "search_solver_calls"] == tm.loc["random", "search_solver_calls"] == 8
    assert 1 <= tm.loc["gradient", "search_solver_calls"] <= 8  # trajectory points clipped to one box corner solve once
    assert tm.loc["lookup", "search_solver_calls"] == 0 and (tm["verify_solver_calls"] == 2).all()
    # the best latent's texture variants are judged by each searching method's objective: at most
    # noise_variants (8) solver calls, fewer only once the method holds n_candidates (2) distinct
    # structures that the solver estimate calls hits
    assert tm.loc[["bo", "random", "gradient"], "variant_solver_calls"].between(1, 8).all()
    assert tm.loc["lookup", "variant_solver_calls"] == 0
    res = pd.read_csv(tmp_path / "g" / "results.csv")
    target = build_targets(cfg.targets, tol_porosity=cfg.tol_porosity, tol_k=cfg.tol_k)[0]
    for m in ("bo", "random", "gradient"):
        if tm.loc[m, "variant_solver_calls"] < 8:
            rows = res[res["method"] == m]
            assert all(target.hit({"porosity": r.pred_porosity, "k_xx": r.pred_k_xx},
                                  {"porosity": r.pred_porosity, "k_xx": r.pred_k_xx}) for r in rows.itertuples()), m
            ims = [read_volume(tmp_path / "g" / t) for t in rows["tif"]]
            assert phase_iou(ims[0], ims[1]) <= 0.5, m
    assert (tm["solver_calls"] == tm["search_solver_calls"] + tm["variant_solver_calls"]
            + tm["verify_solver_calls"]).all()
    assert (tm["total_s"] > 0).all() and (tm["verify_s"] > 0).all()
    g = out.targets[0].searches["gradient"]
    assert g.info["gradient_screened"] and g.info["gradient_steps"] == 30
    assert g.info["trajectory_points"] == 30 * g.n_seeds and g.n_evals == 8
    gr = res[res["method"] == "gradient"]
    # gradient's candidates are trajectory points chosen by the solver objective: its estimate is the LBM's
    assert (gr["property_model"] == "solver").all() and gr["eval_index"].between(0, 7).all()
    assert np.allclose(gr["pred_k_xx"], gr["verified_k_xx"], rtol=0.02)
    # the search's best, or a better variant of it (results.csv holds 8 significant digits)
    assert gr["objective"].iloc[0] <= g.f.min() + 1e-7 * max(1.0, abs(g.f.min()))
    # every verified candidate, whatever its method, carries its morphology
    assert res["ss_ratio_train"].notna().all() and res["euler_density"].notna().all()


def test_candidates_are_distinct_structures_when_the_search_offers_them(trained, tmp_path):
    """A design is a latent and a noise field: with the structure rule and texture variants the
    candidates are distinct structures, each reproducible from its (z, noise_seed), at the same
    verification budget, and never a worse best candidate than the latent rule alone."""
    from inverse.delivered import Delivery
    from inverse.design import design
    from inverse.evaluation import distinct_hits, phase_iou
    from inverse.model_source import load_bundle
    from inverse.targets import build_targets

    ids, y = held_out(trained["data"])
    spec = f"porosity={float(y[0, 0]):.4f},k_xx={float(y[0, 1]):.5g}"
    ims, res = {}, {}
    for name, max_iou, variants in (("latent", 1.0, 0), ("iou", 0.5, 0), ("variants", 0.5, 6)):
        cfg = design_cfg(trained, tmp_path / name, targets=[spec], methods=["random"], n_calls=16,
                         n_candidates=3, candidate_max_iou=max_iou, noise_variants=variants)
        design(cfg, log=lambda *a: None)
        res[name] = pd.read_csv(tmp_path / name / "results.csv").sort_values("candidate")
        assert len(res[name]) == 3  # the verification budget does not change
        ims[name] = [read_volume(tmp_path / name / t) for t in res[name]["tif"]]
    # without variants the best candidate is the search's best; the structure rule never yields fewer
    # distinct structures; variants give three distinct ones and a best objective at least as good
    assert phase_iou(ims["latent"][0], ims["iou"][0]) == 1.0
    n = {k: len(distinct_hits(v, max_iou=0.5)) for k, v in ims.items()}
    assert n["latent"] <= n["iou"] <= n["variants"] == 3, n
    assert res["variants"]["objective"].iloc[0] <= res["latent"]["objective"].iloc[0] + 1e-12
    var = res["variants"][res["variants"]["noise_seed"] > 0]
    assert len(var) >= 1 and (res["latent"]["noise_seed"] == 0).all()
    # a variant is what decoding its z with its noise field delivers
    bundle = load_bundle(str(trained["ckpt"]))
    target = build_targets([spec])[0]
    delivery = Delivery(bundle.model, bundle.norm, target)
    row = var.iloc[0]
    z = row[[f"z{d}" for d in range(bundle.model.latent_dim)]].to_numpy(float)
    again = delivery(z, int(row["noise_seed"]), float(row["porosity_shift"]))[0].im
    assert np.array_equal(again, read_volume(tmp_path / "variants" / row["tif"]))
    assert not np.array_equal(again, delivery(z)[0].im)
    assert row["porosity_goal"] == pytest.approx(float(y[0, 0]) + row["porosity_shift"], abs=1e-4)
    # a porosity shift moves the goal and the delivered porosity, nothing else
    shifted = delivery(z, 1, 0.01)[0]
    assert shifted.goal == pytest.approx(delivery(z, 1)[0].goal + 0.01)
    assert abs(shifted.im.mean() - shifted.goal) < 0.01
    with pytest.raises(ValueError, match="porosity_shift"):
        design_cfg(trained, tmp_path / "bad", porosity_shift=1.0)
    with pytest.raises(ValueError, match="candidate_max_iou"):
        design_cfg(trained, tmp_path / "bad", candidate_max_iou=0.0)
    with pytest.raises(ValueError, match="noise_variants"):
        design_cfg(trained, tmp_path / "bad", noise_variants=-1)


def test_bo_looks_for_distinct_hits_after_its_first(trained):
    """Composite BO with the diversity phase: once it has a hit but fewer than n distinct ones, each
    point it evaluates delivers a structure distinct from every hit so far (or the least similar it
    saw), and it ends with more distinct hits than plain EI, which refines its first hit."""
    from inverse.delivered import Delivery, make_objective
    from inverse.evaluation import distinct_hits, phase_iou
    from inverse.model_source import load_bundle
    from inverse.objective import latent_space
    from inverse.search import run_search
    from inverse.targets import parse_target

    b = load_bundle(str(trained["ckpt"]))
    space = latent_space(b.mu_train)
    ids, y = held_out(trained["data"])
    t = parse_target(f"porosity={float(y[0, 0]):.4f}+-0.02,k_xx={float(y[0, 1]):.5g}+-10%")
    n, max_iou, runs = 5, 0.5, {}
    for name, distinct in (("plain", None), ("diverse", (n, max_iou))):
        obj = make_objective("reencode", t, b.model, b.norm, space, Delivery(b.model, b.norm, t), manifold_weight=0.0)
        res = run_search("bo", obj, np.asarray(b.y_train), n_calls=16, n_initial=4, seed=0, distinct=distinct)
        assert res.n_evals == 16 and res.info["diversity"] is (distinct is not None)
        hit = obj.predicted_hit(res.z)
        ims = [d.im for d in obj.delivery(res.z)]
        steps, sim = 0, []
        for i in range(4, res.n_evals):  # replay: the distinct hits the search knew before evaluating point i
            order = [j for j in np.argsort(res.f[:i], kind="stable") if hit[j]]
            known = [ims[order[k]] for k in distinct_hits([ims[j] for j in order], n, max_iou)]
            if 1 <= len(known) < n:
                steps += 1
                sim.append(max(phase_iou(ims[i], h) for h in known))
        assert res.info["diversity_steps"] == (steps if distinct else 0)
        runs[name] = (res, hit, ims, sim)
    # after its first hit plain EI proposes near copies of it; the diversity phase proposes structures
    # distinct from the hits (the first of them at once), and ends with more distinct hits
    plain, diverse = runs["plain"][3], runs["diverse"][3]
    assert len(diverse) > 0 and diverse[0] <= max_iou and np.mean(diverse) < np.mean(plain) - 0.1, (plain, diverse)
    count = {k: len(distinct_hits([ims[j] for j in np.argsort(r.f, kind="stable") if h[j]], n, max_iou))
             for k, (r, h, ims, _) in runs.items()}
    assert count["diverse"] > count["plain"], count


def test_bench_seeds_run_apart_combine_into_one_report(trained, tmp_path):
    """bench/inverse.py run once per seed (as separate jobs), then ``--combine``: the merged records
    are exactly the runs' records, the summary counts both seeds, results.md names the runs merged;
    a run of another method on the same targets merges as more methods; runs of other settings or of
    the same seed and method are refused with the option or row that clashes."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def bench(*args, ok=True):
        res = subprocess.run([sys.executable, str(root / "bench" / "inverse.py"), *map(str, args)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
        assert (res.returncode == 0) == ok, res.stdout[-2000:] + res.stderr[-2000:]
        return res

    common = ["--dataset", trained["data"], "--model", trained["ckpt"], "--sets", "dev", "--dev-targets", "in:2",
              "--methods", "bo,lookup", "--n-calls", 4, "--n-initial", 3, "--n-candidates", 1, "--noise-variants", 0,
              "--solver-tol", 1e-3]
    for s in (0, 1):
        bench(*common, "--seeds", s, "--out", tmp_path / f"s{s}")
    bench("--combine", f"{tmp_path / 's0'},{tmp_path / 's1'}", "--out", tmp_path / "all")
    parts = pd.concat([pd.read_csv(tmp_path / f"s{s}" / "records.csv") for s in (0, 1)], ignore_index=True)
    merged = pd.read_csv(tmp_path / "all" / "records.csv")
    pd.testing.assert_frame_equal(merged, parts)
    assert sorted(merged["seed"].unique()) == [0, 1] and len(merged) == 2 * 2 * 2  # seeds x targets x methods
    summary = pd.read_csv(tmp_path / "all" / "summary.csv")
    assert (summary["seeds"] == 2).all() and set(summary["method"]) == {"bo", "lookup"}
    md = (tmp_path / "all" / "results.md").read_text()
    assert "--combine" in md.splitlines()[0] and "merged runs:" in md and "--seeds 1" in md
    # diversity counted both ways: a translated copy is not distinct in the second count
    assert (merged["distinct_hits_shift"] <= merged["distinct_hits"]).all()
    assert "ge3_distinct_shift" in summary and ">=3 distinct, translations not" in md

    # a baseline run later on the same targets and seed merges as more methods
    bench(*[a if a != "bo,lookup" else "random" for a in common], "--seeds", 0, "--out", tmp_path / "r0")
    bench("--combine", f"{tmp_path / 's0'},{tmp_path / 's1'},{tmp_path / 'r0'}", "--out", tmp_path / "more")
    more = pd.read_csv(tmp_path / "more" / "records.csv")
    assert len(more) == len(merged) + 2 and set(more[more["method"] == "random"]["seed"]) == {0}
    assert set(pd.read_csv(tmp_path / "more" / "summary.csv")["method"]) == {"bo", "lookup", "random"}
    res = bench("--combine", f"{tmp_path / 's0'},{tmp_path / 's0'}", "--out", tmp_path / "dup", ok=False)
    assert "dev_in_000 bo seed 0 is in more than one of" in res.stderr
    (tmp_path / "other").mkdir()
    for f in ("records.csv", "targets_dev.csv"):
        (tmp_path / "other" / f).write_bytes((tmp_path / "s1" / f).read_bytes())
    (tmp_path / "other" / "results.md").write_text(
        (tmp_path / "s1" / "results.md").read_text().replace("--n-calls 4", "--n-calls 5", 1))
    res = bench("--combine", f"{tmp_path / 's0'},{tmp_path / 'other'}", "--out", tmp_path / "x", ok=False)
    assert "ran with --n-calls 5" in res.stderr and "only runs of the same settings" in res.stderr
    res = bench("--combine", f"{tmp_path / 's0'},{tmp_path / 'missing'}", "--out", tmp_path / "y", ok=False)
    assert "missing: no results.md and records.csv" in res.stderr


def _assert_variants_redrawn(ckpt, spec: str, out, var: pd.DataFrame, texture: str) -> None:
    """Every delivered variant (rows of ``var``) is what Delivery(variant_texture=texture) gives again
    for its code, noise seed and porosity shift, not Gaussian noise field `seed`; the search's own
    structure (seed 0) is the Gaussian prior's either way."""
    from inverse.delivered import Delivery
    from inverse.model_source import load_bundle
    from inverse.targets import build_targets

    bundle = load_bundle(str(ckpt))
    target = build_targets([spec])[0]
    learned = Delivery(bundle.model, bundle.norm, target, variant_texture=texture)
    gauss = Delivery(bundle.model, bundle.norm, target)
    for _, row in var.iterrows():
        z = row[[f"z{d}" for d in range(bundle.model.latent_dim)]].to_numpy(float)
        seed, shift = int(row["noise_seed"]), float(row["porosity_shift"])
        im = read_volume(out / row["tif"])
        assert np.array_equal(learned(z, seed, shift)[0].im, im)
        assert not np.array_equal(gauss(z, seed, shift)[0].im, im)  # not noise field `seed`
        assert np.array_equal(learned(z)[0].im, gauss(z)[0].im)  # the search's own structure: the prior's


def test_texture_variants_wear_the_stored_textures_of_training_structures(trained, tmp_path):
    """texture: variants: the search decodes with the Gaussian texture prior, variant k with the
    stored texture of the k-th nearest training code; a variant estimated to hit ranks first."""
    import torch

    from data_pipeline.dataset import VoxelDataset
    from inverse.design import design
    from models.checkpoint import load_model, read_metrics, write_checkpoint

    model, cfg, norm = load_model(trained["ckpt"])
    with pytest.raises(ValueError, match="texture bank"):  # the fixture's model keeps none (texture_bank 0)
        design(design_cfg(trained, tmp_path / "none", targets=["porosity=0.5,k_xx=0.1"], texture="variants"),
               log=lambda *a: None)
    train = VoxelDataset(trained["data"], "train", cfg.properties, fractions=tuple(cfg.split_fractions))
    x = torch.from_numpy(np.asarray(train.volumes(), dtype=np.float32)).unsqueeze(1)  # (N, 1, 16, 16, 16)
    with torch.no_grad():
        codes, res = model.texture_residuals(x)
    model.set_texture_bank(codes, res)
    cfg.texture_bank = len(codes)
    ckpt = write_checkpoint(tmp_path / "banked", model, cfg, norm, read_metrics(trained["ckpt"]))

    # a training structure's labels: the search starts at its code, whose stored texture is its own
    y = train.targets
    spec = f"porosity={float(y[0, 0]):.4f}+-0.02,k_xx={float(y[0, 1]):.5g}+-50%"  # loose: variants can hit
    out = tmp_path / "variants"
    design(design_cfg(trained, out, model=str(ckpt), targets=[spec], texture="variants", n_candidates=3,
                      noise_variants=6), log=lambda *a: None)
    rows = pd.read_csv(out / "results.csv").sort_values("candidate")
    var = rows[rows["noise_seed"] > 0]
    assert len(var) >= 1 and (var["texture"] == "bank").all() and (rows[rows["noise_seed"] == 0]["texture"] == "prior").all()
    _assert_variants_redrawn(ckpt, spec, out, var, "bank")  # the (seed)-th nearest stored texture
    # variants estimated to hit (the search's estimate: the solver) come first, before the search's own
    est_hit = [(r["noise_seed"] > 0 and abs(r["pred_porosity"] - y[0, 0]) <= 0.02
                and abs(r["pred_k_xx"] / y[0, 1] - 1) <= 0.5) for _, r in rows.iterrows()]
    assert est_hit[0] and est_hit == sorted(est_hit, reverse=True), est_hit
    with pytest.raises(ValueError, match="texture"):
        design_cfg(trained, tmp_path / "bad", texture="bank")


def test_diffusion_variants_wear_textures_of_the_learned_prior(trained, tmp_path):
    """texture: diffusion: the search decodes with the Gaussian texture prior, variant k with a
    texture drawn with seed k from the learned texture prior stored in the checkpoint; a model
    without one is refused by name."""
    import shutil

    from data_pipeline.dataset import VoxelDataset
    from inverse.design import design
    from models.checkpoint import load_model
    from models.texture_diffusion import (TextureDiffusionConfig, fit_texture_diffusion, save_texture_diffusion,
                                          training_residuals)

    with pytest.raises(ValueError, match="learned texture prior"):  # the fixture's model holds none
        design(design_cfg(trained, tmp_path / "none", targets=["porosity=0.5,k_xx=0.1"], texture="diffusion"),
               log=lambda *a: None)
    model, cfg, norm = load_model(trained["ckpt"])
    train = VoxelDataset(trained["data"], "train", cfg.properties, fractions=tuple(cfg.split_fractions))
    codes, res = training_residuals(model, np.asarray(train.volumes()), augment=0)
    dcfg = TextureDiffusionConfig(channels=[4, 8, 8], cond_width=16, timesteps=50, sample_steps=5, steps=20, seed=0)
    diff, _ = fit_texture_diffusion(codes, res, dcfg)
    ckpt = tmp_path / "with_diffusion"
    shutil.copytree(trained["ckpt"], ckpt)
    save_texture_diffusion(diff, ckpt)
    assert load_model(ckpt)[0].texture_diffusion is not None

    y = train.targets
    spec = f"porosity={float(y[0, 0]):.4f}+-0.02,k_xx={float(y[0, 1]):.5g}+-50%"
    out = tmp_path / "diffusion"
    design(design_cfg(trained, out, model=str(ckpt), targets=[spec], texture="diffusion", n_candidates=3,
                      noise_variants=4), log=lambda *a: None)
    rows = pd.read_csv(out / "results.csv")
    var = rows[rows["noise_seed"] > 0]
    assert len(var) >= 1 and (var["texture"] == "diffusion").all()
    assert (rows[rows["noise_seed"] == 0]["texture"] == "prior").all()
    _assert_variants_redrawn(ckpt, spec, out, var, "diffusion")  # drawn again with its seed: the same
