"""The Trainer: losses go down, a property signal is learned, best/last checkpoints, exact resume."""
import math

import numpy as np
import pytest
import torch

from models.checkpoint import load_model, read_metrics
from models.common import batches
from models.config import PVAEConfig
from models.toy import make_toy_dataset
from models.train import Trainer, main as train_main

PROPS2 = ["porosity", "k_xx", "k_yy"]


@pytest.fixture(scope="module")
def toy2d(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy2d"), n=64, size=16, dims=2, seed=1)


@pytest.fixture(scope="module")
def toy3d(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy3d"), n=24, size=16, dims=3, seed=2)


def cfg2d(**kw):
    base = dict(dims=2, input_size=16, properties=PROPS2, channels=[8, 16], latent_dim=4, batch_size=8,
                epochs=3, num_threads=1, lr=1e-2, n_generate=8)
    return PVAEConfig(**{**base, **kw})


def test_training_lowers_every_loss_term(toy2d):
    # beta large enough that the KL term matters at this size (it is per voxel)
    t = Trainer(cfg2d(beta=500.0, alpha=5.0, epochs=8), toy2d)
    hist = [t.train_epoch() for _ in range(8)]
    first, last = hist[0], hist[-1]
    for term in ("loss", "recon", "kl", "prop"):
        assert last[f"train_{term}"] < first[f"train_{term}"], term
    assert last["train_kl"] < 0.8 * first["train_kl"]
    assert last["train_prop"] < 0.5 * first["train_prop"]
    assert set(first) >= {"epoch", "train_loss", "train_recon", "train_kl", "train_prop", "val_loss",
                          "val_recon", "val_kl", "val_prop", "lr"}
    assert [h["epoch"] for h in hist] == list(range(1, 9)) and t.epoch == 8


def test_property_only_signal_is_learned(toy2d):
    """Porosity is a linear function of the input: with alpha dominant the regressor must learn it."""
    t = Trainer(cfg2d(properties=["porosity"], beta=0.0, alpha=20.0, epochs=12, lr=3e-3, patience=0), toy2d)
    for _ in range(12):
        t.train_epoch()
    m = t.evaluate("train")
    assert m["r2_porosity"] > 0.9, m["r2_porosity"]
    assert m["mae_porosity"] < 0.03


def test_fit_keeps_best_and_last_and_resume_continues_exactly(toy3d, tmp_path):
    cfg = PVAEConfig(dims=3, input_size=16, channels=[4, 8], latent_dim=3, batch_size=6, epochs=3,
                     num_threads=1, regressor_width=8, n_generate=4)
    full = Trainer(cfg, toy3d)
    full.fit(tmp_path / "full", log=None)
    best = read_metrics(tmp_path / "full" / "best")
    vals = [h["val_loss"] for h in full.history]
    assert best["epoch"] == best["best_epoch"] == 1 + int(np.argmin(vals))
    assert read_metrics(tmp_path / "full" / "last")["epoch"] == 3

    # interrupted after one epoch, then resumed from the checkpoint folder
    part = Trainer(cfg, toy3d)
    part.train_epoch()
    part.save_checkpoint(tmp_path / "part" / "last")
    del part
    resumed = Trainer.resume(tmp_path / "part" / "last", toy3d)
    assert resumed.epoch == 1 and len(resumed.history) == 1
    while not resumed.should_stop():
        resumed.train_epoch()
    assert resumed.epoch == 3
    for a, b in zip(full.history, resumed.history):
        for k in ("train_loss", "val_loss", "lr"):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), (a["epoch"], k)


def test_early_stopping_and_is_best(toy2d):
    t = Trainer(cfg2d(epochs=50, patience=2), toy2d)
    t.train_epoch()
    assert t.is_best() and not t.should_stop()
    t.best_val = -math.inf  # nothing can improve on this: two bad epochs stop the run
    t.train_epoch()
    assert not t.is_best() and not t.should_stop()
    t.train_epoch()
    assert t.should_stop()


def test_nan_loss_raises_with_epoch_and_batch(toy2d):
    t = Trainer(cfg2d(), toy2d)
    with torch.no_grad():
        t.model.fc_mu.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss is NaN at epoch 1, batch 1"):
        t.train_epoch()


def test_config_and_dataset_mismatch_is_reported(toy2d):
    with pytest.raises(ValueError, match="dataset.yaml.*input_size 24"):
        Trainer(cfg2d(input_size=24), toy2d)


def test_train_verb_writes_checkpoints_and_figures(toy2d, tmp_path, capsys):
    rc = train_main(["--dataset", str(toy2d), "--out", str(tmp_path / "run"), "--set", "dims=2",
                     "--set", "input_size=16", "--set", f"properties={PROPS2}", "--set", "channels=[4, 8]",
                     "--set", "epochs=1", "--set", "num_threads=1", "--set", "n_generate=4"])
    assert rc == 0
    model, cfg, norm = load_model(tmp_path / "run" / "best")
    assert cfg.epochs == 1 and norm.names == PROPS2
    for name in ("reconstruction", "parity", "latent", "interpolation", "generated", "loss_curves"):
        assert (tmp_path / "run" / "eval" / f"{name}.png").stat().st_size > 1000
    assert "pore IoU" in capsys.readouterr().out
    # --resume with the run finished: nothing more to do, still succeeds
    assert train_main(["--dataset", str(toy2d), "--out", str(tmp_path / "run"), "--resume", "--no-eval"]) == 0
    rc = train_main(["--dataset", str(toy2d), "--out", str(tmp_path / "x"), "--set", "latnt=3"])
    assert rc == 2 and "Unknown config key 'latnt'" in capsys.readouterr().err


def test_spectral_texture_prior_is_learned_at_its_own_learning_rate(toy2d):
    t = Trainer(cfg2d(texture_prior="spectral", spatial_stage=1, epochs=2), toy2d)
    model = t.model
    groups = t.optimizer.param_groups
    assert len(groups) == 2 and groups[1]["params"][0] is model.log_spectrum
    assert groups[1]["lr"] == pytest.approx(20 * groups[0]["lr"]) and groups[1]["weight_decay"] == 0.0
    lr0 = groups[1]["lr"]
    t.train_epoch()
    learned = model.log_spectrum.detach().clone()
    steps = math.ceil(len(t.x_train) / t.cfg.batch_size)
    assert 0.1 < learned.abs().max() <= 1.5 * steps * lr0  # it moved, by about lr per Adam step at most
    # generation colours the noise with it: decode(z) differs from the white prior's
    model.eval()
    z = torch.zeros(1, model.latent_dim)
    with torch.no_grad():
        a = model.decode(z)
        model.log_spectrum.zero_()
        assert not torch.allclose(a, model.decode(z))


def test_shift_augmentation_rolls_each_sample_and_keeps_its_labels(toy2d):
    t = Trainer(cfg2d(augment=False, augment_shift=True), toy2d)
    idx = torch.arange(8)
    x0, y0, m0 = t._to_device(*t._index(idx, t.x_train, t.y_train, t.m_train))
    x1, y1, m1 = t._to_device(*t._index(idx, t.x_train, t.y_train, t.m_train), augment=True)
    assert torch.equal(y1, y0) and torch.equal(m1, m0)  # a periodic shift changes no label
    moved = 0
    for a, b in zip(x0, x1):
        rolls = [(i, j) for i in range(16) for j in range(16) if torch.equal(torch.roll(a, (i, j), (1, 2)), b)]
        assert rolls, "an augmented sample is not a periodic shift of its original"
        moved += (0, 0) not in rolls
    assert moved >= 6  # 8 independent shifts: at most a chance 1/256 each of staying in place
    hist = [t.train_epoch() for _ in range(2)]
    assert all(math.isfinite(h["train_loss"]) for h in hist)


@pytest.mark.parametrize("conditional", [False, True])
def test_adversarial_patch_loss_trains_its_critic_and_resumes_it(toy3d, tmp_path, conditional):
    """adversarial > 0: the discriminator takes ``critic_steps`` steps per batch (its loss starts near
    the chance value 2 ln 2 of two logistic terms), the generator term is logged, and the critic's
    weights and optimizer travel in the training state so that a resumed run continues exactly
    (the random views of the extra critic steps included); a conditional critic reads the code."""
    with pytest.raises(ValueError, match="adversarial"):
        PVAEConfig(adversarial=-0.1)
    with pytest.raises(ValueError, match="critic_steps"):
        PVAEConfig(critic_steps=0)
    cfg = PVAEConfig(dims=3, input_size=16, channels=[4, 8], latent_dim=3, batch_size=6, epochs=2,
                     num_threads=1, regressor_width=8, n_generate=4, adversarial=0.5, critic_steps=3,
                     critic_conditional=conditional)
    full = Trainer(cfg, toy3d)
    assert (full.disc.embed is not None) == conditional
    w0 = [p.detach().clone() for p in full.disc.parameters()]
    steps = []
    full.d_optimizer.register_step_post_hook(lambda *a: steps.append(1))
    h = full.train_epoch()
    assert len(steps) == 3 * len(batches(len(full.x_train), cfg.batch_size, torch.Generator()))  # per pVAE step
    assert any(not torch.equal(a, b) for a, b in zip(w0, full.disc.parameters()))  # the critic learned
    assert 0.5 < h["train_disc"] < 2.5 and 0.0 < h["train_adv"] < 3.0
    full.train_epoch()

    part = Trainer(cfg, toy3d)
    part.train_epoch()
    part.save_checkpoint(tmp_path / "part" / "last")
    resumed = Trainer.resume(tmp_path / "part" / "last", toy3d)
    for a, b in zip(part.disc.state_dict().values(), resumed.disc.state_dict().values()):
        assert torch.equal(a, b)
    resumed.train_epoch()
    for k in ("train_loss", "train_adv", "train_disc", "val_loss"):
        assert full.history[1][k] == pytest.approx(resumed.history[1][k], rel=1e-6, abs=1e-9), k
    # an extra critic step sees the same structures under a symmetry of the cube: same porosity
    x = full.x_train[:4].float()
    (view,) = full._random_view(x)
    assert view.shape == x.shape and torch.equal(view.sum((1, 2, 3, 4)), x.sum((1, 2, 3, 4)))
    # the saved model is the pVAE alone: no critic weights in the checkpoint's model
    model = load_model(tmp_path / "part" / "last")[0]
    assert not any(name.startswith("disc") for name in model.state_dict())


def test_every_epoch_stores_a_seeded_texture_bank_of_training_structures(toy2d, tmp_path):
    t = Trainer(cfg2d(texture_bank=10, epochs=1), toy2d)
    t.train_epoch()
    model = t.model
    assert model.bank_codes.shape == (10, 4) and model.bank_residuals.shape[:2] == (10, model.spatial_channels)
    # the codes are encoder means of training structures, the residuals decode them back
    x = t.x_train.float()
    model.eval()
    with torch.no_grad():
        mu = model.encode(x)[0]
        d = torch.cdist(model.bank_codes, mu)  # (10, N)
        assert d.min(1).values.max().item() < 1e-2  # (batching and cdist round at ~1e-3)
    again = Trainer(cfg2d(texture_bank=10, epochs=1), toy2d)
    again.train_epoch()
    assert torch.equal(again.model.bank_residuals, model.bank_residuals)  # seeded
    t.save_checkpoint(tmp_path / "ck")
    loaded, cfg, _ = load_model(tmp_path / "ck")
    assert cfg.texture_bank == 10 and torch.equal(loaded.bank_codes, model.bank_codes)
    none = Trainer(cfg2d(texture_bank=0, epochs=1), toy2d)
    none.train_epoch()
    assert len(none.model.bank_codes) == 0
    with pytest.raises(ValueError, match="holds no texture bank"):
        none.model.decode(torch.zeros(1, 4), texture="bank")


def test_descriptor_targets_are_learned_from_the_code_and_kept_out_of_r2_mean(toy2d):
    """PVAEConfig.descriptors: the regressor predicts them after the properties (measured on the
    volumes), training fits them, and the evaluation reports them apart from the labels' mean R^2."""
    t = Trainer(cfg2d(descriptors=["specific_surface", "chord_length"], alpha=20.0, beta=0.0, epochs=12,
                      lr=3e-3, patience=0), toy2d)
    assert t.norm.names == PROPS2 + ["specific_surface", "chord_length"]
    assert t.model.regressor[-1].out_features == 5
    for _ in range(12):
        t.train_epoch()
    m = t.evaluate("train")
    assert m["r2_specific_surface"] > 0.5 and m["r2_chord_length"] > 0.5, m
    labels = [m[f"r2_{p}"] for p in PROPS2]
    assert m["r2_mean"] == pytest.approx(float(np.nanmean(labels)))
