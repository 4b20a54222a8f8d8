"""Evaluation metrics (S2, R2), latent export with sample ids, slerp, the CLI verbs."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.checkpoint import Normalizer, load_model, write_checkpoint
from models.config import PVAEConfig
from models.evaluate import binarize_expected, evaluate, r2_score, two_point_s2
from models.latent import latent_means, main as latent_main, slerp
from models.pvae import PVAE
from models.toy import make_toy_dataset

ROOT = Path(__file__).resolve().parents[2]


def brute_s2(im: np.ndarray, r: int) -> float:
    """Mean over axes of P(pore at p and at p + r e_axis), periodic."""
    return float(np.mean([np.mean(im & np.roll(im, r, axis=a)) for a in range(im.ndim)]))


@pytest.mark.parametrize("dims", [2, 3])
def test_s2_matches_brute_force_and_starts_at_porosity(dims):
    rng = np.random.default_rng(0)
    im = rng.random((2,) + (10,) * dims) < 0.3
    s2 = two_point_s2(torch.from_numpy(im)).numpy()  # (2, 6)
    assert s2.shape == (2, 6)
    for b in range(2):
        assert s2[b, 0] == pytest.approx(im[b].mean())
        for r in range(6):
            assert s2[b, r] == pytest.approx(brute_s2(im[b], r), abs=1e-6)


def test_s2_of_stripes():
    im = np.zeros((1, 8, 8), bool)
    im[0, :, ::2] = True  # stripes of period 2 along x
    s2 = two_point_s2(torch.from_numpy(im))[0].numpy()
    # along x: 0.5, 0, 0.5, ...; along y: 0.5 everywhere; mean of the two
    np.testing.assert_allclose(s2, [0.5, 0.25, 0.5, 0.25, 0.5], atol=1e-6)


def test_binarize_expected_keeps_the_expected_porosity_where_0_5_loses_a_phase():
    g = torch.Generator().manual_seed(0)
    # a low-contrast map: p in 0.25..0.45, expected porosity 0.35; thresholding at 0.5 gives all solid
    prob = 0.25 + 0.2 * torch.rand(3, 16, 16, 16, generator=g)
    im = binarize_expected(prob)
    assert im.dtype == torch.bool and im.shape == prob.shape
    np.testing.assert_allclose(im.float().mean((1, 2, 3)).numpy(), prob.mean((1, 2, 3)).numpy(), atol=1e-3)
    assert not (prob > 0.5).any()
    # in each structure, the most probable voxels are the pores
    for p_i, im_i in zip(prob, im):
        assert p_i[im_i].min() >= p_i[~im_i].max()
    # a decisive map is left as thresholding at 0.5 leaves it
    sharp = (torch.rand(2, 8, 8, generator=g) < 0.3).float() * 0.98 + 0.01
    assert torch.equal(binarize_expected(sharp), sharp > 0.5)


def test_r2():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == 0.0


def test_slerp_endpoints_and_norm():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    path = slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0)
    np.testing.assert_allclose(slerp(a, 2 * a, [0.5])[0], 1.5 * a)  # parallel: linear


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    data = make_toy_dataset(root / "data", n=20, size=16, dims=3, seed=3)
    cfg = PVAEConfig(dims=3, input_size=16, channels=[4, 8], latent_dim=3, n_generate=4)
    torch.manual_seed(0)
    model = PVAE.from_config(cfg).eval()
    norm = Normalizer.fit(cfg.properties, pd.read_csv(data / "properties.csv")[cfg.properties].to_numpy())
    write_checkpoint(root / "ck", model, cfg, norm, {"epoch": 0, "history": []})
    return data, root / "ck"


def test_evaluate_reports_all_metric_groups_and_figures(checkpoint, tmp_path):
    data, ck = checkpoint
    model, cfg, norm = load_model(ck)
    m = evaluate(model, cfg, norm, data, split="test", out_dir=tmp_path / "ev")
    for key in ("recon_bce", "voxel_accuracy", "pore_iou", "porosity_error", "s2_distance", "r2_porosity",
                "mae_k_xx", "r2_k_zz", "gen_porosity_mean", "train_porosity_mean", "gen_s2_distance"):
        assert key in m and np.isfinite(m[key]), key
    assert 0 <= m["voxel_accuracy"] <= 1 and 0 <= m["pore_iou"] <= 1
    assert m["n_samples"] == 2
    assert all(Path(f).is_file() for f in m["figures"])
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_latent_export_has_sample_ids_aligned_with_rows(checkpoint, tmp_path):
    from data_pipeline.dataset import VoxelDataset
    data, ck = checkpoint
    out = tmp_path / "latent.csv"
    assert latent_main(["--checkpoint", str(ck), "--dataset", str(data), "--split", "train",
                        "--out", str(out), "--with-properties"]) == 0
    df = pd.read_csv(out, dtype={"sample_id": str})
    model, cfg, _ = load_model(ck)
    ds = VoxelDataset(data, "train", cfg.properties)
    assert df["sample_id"].tolist() == ds.ids
    assert [c for c in df.columns if c.startswith("z")] == ["z0", "z1", "z2"]
    # row i is the latent mean of the sample named in row i
    i = 5
    with torch.no_grad():
        mu, _ = model.encode(ds[i][0][None])
    np.testing.assert_allclose(df.loc[i, ["z0", "z1", "z2"]].to_numpy(float), mu[0].numpy(), rtol=1e-5, atol=1e-6)
    props = pd.read_csv(data / "properties.csv", dtype={"sample_id": str}).set_index("sample_id")
    np.testing.assert_allclose(df.set_index("sample_id")["porosity"], props.loc[ds.ids, "porosity"], rtol=1e-6)
    ids, mu_all = latent_means(model, ds)
    assert ids == ds.ids and mu_all.shape == (len(ds), 3)


def test_cli_help_and_dispatch():
    res = subprocess.run([sys.executable, "-m", "models", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and all(v in res.stdout for v in ("train", "evaluate", "latent"))
    res = subprocess.run([sys.executable, "-m", "models", "evaluate", "--help"], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0 and "--checkpoint" in res.stdout


def test_evaluate_scores_the_shift_averaged_prediction_and_keeps_the_single_pass(checkpoint):
    data, ck = checkpoint
    model, cfg, norm = load_model(ck)
    assert cfg.predict_shifts == 0  # the default: one pass, as for checkpoints written before the field
    cfg.predict_shifts = 15
    m = evaluate(model, cfg, norm, data, split="test", morphology=False)
    assert m["predict_shifts"] == 15
    cfg.predict_shifts = 0
    m0 = evaluate(model, cfg, norm, data, split="test", morphology=False)
    assert m0["predict_shifts"] == 0 and "r2_porosity_single" not in m0
    for p in cfg.properties:
        assert m[f"r2_{p}_single"] == pytest.approx(m0[f"r2_{p}"], abs=1e-9), p
    assert m["r2_porosity"] != m0["r2_porosity"]  # the averaged prediction is another number


def test_symmetry_averaged_properties_are_invariant_and_swap_k_with_a_transpose():
    """Averaged over the 8 symmetries of the square, a transposed image's prediction is the
    original's with k_xx and k_yy swapped, exactly; porosity is unchanged."""
    from models.evaluate import volume_properties
    from models.pvae import PVAE

    torch.manual_seed(0)
    names = ["porosity", "k_xx", "k_yy"]
    model = PVAE(dims=2, input_size=16, n_properties=3, channels=[4, 8], latent_dim=3).eval()
    y = np.array([[0.4, 0.1, 0.3], [0.6, 1.0, 0.5], [0.5, 0.2, 0.9]])
    norm = Normalizer.fit(names, y)
    x = (torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    with torch.no_grad():
        plain = volume_properties(model, x)  # no symmetries: the regressor on the code
        a = norm.inverse_log(volume_properties(model, x, norm=norm, names=names).numpy())
        b = norm.inverse_log(volume_properties(model, x.transpose(2, 3), norm=norm, names=names).numpy())
        one = norm.inverse_log(volume_properties(model, x.transpose(2, 3)).numpy())
    assert np.allclose(b, a[:, [0, 2, 1]], atol=1e-5)
    assert not np.allclose(one, norm.inverse_log(plain.numpy())[:, [0, 2, 1]], atol=1e-5)  # one pass is not
