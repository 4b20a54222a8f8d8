"""The pVAE module: shapes for any cubic size, both latent levels, closed-form KL, loss scaling."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence as torch_kl

from models.config import PVAEConfig
from models.losses import kl_divergence, morphology_loss, pvae_loss
from models.pvae import LOG_SPECTRUM_MAX, PVAE, kl_gaussians, pixel_shuffle, stage_sizes


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
def test_stage_sizes_halve_with_ceiling(size):
    sizes = stage_sizes(size, 4)
    assert sizes[0] == size and all(b == math.ceil(a / 2) for a, b in zip(sizes, sizes[1:]))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_spatial_latent_at_every_level_keeps_shapes_and_decode_is_deterministic(dims, stage):
    torch.manual_seed(0)
    model = PVAE(dims=dims, input_size=20, n_properties=2, channels=[4, 8, 8], latent_dim=3,
                 spatial_channels=2, spatial_stage=stage).eval()
    x = (torch.rand(2, 1, *(20,) * dims) < 0.4).float()
    out = model(x)
    assert out["logits"].shape == x.shape and out["kl_spatial"].shape == (2,)
    assert (out["kl_spatial"] >= 0).all()
    z = torch.randn(3, 3)
    a, b = model.decode(z), model.decode(z)
    torch.testing.assert_close(a, b)  # the fixed noise field: decode(z) is a function of z
    torch.testing.assert_close(model.decode(z[1:2]), a[1:2])  # and does not depend on the batch
    c = model.decode(z, noise=torch.Generator().manual_seed(5))  # other noise -> another structure
    assert not torch.allclose(a, c)


def test_pixel_shuffle_3d_places_each_channel_at_its_sub_voxel():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)  # one coarse voxel, 8 channels
    y = pixel_shuffle(x, 3)  # (1, 1, 2, 2, 2)
    assert y.shape == (1, 1, 2, 2, 2)
    assert torch.equal(y.flatten(), torch.arange(8.0))  # channel c -> (c // 4, c // 2 % 2, c % 2)


def test_kl_between_gaussians_matches_torch():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(4))
    ref = torch_kl(Normal(mq, torch.exp(0.5 * lq)), Normal(mp, torch.exp(0.5 * lp))).flatten(1).sum(1)
    torch.testing.assert_close(kl_gaussians(mq, lq, mp, lp), ref)


def test_morphology_loss_is_zero_for_a_decisive_copy_and_positive_for_grey():
    x = (torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    sharp = (x * 2 - 1) * 30.0  # logits of p ~ x
    assert morphology_loss(sharp, x).item() < 1e-6
    grey = torch.zeros_like(x)  # p = 0.5 everywhere: wrong porosity and S2(0) = 0.25
    assert morphology_loss(grey, x).item() > 1e-3
    # the sharpness term: exactly sharpness * mean p (1 - p) on top, 0.25 * sharpness for p = 0.5
    torch.testing.assert_close(morphology_loss(grey, x, sharpness=2.0) - morphology_loss(grey, x),
                               torch.tensor(0.5))
    assert morphology_loss(sharp, x, sharpness=2.0).item() < 1e-6


def test_binarized_morphology_loss_sees_the_speckle_a_low_contrast_map_turns_into():
    from models.losses import binarize_straight_through
    g = torch.Generator().manual_seed(0)
    # a sample: one pore slab (smooth texture), porosity 0.5
    x = torch.zeros(2, 1, 16, 16, 16)
    x[:, :, :8] = 1.0
    # decisive in one half, grey (p = 0.5 +- 0.01) in the other: the grey half adds almost no
    # variance, so rho of the probabilities is the slab's, but the structure delivered from them
    # (binarized at the porosity) is white speckle in that half
    logits = (x * 2 - 1) * 10.0
    logits[:, :, :, 8:] = 0.05 * torch.randn(logits[:, :, :, 8:].shape, generator=g)
    logits.requires_grad_(True)
    soft, hard = morphology_loss(logits, x), morphology_loss(logits, x, binarize=True)
    assert hard.item() > 3 * soft.item(), (soft.item(), hard.item())
    hard.backward()  # straight-through: the gradient reaches the logits
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # binarization keeps round(phi * V) voxels of each row and is the identity on a binary map
    p = torch.rand(3, 8, 8, generator=g)
    b = binarize_straight_through(p, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(b, b.round())  # values 0 / 1 (to rounding of hard + p - p)
    assert b.round().sum((1, 2)).tolist() == [16.0, 32.0, 48.0]
    assert morphology_loss((x * 2 - 1) * 30.0, x, binarize=True).item() < 1e-6


def test_mixture_prior_round_trips_through_the_state_dict_and_samples_its_moments():
    model = PVAE(dims=2, input_size=16, n_properties=1, channels=[4, 8], latent_dim=2)
    cov = torch.tensor([[[0.25, 0.0], [0.0, 1.0]], [[1.0, 0.5], [0.5, 1.0]]])
    model.set_prior([0.75, 0.25], [[3.0, 0.0], [-3.0, 1.0]], cov.numpy())
    other = PVAE(dims=2, input_size=16, n_properties=1, channels=[4, 8], latent_dim=2)
    other.load_state_dict(model.state_dict())  # K = 2 taken from the stored shapes
    z = other.sample_prior(40000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (40000, 2)
    first = z[:, 0] > 0
    assert first.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert z[first, 0].std().item() == pytest.approx(0.5, abs=0.02)
    assert z[~first, 1].mean().item() == pytest.approx(1.0, abs=0.03)


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
    for k in ("loss", "recon", "kl", "prop", "morph"):
        torch.testing.assert_close(t1[k], t2[k])
    # the named terms and their combination
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(out["logits"]), x)
    torch.testing.assert_close(t1["recon"], bce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t1["kl"], kl_divergence(out["mu"], out["logvar"]).mean() / 64)
    torch.testing.assert_close(t1["prop"], ((out["props"] - y) ** 2).mean())
    torch.testing.assert_close(t1["loss"], t1["recon"] + 2.0 * t1["kl"] + 3.0 * t1["prop"])


def test_beta_spatial_weights_the_spatial_kl_alone():
    out = _out(4)
    out["kl_spatial"] = torch.tensor([1.0, 2.0, 3.0, 4.0]) * 64  # nats per sample: 2.5 per voxel on average
    x = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    kl_g = kl_divergence(out["mu"], out["logvar"]).mean() / 64
    same = pvae_loss(out, x, y, beta=2.0, alpha=3.0)  # beta_spatial None: beta weighs both levels
    torch.testing.assert_close(same["kl"], kl_g + 2.5)
    torch.testing.assert_close(same["loss"], same["recon"] + 2.0 * (kl_g + 2.5) + 3.0 * same["prop"])
    apart = pvae_loss(out, x, y, beta=2.0, alpha=3.0, beta_spatial=10.0)
    torch.testing.assert_close(apart["kl"], same["kl"])  # the logged KL is both levels, unweighted
    torch.testing.assert_close(apart["loss"], apart["recon"] + 2.0 * kl_g + 10.0 * 2.5 + 3.0 * apart["prop"])
    with pytest.raises(ValueError, match="beta_spatial"):
        PVAEConfig(beta_spatial=-1.0)


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


def test_property_mask_leaves_unknown_entries_out():
    out = _out(3)
    x = torch.zeros(3, 1, 8, 8)
    y = torch.randn(3, 2, generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[True, True], [True, False], [True, False]])
    y_bad = y.clone()
    y_bad[~mask] = -1e6  # a log10 of a floor: must not matter
    t = pvae_loss(out, x, y_bad, y_mask=mask)
    se = (out["props"] - y) ** 2
    torch.testing.assert_close(t["prop"], se[mask].mean())


def _spectral_model(dims=2, size=32, stage=2, seed=0):
    torch.manual_seed(seed)
    return PVAE(dims=dims, input_size=size, n_properties=1, channels=[4, 8, 8], latent_dim=3,
                spatial_channels=2, spatial_stage=stage, texture_prior="spectral").eval()


def test_spectral_texture_prior_starts_white_and_its_kl_is_the_dense_gaussian_kl():
    model = _spectral_model()  # texture grid 8 x 8 (an even edge: the Nyquist column is single)
    s = model.sizes[2]
    g = torch.Generator().manual_seed(1)
    mu_q, lv_q, mu_p, lv_p = (0.5 * torch.randn(3, 2, s, s, generator=g) for _ in range(4))
    # a flat spectrum (the start) is the white prior: the same KL, the same residual field
    torch.testing.assert_close(model.kl_spatial(mu_q, lv_q, mu_p, lv_p), kl_gaussians(mu_q, lv_q, mu_p, lv_p))
    eps = torch.randn(2, 2, s, s, generator=g)
    torch.testing.assert_close(model.colour(eps), eps, atol=1e-5, rtol=0)
    with torch.no_grad():
        model.log_spectrum.copy_(torch.randn(model.log_spectrum.shape, generator=g))
    # the covariance C of the residual from colour() of the unit vectors, then the dense Gaussian KL
    n = s * s
    basis = torch.eye(n).view(n, 1, s, s).expand(n, 2, s, s).contiguous()
    cols = model.colour(basis).detach().double().view(n, 2, n)  # row j: colour(e_j)
    dense = torch.zeros(3, dtype=torch.float64)
    for c in range(2):
        t = cols[:, c, :].T  # (n, n): eps -> residual
        cov = t @ t.T
        spec = model.spectrum()[c]  # the site variance is the mean of S_k over the full spectrum
        full = (spec * model._k_mult).sum().item() / n
        assert torch.diag(cov).mean().item() == pytest.approx(full, rel=1e-4)
        for b in range(3):
            sd = torch.exp(0.5 * lv_p[b, c]).flatten().double()
            sig_p = sd[:, None] * cov * sd[None, :]
            sig_q = torch.diag(lv_q[b, c].flatten().double().exp())
            d = (mu_q[b, c] - mu_p[b, c]).flatten().double()
            inv = torch.linalg.inv(sig_p)
            dense[b] += 0.5 * (torch.trace(inv @ sig_q) + d @ inv @ d - n + torch.logdet(sig_p) - torch.logdet(sig_q))
    torch.testing.assert_close(model.kl_spatial(mu_q, lv_q, mu_p, lv_p).double(), dense, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dims", [2, 3])
def test_spectral_texture_prior_correlates_neighbours_and_is_isotropic(dims):
    model = _spectral_model(dims=dims, size=32 if dims == 2 else 16, stage=1 if dims == 3 else 2)
    with torch.no_grad():  # a red spectrum: power falling with |k|
        model.log_spectrum.copy_(-0.8 * torch.arange(model.log_spectrum.shape[1]).float().expand_as(model.log_spectrum))
    s = model.sizes[model.spatial_stage]
    eps = torch.randn((64, 2) + (s,) * dims, generator=torch.Generator().manual_seed(0))
    u = model.colour(eps)
    lag = [(u * torch.roll(u, 1, dims=2 + ax)).mean().item() / u.var().item() for ax in range(dims)]
    assert min(lag) > 0.3 and max(lag) - min(lag) < 0.05  # correlated (white: 0), equally along every axis
    white = (eps * torch.roll(eps, 1, dims=2)).mean().item()
    assert abs(white) < 0.05
    # a transposed field is coloured the same way (an isotropic spectrum commutes with the symmetries)
    swap = (0, 1, 3, 2) if dims == 2 else (0, 1, 2, 4, 3)
    torch.testing.assert_close(model.colour(eps.permute(swap)), u.permute(swap), atol=1e-5, rtol=1e-4)


def test_spectral_texture_prior_travels_with_the_weights_and_learns_faster():
    model = _spectral_model(dims=3, size=16, stage=1)
    with torch.no_grad():
        model.log_spectrum.copy_(torch.randn(model.log_spectrum.shape, generator=torch.Generator().manual_seed(3)))
    other = _spectral_model(dims=3, size=16, stage=1, seed=1)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.spectrum(), model.spectrum())
    assert model.lr_scales() == {"log_spectrum": pytest.approx(20.0)}
    assert PVAE(dims=2, input_size=16, n_properties=1, channels=[4, 8], latent_dim=2).lr_scales() == {}


def test_conditional_texture_prior_is_each_codes_own_spectral_prior():
    torch.manual_seed(0)
    model = PVAE(dims=2, input_size=32, n_properties=1, channels=[4, 8, 8], latent_dim=3, spatial_channels=2,
                 spatial_stage=2, texture_prior="conditional").eval()
    s = model.sizes[2]
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 3, generator=g)
    mu_q, lv_q, mu_p, lv_p = (0.5 * torch.randn(3, 2, s, s, generator=g) for _ in range(4))
    # the head starts at zero: every code gets the shared table (flat at the start: the white KL)
    torch.testing.assert_close(model.kl_spatial(mu_q, lv_q, mu_p, lv_p, z=z), kl_gaussians(mu_q, lv_q, mu_p, lv_p))
    with pytest.raises(ValueError, match="needs the global code"):
        model.spectrum()
    with torch.no_grad():
        model.log_spectrum.copy_(torch.randn(model.log_spectrum.shape, generator=g))
        model.spectrum_head.weight.copy_(torch.randn(model.spectrum_head.weight.shape, generator=g))
    spec = model.spectrum(z)  # (B, cs, s, s // 2 + 1): one spectrum per code
    assert spec.shape == (3, 2, s, s // 2 + 1) and not torch.allclose(spec[0], spec[1])
    # row b's KL and colouring are the spectral prior's with row b's table (checked against the
    # spectral model, whose KL is the dense Gaussian KL in the test above)
    ref = _spectral_model()
    eps = torch.randn(3, 2, s, s, generator=g)
    kl = model.kl_spatial(mu_q, lv_q, mu_p, lv_p, z=z)
    for b in range(3):
        with torch.no_grad():
            ref.log_spectrum.copy_(model.log_spectrum + model.spectrum_head(z[b:b + 1]).view(2, -1))
        one = slice(b, b + 1)
        torch.testing.assert_close(kl[one], ref.kl_spatial(mu_q[one], lv_q[one], mu_p[one], lv_p[one]))
        torch.testing.assert_close(model.colour(eps[one], z[one]), ref.colour(eps[one]))
    # decode and forward carry the code through; the head learns at the table's rate
    assert model.decode(z).shape == (3, 1, 32, 32)
    assert "kl_spatial" in model(torch.rand(2, 1, 32, 32).round())
    assert set(model.lr_scales()) == {"log_spectrum", "spectrum_head.weight", "spectrum_head.bias"}
    # a code far out (2D designs reach |z| ~ 40) cannot overflow the spectrum: the log spectrum is
    # bounded, the KL stays finite (it was NaN in epoch 13 of a 2D run before the bound)
    far = 50.0 * z
    with torch.no_grad():
        model.spectrum_head.weight.mul_(10.0)
    spec = model.spectrum(far)
    assert torch.isfinite(spec).all() and spec.max() <= math.exp(LOG_SPECTRUM_MAX) * (1 + 1e-5)
    assert torch.isfinite(model.kl_spatial(mu_q, lv_q, mu_p, lv_p, z=far)).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_predict_volumes_averages_over_periodic_shifts(dims):
    torch.manual_seed(0)
    model = PVAE(dims=dims, input_size=8, n_properties=2, channels=[4, 8], latent_dim=3,
                 regressor_depth=1, regressor_width=8).eval()
    x = (torch.rand(3, 1, *(8,) * dims) < 0.5).float()
    one = model.predict_volumes(x)
    torch.testing.assert_close(one, model.predict_properties(model.encode(x)[0]))  # 0 shifts: one pass
    avg = model.predict_volumes(x, n_shifts=5, seed=1)
    torch.testing.assert_close(avg, model.predict_volumes(x, n_shifts=5, seed=1))  # seeded
    torch.testing.assert_close(avg, model.predict_volumes(x, n_shifts=5, seed=1, first=one))  # x's pass given
    # the mean of the same passes written out: x itself, then the five drawn shifts
    g = torch.Generator().manual_seed(1)
    axes = tuple(range(2, x.ndim))
    passes = [x] + [torch.roll(x, tuple(int(torch.randint(8, (1,), generator=g)) for _ in axes), axes)
                    for _ in range(5)]
    torch.testing.assert_close(avg, torch.stack([model.predict_properties(model.encode(p)[0]) for p in passes]).mean(0))
    # shift-invariant on average: shifted copies of one volume disagree less with 31 shifts than with none
    copies = torch.cat([torch.roll(x[:1], (s,) * dims, axes) for s in range(8)])  # (8, 1, ...)
    spread0 = model.predict_volumes(copies).std(0).mean()
    spread31 = model.predict_volumes(copies, n_shifts=31).std(0).mean()
    assert spread31 < 0.5 * spread0, (float(spread31), float(spread0))


def _banked(dims=2, size=16, n=6, seed=0):
    torch.manual_seed(seed)
    model = PVAE(dims=dims, input_size=size, n_properties=2, channels=[4, 8], latent_dim=3, spatial_channels=2).eval()
    x = (torch.rand((n, 1) + (size,) * dims, generator=torch.Generator().manual_seed(seed)) < 0.4).float()
    with torch.no_grad():
        codes, res = model.texture_residuals(x)
    model.set_texture_bank(codes, res)
    return model, x, codes, res


@pytest.mark.parametrize("dims", [2, 3])
def test_texture_bank_decodes_a_stored_code_to_its_reconstruction(dims):
    model, x, codes, res = _banked(dims)
    assert not model.uses_bank and model.bank_residuals.dtype == torch.float16  # decode's default stays the prior
    with torch.no_grad():
        rec = model.forward(x)["logits"]  # eval: both posterior means
        dec = model.decode(codes, texture="bank")  # nearest stored code = the row's own: its own texture
    assert torch.allclose(dec, rec, atol=2e-2 * rec.abs().max().item())  # float16 residuals
    assert dec.shape == x.shape


def test_texture_bank_seed_k_takes_the_k_plus_first_nearest_code():
    model, x, codes, res = _banked(n=5)
    z = codes[:1] + 0.01  # nearest: code 0
    order = torch.cdist(z, codes)[0].argsort()
    with torch.no_grad():
        h, i = model._top(z)
        mu_p, logvar_p = model.spatial_prior(h)
        for k in range(5):
            r = model.bank_residuals[order[k]].float().unsqueeze(0)
            want = model._bottom(h, i, mu_p + torch.exp(0.5 * logvar_p) * r)
            assert torch.equal(model.decode(z, noise=k, texture="bank"), want), k
        assert torch.equal(model.decode(z, noise=5, texture="bank"), model.decode(z, noise=0, texture="bank"))  # wraps
        model.texture_source = "bank"  # the default of decode: the same textures without the argument
        assert torch.equal(model.decode(z), model.decode(z, noise=torch.Generator().manual_seed(3), texture="bank"))


def test_texture_bank_round_trips_and_the_prior_source_ignores_it():
    model, x, codes, res = _banked(n=4)
    other = PVAE(dims=2, input_size=16, n_properties=2, channels=[4, 8], latent_dim=3, spatial_channels=2).eval()
    other.load_state_dict(model.state_dict())  # K = 4 taken from the stored shapes
    assert torch.equal(other.bank_codes, model.bank_codes) and torch.equal(other.bank_residuals, model.bank_residuals)
    z = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(other.decode(z, noise=2, texture="bank"), model.decode(z, noise=2, texture="bank"))
        # the default texture is the Gaussian prior field, as for a model without a bank
        plain = PVAE(dims=2, input_size=16, n_properties=2, channels=[4, 8], latent_dim=3, spatial_channels=2).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("bank_")})
        assert not plain.uses_bank and len(plain.bank_codes) == 0  # a checkpoint from before the bank loads
        assert torch.equal(model.decode(z, noise=2), plain.decode(z, noise=2))
        assert not torch.equal(model.decode(z, noise=2), other.decode(z, noise=2, texture="bank"))


def test_texture_bank_shape_errors_are_reported():
    model, x, codes, res = _banked(n=3)
    with pytest.raises(ValueError, match=r"texture bank: codes \(K, 3\)"):
        model.set_texture_bank(codes, res[:, :1])
    empty = PVAE(dims=2, input_size=16, n_properties=2, channels=[4, 8], latent_dim=3, spatial_channels=2)
    with pytest.raises(ValueError, match="holds no texture bank"):
        empty.bank_texture(codes)
    flat = PVAE(dims=2, input_size=16, n_properties=2, channels=[4, 8], latent_dim=3, spatial_channels=0)
    with pytest.raises(ValueError, match="no spatial latent"):
        flat.texture_residuals(x)
