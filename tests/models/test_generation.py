"""Generative behaviour on small data: reconstructions beat chance, prior samples follow the
training porosity distribution. One family (toy Gaussian random fields, 2D 32^2), a few epochs."""
import numpy as np
import pytest

from models.config import PVAEConfig
from models.toy import make_toy_dataset
from models.train import Trainer

EPOCHS = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_toy_dataset(tmp_path_factory.mktemp("toy2d32"), n=160, size=32, dims=2, seed=1)
    cfg = PVAEConfig(dims=2, input_size=32, properties=["porosity"], channels=[8, 16, 32], latent_dim=8,
                     batch_size=16, epochs=EPOCHS, num_threads=1, lr=3e-3, n_generate=64, seed=0)
    t = Trainer(cfg, root)
    for _ in range(EPOCHS):
        t.train_epoch()
    return t.evaluate("test"), t.evaluate("train")


def test_reconstructions_beat_chance_by_a_margin(trained):
    test, _ = trained
    # chance: calling every voxel pore gives pore IoU = porosity (~0.4 here); a random map of the
    # right porosity phi gives phi / (2 - phi) (~0.25). The model must beat the first by 0.2.
    chance = test["train_porosity_mean"]
    assert test["pore_iou"] >= chance + 0.2, (test["pore_iou"], chance)
    assert test["s2_distance"] < 0.05
    assert test["porosity_error"] < 0.06  # binarized at the expected porosity (mean p) of each reconstruction
    assert test["r2_porosity"] > 0.9


def test_prior_samples_follow_the_training_porosity_distribution(trained):
    _, train = trained
    # 64 prior samples (global code from the fitted mixture, texture from p(z_s | z)) against the
    # training subset: 1D Wasserstein distance of porosity, and S2 of each sample near a training one
    assert train["gen_porosity_wasserstein"] <= 0.05, (train["gen_porosity_mean"], train["train_porosity_mean"])
    assert abs(train["gen_porosity_std"] - train["train_porosity_std"]) < 0.05
    assert train["gen_s2_nearest"] <= 0.05
    assert np.isfinite(train["gen_specific_surface_ratio"])
