"""Normalizer and checkpoint folders: exact reload, weights-only state, real units back."""
import numpy as np
import pytest
import torch

from models.checkpoint import Normalizer, TRAIN_STATE, load_model, write_checkpoint
from models.config import PVAEConfig
from models.pvae import PVAE


def test_normalizer_log10_standardizes_and_inverts():
    y = np.array([[0.2, 1e-3, 2.0], [0.4, 1e-1, 4.0], [0.6, 1e1, 6.0]])
    norm = Normalizer.fit(["porosity", "k_xx", "k_xy"], y)
    assert norm.log == [False, True, False]
    z = norm.transform(y)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-6)
    np.testing.assert_allclose(norm.to_log(y)[:, 1], [-3, -1, 1])
    np.testing.assert_allclose(norm.inverse(z), y, rtol=1e-5)
    np.testing.assert_allclose(norm.inverse_log(z)[:, 1], [-3, -1, 1], atol=1e-5)
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.transform(y), z)


def test_zero_permeability_is_clamped_not_infinite():
    norm = Normalizer.fit(["k_zz"], np.array([[0.0], [1.0], [10.0]]), k_floor=1e-6)
    assert np.isfinite(norm.transform([[0.0]])).all()
    assert norm.to_log([[0.0]])[0, 0] == pytest.approx(-6.0)


def test_checkpoint_reloads_to_identical_outputs(tmp_path):
    cfg = PVAEConfig(dims=3, input_size=16, channels=[4, 8], latent_dim=3, properties=["porosity", "k_xx"])
    torch.manual_seed(0)
    model = PVAE.from_config(cfg)
    x = (torch.rand(3, 1, 16, 16, 16) < 0.4).float()
    model.train()
    model(x)  # move the BatchNorm running statistics away from their initial values
    model.eval()
    norm = Normalizer.fit(cfg.properties, np.array([[0.3, 0.1], [0.5, 2.0]]))
    write_checkpoint(tmp_path / "ck", model, cfg, norm, {"epoch": 1, "val": float("nan")},
                     {"optimizer": torch.optim.AdamW(model.parameters()).state_dict(), "rng": torch.get_rng_state()})
    loaded, cfg2, norm2 = load_model(tmp_path / "ck")
    assert cfg2 == cfg and not loaded.training
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in ("logits", "mu", "logvar", "props"):
        assert torch.equal(a[k], b[k]), k
    assert norm2.to_dict() == norm.to_dict()
    state = torch.load(tmp_path / "ck" / TRAIN_STATE, weights_only=True)  # no pickled objects
    assert "optimizer" in state
    # rewriting replaces the folder atomically, leaving no temporary folders behind
    write_checkpoint(tmp_path / "ck", model, cfg, norm, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_checkpoint_written_before_the_spectral_prior_loads_as_white(tmp_path):
    import json
    cfg = PVAEConfig(dims=2, input_size=16, channels=[4, 8], latent_dim=3, properties=["porosity"],
                     texture_prior="white")
    model = PVAE.from_config(cfg).eval()
    write_checkpoint(tmp_path / "ck", model, cfg, Normalizer.fit(cfg.properties, np.array([[0.3], [0.5]])), {"epoch": 1})
    path = tmp_path / "ck" / "config.json"
    d = json.loads(path.read_text())
    d.get("config", d).pop("texture_prior")  # as written before the field existed
    path.write_text(json.dumps(d))
    loaded, cfg2, _ = load_model(tmp_path / "ck")
    assert cfg2.texture_prior == "white" and loaded.spectrum() is None
    assert PVAEConfig().texture_prior == "spectral"  # new runs get the spectral prior


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a pVAE checkpoint"):
        load_model(tmp_path)
