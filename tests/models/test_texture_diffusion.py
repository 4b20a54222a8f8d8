"""The learned texture prior (models.texture_diffusion): schedule, sampler against the exact
denoiser of Gaussian data, a conditional fit that follows its code, persistence, and the pVAE's
decode from a given residual."""
import numpy as np
import pytest
import torch

from models.pvae import PVAE
from models.texture_diffusion import (TextureDiffusion, TextureDiffusionConfig, cosine_alpha_bar,
                                      fit_texture_diffusion, load_texture_diffusion, save_texture_diffusion,
                                      training_residuals)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as the trainers use here: two threads on two shared cores ran 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cosine_schedule_runs_from_data_to_noise():
    a = cosine_alpha_bar(1000)
    assert a.shape == (1001,) and a[0] == 1.0
    assert bool((a[1:] < a[:-1]).all())
    assert a[-1] < 1e-6 and 0.45 < float(a[500]) < 0.55  # cos^2 at the middle of the schedule


@pytest.mark.parametrize("dims", [2, 3])
def test_ddim_with_the_exact_denoiser_returns_the_data_variance(dims):
    # data x0 ~ N(0, s_c^2) per channel c, standardized by r_scale = s_c: for unit-variance white data
    # E[eps | x_t] = sqrt(1 - a) x_t and E[x0 | x_t] = sqrt(a) x_t, so the mean of x0 given x_t is
    # sqrt(a) times the mean of x_t; the sampler must give back std s_c per channel
    scales = torch.tensor([0.5, 2.0])
    d = TextureDiffusion(dims, 2, 8, 3, TextureDiffusionConfig(sample_steps=50))
    d.r_scale.copy_(scales)

    class Exact(torch.nn.Module):
        def forward(self, x, t, z):
            a = d.alpha_bar[t].view(-1, 1)
            m = x.mean(tuple(range(2, x.ndim)))  # (B, cs)
            fluct = x - m.view(*m.shape, *([1] * dims))
            return (1 - a).sqrt().view(-1, *([1] * (dims + 1))) * fluct, a.sqrt() * m

    d.net = Exact()
    out = d.sample(torch.zeros(512 if dims == 2 else 64, 3), generator=torch.Generator().manual_seed(0))
    assert out.shape[1:] == (2,) + (8,) * dims
    std = out.transpose(0, 1).reshape(2, -1).std(1)
    assert torch.allclose(std, scales, rtol=0.05), std
    assert abs(float(out.mean())) < 0.05


def test_a_fitted_prior_follows_its_code():
    # residual fields whose mean is +-1 by the sign of the first code entry, with a per-site noise of std 0.3
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 2, generator=g)
    r = torch.sign(z[:, :1]).view(-1, 1, 1, 1) + 0.3 * torch.randn(256, 1, 8, 8, generator=g)
    cfg = TextureDiffusionConfig(channels=[8, 8, 16], cond_width=32, timesteps=200, sample_steps=25,
                                 steps=400, batch_size=64, lr=3e-3, seed=0)
    torch.manual_seed(0)
    diff, losses = fit_texture_diffusion(z, r, cfg)
    assert np.mean(losses[-50:]) < 0.7 * np.mean(losses[:50])
    zq = torch.tensor([[1.5, 0.0], [-1.5, 0.0]]).repeat(16, 1)  # (32, 2)
    s = diff.sample(zq, generator=torch.Generator().manual_seed(1))  # (32, 1, 8, 8)
    means = s.mean(dim=(1, 2, 3))
    pos, neg = means[0::2], means[1::2]
    assert float(pos.mean()) > 0.6 and float(neg.mean()) < -0.6, (pos.mean(), neg.mean())
    assert 0.15 < float((s - means.view(-1, 1, 1, 1)).std()) < 0.6  # texture kept, neither collapsed nor blown up


def test_samples_keep_the_spatial_mean_of_the_data():
    # posterior texture residuals have (nearly) no spatial mean: the samples must not either. Without
    # the mean head the U-Net (GroupNorm) could not denoise the uniform part of the noise and every
    # sample kept an offset of the order of the texture itself; and the texture keeps the data's std.
    g = torch.Generator().manual_seed(0)
    r = torch.randn(256, 2, 8, 8, generator=g)
    r = r - r.mean(dim=(2, 3), keepdim=True)
    cfg = TextureDiffusionConfig(channels=[8, 8, 16], cond_width=32, timesteps=200, sample_steps=25,
                                 steps=800, batch_size=64, lr=3e-3, seed=0)  # 300 steps: texture std 2.2
    diff, _ = fit_texture_diffusion(torch.zeros(256, 2), r, cfg)
    s = diff.sample(torch.zeros(64, 2), generator=torch.Generator().manual_seed(1))  # (64, 2, 8, 8)
    offset = s.mean(dim=(2, 3)).std()
    texture = (s - s.mean(dim=(2, 3), keepdim=True)).std()
    assert float(offset) < 0.15 * float(texture), (offset, texture)
    assert 0.7 < float(texture) < 1.3  # the data's texture std is 1 - 1/64


def test_save_and_load_give_the_same_samples(tmp_path):
    cfg = TextureDiffusionConfig(channels=[4, 8, 8], cond_width=16, timesteps=50, sample_steps=5, steps=3, seed=2)
    diff, _ = fit_texture_diffusion(torch.randn(16, 3), torch.randn(16, 2, 4, 4, 4), cfg)
    save_texture_diffusion(diff, tmp_path / "td", extra={"note": "x"})
    back = load_texture_diffusion(tmp_path / "td")
    z = torch.randn(4, 3)
    a = diff.sample(z, generator=torch.Generator().manual_seed(3))
    b = back.sample(z, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="texture_diffusion"):
        load_texture_diffusion(tmp_path)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="sample_steps"):
        TextureDiffusionConfig(timesteps=10, sample_steps=20).validate()
    with pytest.raises(ValueError, match="divisible by 4"):
        TextureDiffusion(2, 1, 6, 2)


def test_decode_from_the_posterior_residual_is_the_reconstruction():
    torch.manual_seed(0)
    model = PVAE(dims=2, input_size=16, n_properties=1, channels=(8, 16), latent_dim=4, spatial_channels=2,
                 spatial_stage=1, texture_prior="spectral").eval()
    x = (torch.rand(3, 1, 16, 16) > 0.5).float()
    mu, r = model.texture_residuals(x)
    assert r.shape == (3, 2, 8, 8)
    with torch.no_grad():
        rec = model(x)["logits"]
        dec = model.decode(mu, noise=r, texture="residual")
    assert torch.allclose(dec, rec, atol=1e-5)


def test_training_residuals_encode_each_symmetric_copy():
    torch.manual_seed(0)
    model = PVAE(dims=2, input_size=16, n_properties=1, channels=(8, 16), latent_dim=4, spatial_channels=2,
                 spatial_stage=1).eval()
    vols = (np.random.default_rng(0).random((5, 16, 16)) > 0.5)
    codes, res = training_residuals(model, vols, augment=2, seed=0)
    assert codes.shape == (15, 4) and res.shape == (15, 2, 8, 8)
    x = torch.from_numpy(vols.astype(np.float32)).unsqueeze(1)
    assert torch.allclose(codes[:5], model.encode(x)[0].detach(), atol=1e-5)
    assert not torch.allclose(codes[5:10], codes[:5])  # the copies are transformed, and encoded as such


def test_decode_with_an_attached_prior_is_seeded_and_stored_with_the_checkpoint(tmp_path):
    from models.checkpoint import Normalizer, load_model, write_checkpoint
    from models.config import PVAEConfig

    cfg = PVAEConfig(dims=2, input_size=16, channels=[8, 16], latent_dim=4, spatial_channels=2, spatial_stage=1,
                     properties=["porosity"])
    torch.manual_seed(0)
    model = PVAE.from_config(cfg).eval()
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="no texture diffusion attached"):
        model.decode(z, noise=1, texture="diffusion")
    with pytest.raises(ValueError, match="does not fit"):  # another latent size
        model.attach_texture_diffusion(TextureDiffusion(2, 2, 8, 5))
    x = (torch.rand(12, 1, 16, 16) > 0.5).float()
    codes, res = model.texture_residuals(x)
    diff, _ = fit_texture_diffusion(codes, res, TextureDiffusionConfig(channels=[4, 8, 8], cond_width=16,
                                                                       timesteps=50, sample_steps=5, steps=5))
    model.attach_texture_diffusion(diff)
    assert not any(n.startswith("texture_diffusion") for n in model.state_dict())  # not part of the pVAE's weights
    with torch.no_grad():
        a, b, c = (model.decode(z, noise=s, texture="diffusion") for s in (1, 1, 2))
        one = model.decode(z[1:2], noise=1, texture="diffusion")
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.allclose(one, a[1:2], atol=1e-4)  # a row's texture does not depend on the rows beside it
    folder = write_checkpoint(tmp_path / "ckpt", model, cfg, Normalizer(["porosity"], [0.5], [0.1], [False]), {})
    save_texture_diffusion(diff, folder)
    back = load_model(folder)[0]
    with torch.no_grad():
        assert torch.allclose(back.decode(z, noise=1, texture="diffusion"), a, atol=1e-5)
