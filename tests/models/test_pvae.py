"""The pVAE module: shapes for any cubic size, closed-form KL, loss scaling."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence as torch_kl

from models.losses import kl_divergence, pvae_loss
from models.pvae import PVAE, output_paddings, stage_sizes


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("size", [16, 24, 32, 48])
def test_output_shape_equals_input_shape(dims, size):
    torch.manual_seed(0)
    model = PVAE(dims=dims, input_size=size, n_properties=3, channels=[4, 8, 8], latent_dim=5,
                 regressor_depth=1, regressor_width=8).eval()
    x = (torch.rand(2, 1, *(size,) * dims) < 0.4).float()  # (B, 1, S, S[, S])
    out = model(x)
    assert out["logits"].shape == x.shape
    assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (2, 5)
    assert out["props"].shape == (2, 3)
    assert model.decode(torch.zeros(3, 5)).shape == (3, 1, *(size,) * dims)


@pytest.mark.parametrize("size", [7, 33, 50, 100, 101])
def test_decoder_sizes_map_back_for_odd_and_non_power_of_two_sizes(size):
    sizes = stage_sizes(size, 4)
    assert sizes[0] == size and all(b == math.ceil(a / 2) for a, b in zip(sizes, sizes[1:]))
    pads = output_paddings(sizes)
    for big, small, op in zip(sizes, sizes[1:], pads):
        assert (small - 1) * 2 - 2 + 3 + op == big  # ConvTranspose output size formula


def test_odd_size_100_3d_roundtrip_shape():
    model = PVAE(dims=3, input_size=100, n_properties=1, channels=[2, 2, 2, 2], latent_dim=2).eval()
    x = torch.zeros(1, 1, 100, 100, 100)
    assert model(x)["logits"].shape == x.shape


def test_wrong_input_size_is_reported():
    model = PVAE(dims=2, input_size=16, n_properties=1, channels=[4])
    with pytest.raises(ValueError, match=r"expects input \(B, 1, 16, 16\)"):
        model.encode(torch.zeros(1, 1, 24, 24))


def test_kl_equals_closed_form_on_known_inputs():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), math.log(0.5)]])
    # KL = 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)
    expected_row1 = 0.5 * ((1 + 2 - 1 - math.log(2)) + (4 + 0.5 - 1 - math.log(0.5)))
    kl = kl_divergence(mu, logvar)
    assert kl[0].item() == 0.0
    assert kl[1].item() == pytest.approx(expected_row1, rel=1e-6)
    ref = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl, ref)


def _out(b, size=8, latent=3, p=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"logits": torch.randn(b, 1, size, size, generator=g), "mu": torch.randn(b, latent, generator=g),
            "logvar": torch.randn(b, latent, generator=g), "props": torch.randn(b, p, generator=g)}


def test_loss_terms_are_per_voxel_and_do_not_depend_on_batch_size():
    out = _out(4)
    x = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    t1 = pvae_loss(out, x, y, beta=2.0, alpha=3.0)
    doubled = {k: torch.cat([v, v]) for k, v in out.items()}
    t2 = pvae_loss(doubled, torch.cat([x, x]), torch.cat([y, y]), beta=2.0, alpha=3.0)
    for k in ("loss", "recon", "kl", "prop"):
        torch.testing.assert_close(t1[k], t2[k])
    # the named terms and their combination
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(out["logits"]), x)
    torch.testing.assert_close(t1["recon"], bce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t1["kl"], kl_divergence(out["mu"], out["logvar"]).mean() / 64)
    torch.testing.assert_close(t1["prop"], ((out["props"] - y) ** 2).mean())
    torch.testing.assert_close(t1["loss"], t1["recon"] + 2.0 * t1["kl"] + 3.0 * t1["prop"])


def test_reparameterize_is_seeded_and_has_the_posterior_moments():
    mu, logvar = torch.full((20000, 1), 1.5), torch.full((20000, 1), math.log(0.25))
    z = PVAE.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert z.mean().item() == pytest.approx(1.5, abs=0.01)
    assert z.std().item() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_norm_and_dropout_options_build_and_run(norm):
    model = PVAE(dims=3, input_size=16, n_properties=2, channels=[4, 8], norm=norm, dropout=0.2, regressor_depth=0)
    out = model.train()((torch.rand(2, 1, 16, 16, 16) < 0.5).float())
    assert out["logits"].shape == (2, 1, 16, 16, 16)
    assert isinstance(model.regressor[0], torch.nn.Linear) and len(model.regressor) == 1
