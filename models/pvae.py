"""The property-variational autoencoder (pVAE), one definition for 2D and 3D.

Pure core: tensors in, tensors out; no files, no config files, no devices chosen here.

Two latent levels (a two-level hierarchical VAE, as in NVAE / VQ-VAE-2 and StyleGAN's noise inputs):

- the **global code** ``z`` (``latent_dim``): what the regressor reads and what inverse design
  moves; ``encode`` returns its posterior ``(mu, logvar)``;
- a **spatial latent** ``z_s`` (``spatial_channels`` channels on the grid of encoder level
  ``spatial_stage``, e.g. 4 x 8^3 for a 32^3 input): the texture, i.e. where exactly the pores
  are. Its posterior q(z_s | x) comes from the encoder, its prior p(z_s | z) from the decoder's
  coarse features (a conditional prior), so that a global code alone decodes to a structure of
  the material: ``decode(z)`` draws z_s from p(z_s | z) with a fixed noise field (deterministic
  per z, see :meth:`PVAE.decode`), other noise fields give other structures of the same code.

A global code alone cannot carry the voxel arrangement of a random 32^3 microstructure (16
numbers against ~10^4 bits), which is why a single-latent VAE reconstructs a uniform grey; the
spatial latent carries it, the KL to its conditional prior keeps prior samples on the data.

Encoder: ``len(channels)`` stages of [conv stride 2 -> norm -> act -> conv -> norm -> act], then
``fc_mu`` / ``fc_logvar`` to ``latent_dim``. Decoder: ``fc_dec`` to the smallest feature map, then
resize-convolution stages (nearest upsampling to the exact encoder size, then convolutions: no
transposed-convolution checkerboard), the spatial latent merged at its level, and a sub-pixel
convolution (pixel shuffle) to one channel of logits at full resolution (cropped to the input
size for odd sizes). The sigmoid is applied only at inference (:meth:`PVAE.reconstruct`).
Regressor: an MLP on the global latent mean ``mu`` that predicts the normalized properties.
Latent prior of the global code: N(0, I), or a Gaussian mixture fitted to the aggregate posterior
after training (:meth:`PVAE.set_prior`, stored with the weights) for prior samples.

Texture bank (:meth:`PVAE.set_texture_bank`, stored with the weights; optional): the posterior
texture of up to a few hundred training structures, each as its standardized residual
r = (mu_q - mu_p) / sigma_p under the conditional prior of its own code, with that code.
``decode(z, texture="bank")`` (or ``texture_source = "bank"``) takes the texture of the training
code nearest to z (z_s = mu_p(z) + sigma_p(z) r; noise seed k: the (k+1)-th nearest) instead of a
Gaussian field: the texture of the material's own structures, which a Gaussian field cannot carry
(round grains, straight channels, foam cells). On the bench set the share of decoded test codes
whose family (a descriptor classifier) is their sample's rose from 0.35 to 0.53; as the texture of
a search it cost hits (94% -> 62%), as texture variants of the search's best latent it kept them
(bench/RESULTS.md, "Texture bank").
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.layers import activation as _act
from models.layers import conv_layer
from models.layers import norm_layer as _norm
from models.losses import kl_divergence, pvae_loss  # noqa: F401  (re-exported: the model's loss)

NOISE_SEED = 0  # seed of the fixed noise field that makes decode(z) deterministic
TEXTURE_PRIORS = ("white", "spectral", "conditional")
SPECTRUM_LR_SCALE = 20.0  # learning-rate multiplier of the texture prior's spectrum (PVAE.lr_scales)
# bound of the texture prior's log power spectrum: the conditional prior's offsets are linear in the global
# code, and a code far out (2D set, lr 3e-3) overflowed exp() and made the KL NaN in epoch 13
LOG_SPECTRUM_MAX = 10.0


def stage_sizes(size: int, n_stages: int, kernel_size: int = 3) -> list[int]:
    """Spatial edge after each encoder stage: [size, s1, ..., s_n] (conv stride 2, padding k//2)."""
    sizes = [int(size)]
    pad = kernel_size // 2
    for _ in range(n_stages):
        s = (sizes[-1] + 2 * pad - kernel_size) // 2 + 1
        if s < 1:
            raise ValueError(f"input size {size} is too small for {n_stages} stride-2 stages")
        sizes.append(s)
    return sizes


def pixel_shuffle(x: torch.Tensor, dims: int) -> torch.Tensor:
    """(B, C * 2^dims, s, s[, s]) -> (B, C, 2s, 2s[, 2s]): sub-pixel convolution's rearrangement."""
    if dims == 2:
        return F.pixel_shuffle(x, 2)
    b, c8, d, h, w = x.shape
    c = c8 // 8
    x = x.view(b, c, 2, 2, 2, d, h, w)  # (B, C, 2, 2, 2, d, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, d, 2, h, 2, w, 2)
    return x.reshape(b, c, 2 * d, 2 * h, 2 * w)


def kl_gaussians(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) summed over all but the batch axis; (B,) nats."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0)
    return kl.flatten(1).sum(1)


class PVAE(nn.Module):
    """Hierarchical convolutional VAE with a property regressor on the global latent mean.

    Parameters
    ----------
    dims : 2 or 3
    input_size : edge of the square/cubic input in voxels
    n_properties : number of regressed (normalized) properties
    channels : channels per strided stage (encoder order)
    latent_dim : size of the global code (the one the regressor reads and the search moves)
    spatial_channels : channels of the spatial latent (0: a plain single-latent VAE)
    spatial_stage : encoder level of the spatial latent, 1..len(channels) (grid input_size / 2^level);
        None = len(channels) - 1 (the second-coarsest grid), at least 1
    kernel_size, norm ("batch" | "group" | "none"), activation, dropout
    padding : "circular" (default: the structures and the solver are periodic, so the network has no
        boundary layer of its own) or "zeros" (models trained before 2026-12-01)
    regressor_depth, regressor_width : hidden layers and their width of the property MLP
    texture_prior : "white" (p(z_s | z) independent per site: mu_p + sigma_p * eps) or "spectral"
        (the residual (z_s - mu_p) / sigma_p a stationary Gaussian field with an isotropic power
        spectrum per channel, :meth:`colour`, learned with the network; a flat spectrum, its
        start, is the white prior) or "conditional" (the spectral prior whose log spectrum is the
        learned table plus a linear function of the global code, zero at the start: each code
        gets its own texture scale, e.g. a foam's cell size, a channel network's width)
    """

    def __init__(self, dims: int = 3, input_size: int = 32, n_properties: int = 4,
                 channels=(16, 32, 64), latent_dim: int = 16, kernel_size: int = 3,
                 norm: str = "batch", activation: str = "silu", dropout: float = 0.0,
                 regressor_depth: int = 2, regressor_width: int = 64,
                 spatial_channels: int = 4, spatial_stage: int | None = None, padding: str = "circular",
                 texture_prior: str = "white"):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if padding not in ("circular", "zeros"):
            raise ValueError(f"padding must be 'circular' or 'zeros', got {padding!r}")
        if texture_prior not in TEXTURE_PRIORS:
            raise ValueError(f"texture_prior must be one of {TEXTURE_PRIORS}, got {texture_prior!r}")
        self.dims, self.input_size, self.latent_dim = dims, int(input_size), int(latent_dim)
        self.texture_prior = texture_prior if spatial_channels else "white"  # no texture latent: nothing to colour
        channels = [int(c) for c in channels]
        n = len(channels)
        self.spatial_channels = int(spatial_channels)
        self.spatial_stage = max(1, n - 1) if spatial_stage is None else int(spatial_stage)
        if self.spatial_channels and not 1 <= self.spatial_stage <= n:
            raise ValueError(f"spatial_stage must be in 1..{n} (len(channels)), got {spatial_stage}")
        def conv(*args, **kw):  # periodic structures: circular padding (no boundary layer of its own)
            return conv_layer(dims, *args, padding_mode=padding, **kw)
        drop = nn.Dropout3d if dims == 3 else nn.Dropout2d
        pad = kernel_size // 2
        self.sizes = stage_sizes(input_size, n, kernel_size)  # [S, S/2, ..., s_min]
        self.bottleneck_shape = (channels[-1],) + (self.sizes[-1],) * dims  # (C, s, s[, s])
        flat = math.prod(self.bottleneck_shape)

        def block(c_in, c_out, stride=1):
            layers = [conv(c_in, c_out, kernel_size, stride=stride, padding=pad), _norm(norm, dims, c_out),
                      _act(activation)]
            return layers + ([drop(dropout)] if dropout > 0 else [])

        # encoder: stage i maps sizes[i] -> sizes[i + 1] with channels[i] channels
        self.enc_stages = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.enc_stages.append(nn.Sequential(*block(c_in, c, stride=2), *block(c, c)))
            c_in = c
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)

        # decoder: fc to the bottleneck, then up stages to sizes[n-1], ..., sizes[1]
        self.fc_dec = nn.Linear(latent_dim, flat)
        self.dec_stages = nn.ModuleList()
        for level in range(n - 1, 0, -1):  # output of this stage lives on sizes[level]
            c_up, c_out = channels[level], channels[level - 1]
            self.dec_stages.append(nn.Sequential(*block(c_up, c_out), *block(c_out, c_out)))
        # final sub-pixel conv: channels[0] at sizes[1] -> 2^dims channels -> 1 channel at 2 * sizes[1]
        self.to_logits = conv(channels[0], 2 ** dims, kernel_size, padding=pad)

        if self.spatial_channels:
            c_level = channels[self.spatial_stage - 1]  # channels of encoder/decoder features at that level
            cs = self.spatial_channels
            self.q_spatial = conv(c_level, 2 * cs, kernel_size, padding=pad)  # posterior head (encoder side)
            self.p_spatial = nn.Sequential(*block(c_level, c_level), conv(c_level, 2 * cs, kernel_size, padding=pad))
            self.merge = nn.Sequential(*block(c_level + cs, c_level))
            for head in (self.q_spatial, self.p_spatial[-1]):  # start near a unit-variance prior
                nn.init.zeros_(head.bias)
                nn.init.normal_(head.weight, std=1e-3)
            noise = torch.randn((1, cs) + (self.sizes[self.spatial_stage],) * dims,
                                generator=torch.Generator().manual_seed(NOISE_SEED))
            self.register_buffer("noise", noise, persistent=False)  # (1, cs, s, s[, s])
            if texture_prior in ("spectral", "conditional"):
                self._init_spectrum(self.sizes[self.spatial_stage])
            if texture_prior == "conditional":  # log-spectrum offsets from the global code, zero at the start
                self.spectrum_head = nn.Linear(latent_dim, cs * self.log_spectrum.shape[1])
                nn.init.zeros_(self.spectrum_head.weight)
                nn.init.zeros_(self.spectrum_head.bias)

        layers, width_in = [], latent_dim
        for _ in range(regressor_depth):
            layers += [nn.Linear(width_in, regressor_width), _act(activation)]
            width_in = regressor_width
        layers.append(nn.Linear(width_in, n_properties))
        self.regressor = nn.Sequential(*layers)

        # global latent prior: a Gaussian mixture (K = 1, N(0, I) until set_prior is called)
        self.register_buffer("prior_weights", torch.ones(1))
        self.register_buffer("prior_means", torch.zeros(1, latent_dim))
        self.register_buffer("prior_scale_tril", torch.eye(latent_dim).unsqueeze(0))
        # texture bank: K training codes (K, L) and their texture residuals (K, cs, s, s[, s]); K = 0 until set
        grid = (self.sizes[self.spatial_stage],) * dims if self.spatial_channels else (0,) * dims
        self.register_buffer("bank_codes", torch.zeros(0, latent_dim))
        self.register_buffer("bank_residuals", torch.zeros((0, self.spatial_channels) + grid, dtype=torch.float16))
        self.texture_source = "prior"  # decode's default: "prior" (Gaussian field) or "bank" (needs one)
        # a learned texture prior (models.texture_diffusion), kept outside the module tree: not in
        # state_dict, parameters() or the optimizer; attach_texture_diffusion / load_model set it
        object.__setattr__(self, "texture_diffusion", None)

        # start near the prior: small posterior variance head keeps the first KL values moderate
        nn.init.zeros_(self.fc_logvar.bias)
        nn.init.normal_(self.fc_logvar.weight, std=1e-3)

    @classmethod
    def from_config(cls, cfg) -> "PVAE":
        return cls(dims=cfg.dims, input_size=cfg.input_size, n_properties=len(cfg.properties),
                   channels=cfg.channels, latent_dim=cfg.latent_dim, kernel_size=cfg.kernel_size,
                   norm=cfg.norm, activation=cfg.activation, dropout=cfg.dropout,
                   regressor_depth=cfg.regressor_depth, regressor_width=cfg.regressor_width,
                   spatial_channels=cfg.spatial_channels, spatial_stage=cfg.spatial_stage,
                   padding=cfg.padding, texture_prior=cfg.texture_prior)

    # --- encoder ---------------------------------------------------------------------------
    def _encode_levels(self, x: torch.Tensor):
        """x (B, 1, S..) -> (mu, logvar) (B, L) each, and the spatial posterior (mu_s, logvar_s) or None."""
        expected = (1,) + (self.input_size,) * self.dims
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"PVAE expects input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        h, spatial = x, None
        for level, stage in enumerate(self.enc_stages, start=1):
            h = stage(h)  # (B, channels[level-1], sizes[level], ...)
            if self.spatial_channels and level == self.spatial_stage:
                spatial = self.q_spatial(h).chunk(2, dim=1)  # 2 x (B, cs, s, s[, s])
        h = h.flatten(1)  # (B, C * s_min^dims)
        return self.fc_mu(h), self.fc_logvar(h), spatial

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, S, S[, S]) in {0, 1} -> global posterior (mu, logvar), each (B, latent_dim)."""
        mu, logvar, _ = self._encode_levels(x)
        return mu, logvar

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I); same shape as mu."""
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        return mu + torch.exp(0.5 * logvar) * eps

    # --- decoder ---------------------------------------------------------------------------
    def _upsample(self, h: torch.Tensor, size: int) -> torch.Tensor:
        return F.interpolate(h, size=(size,) * self.dims, mode="nearest")

    def _top(self, z: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Global code (B, L) -> decoder features at the spatial level (or at sizes[1]) and their stage index."""
        h = self.fc_dec(z).view(z.shape[0], *self.bottleneck_shape)  # (B, C, s_min, ...)
        n = len(self.sizes) - 1
        stop = self.spatial_stage if self.spatial_channels else 1
        i = 0
        for level in range(n - 1, stop - 1, -1):
            h = self.dec_stages[i](self._upsample(h, self.sizes[level]))  # (B, channels[level-1], sizes[level], ...)
            i += 1
        return h, i

    def _bottom(self, h: torch.Tensor, i: int, z_s: torch.Tensor | None) -> torch.Tensor:
        """Features at the spatial level (+ the spatial latent) -> logits (B, 1, S, S[, S])."""
        if z_s is not None:
            h = self.merge(torch.cat([h, z_s.to(h.dtype)], dim=1))  # (B, c_level, s, ...)
        level = (self.spatial_stage if self.spatial_channels else 1) - 1
        for stage in self.dec_stages[i:]:
            h = stage(self._upsample(h, self.sizes[level]))
            level -= 1
        logits = pixel_shuffle(self.to_logits(h), self.dims)  # (B, 1, 2 * sizes[1], ...)
        s = self.input_size
        return logits[(slice(None), slice(None)) + (slice(0, s),) * self.dims]  # (B, 1, S, S[, S])

    # --- the texture prior's spatial correlation -------------------------------------------------
    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter name (used by the trainers' optimizer).

        The spectrum table moves at most about lr per Adam step whatever its gradient: at the
        network's lr it moved +-0.2 in the 192 steps of a demo-scale run, against +-2 at 20x
        (bench/RESULTS.md, "Spectral texture prior")."""
        if self.texture_prior == "white":
            return {}
        names = ["log_spectrum"] + (["spectrum_head.weight", "spectrum_head.bias"]
                                    if self.texture_prior == "conditional" else [])
        return {n: SPECTRUM_LR_SCALE for n in names}

    def _init_spectrum(self, s: int) -> None:
        """Radial log power spectrum (cs, n_bins) of the texture residual: column j holds |k| = j + 1,
        linear in |k| between; zeros = a flat spectrum = the white prior."""
        freq = [torch.fft.fftfreq(s, d=1.0 / s)] * (self.dims - 1) + [torch.fft.rfftfreq(s, d=1.0 / s)]
        grid = torch.meshgrid(*freq, indexing="ij")
        # |k| in cycles per box, (s, s[, s//2 + 1]); the mean (k = 0) shares the first shell's power
        k = torch.sqrt(sum(g.pow(2) for g in grid)).clamp(min=1.0)
        n_bins = int(math.floor(float(k.max()))) + 1  # |k| = 1 .. floor(max) + 1 (the last only as an end point)
        mult = torch.full((s // 2 + 1,), 2.0)  # multiplicity of a half-spectrum column in the full one
        mult[0] = 1.0
        if s % 2 == 0:
            mult[-1] = 1.0
        # learned with the network, at SPECTRUM_LR_SCALE times its learning rate (lr_scales)
        self.log_spectrum = nn.Parameter(torch.zeros(self.spatial_channels, n_bins))
        self.register_buffer("_k_radius", k, persistent=False)
        self.register_buffer("_k_mult", mult, persistent=False)

    def spectrum(self, z: torch.Tensor | None = None) -> torch.Tensor | None:
        """Power spectrum S_k of the texture residual (z_s - mu_p) / sigma_p on the rfft grid,
        (cs, s, s[, s//2 + 1]) (the residual's variance per site is the mean of S_k over the full
        spectrum; S = 1 is the white prior); None for the white prior. The "conditional" prior takes
        the global code z (B, L) and gives one spectrum per row, (B, cs, s, s[, s//2 + 1])."""
        if self.texture_prior == "white":
            return None
        table = self.log_spectrum.float()  # (cs, n_bins), column j: |k| = j + 1
        if self.texture_prior == "conditional":
            if z is None:
                raise ValueError("the conditional texture prior needs the global code z")
            table = table + self.spectrum_head(z.float()).view(len(z), *table.shape)  # (B, cs, n_bins)
        k = self._k_radius
        i0 = k.floor().long()
        w = k - i0  # (*grid)
        log_s = table[..., i0 - 1] * (1.0 - w) + table[..., i0] * w  # ([B,] cs, *grid)
        return log_s.clamp(-LOG_SPECTRUM_MAX, LOG_SPECTRUM_MAX).exp()

    def prior_texture(self, mu_p, logvar_p, eps, temperature: float = 1.0, z: torch.Tensor | None = None):
        """A texture latent from the conditional prior: mu_p + temperature * sigma_p * colour(eps, z)."""
        return mu_p + temperature * torch.exp(0.5 * logvar_p) * self.colour(eps, z)

    def colour(self, eps: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """White noise (B, cs, s, s[, s]) -> the prior's residual field: a stationary Gaussian field
        with power spectrum :meth:`spectrum` (of the global code z for the conditional prior); eps
        itself for the white prior."""
        spec = self.spectrum(z)
        if spec is None:
            return eps
        axes = tuple(range(2, eps.ndim))
        f = torch.fft.rfftn(eps.float(), dim=axes) * spec.sqrt()
        return torch.fft.irfftn(f, s=eps.shape[2:], dim=axes).to(eps.dtype)

    def kl_spatial(self, mu_q, logvar_q, mu_p, logvar_p, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z_s | x) || p(z_s | z)) per sample (B,), nats.

        White prior: the sum of per-site Gaussian KLs. Spectral prior: with a = (mu_q - mu_p) / sigma_p,
        b^2 = sigma_q^2 / sigma_p^2 (KL is invariant under that map applied to both) and C the
        circulant covariance of the residual (eigenvalues S_k),
        KL = 1/2 [c0 sum b^2 + (1/N) sum_k |a_k|^2 / S_k - N + sum_k log S_k - sum log b^2] per channel,
        c0 = (1/N) sum_k 1 / S_k the diagonal of C^-1; equal to the white KL for S = 1. The conditional
        prior's C is that of each row's own spectrum (z: the global code the row is decoded from)."""
        spec = self.spectrum(z)
        if spec is None:
            return kl_gaussians(mu_q, logvar_q, mu_p, logvar_p)
        axes = tuple(range(2, mu_q.ndim))
        n = math.prod(mu_q.shape[2:])
        log_b2 = logvar_q - logvar_p  # (B, cs, *grid)
        a = (mu_q - mu_p) * torch.exp(-0.5 * logvar_p)
        mult = self._k_mult
        a_hat2 = torch.fft.rfftn(a, dim=axes).abs().pow(2)  # (B, cs, *rgrid)
        quad = (a_hat2 * mult / spec).flatten(2).sum(2) / n  # (B, cs)
        c0 = (mult / spec).flatten(-self.dims).sum(-1) / n  # ([B,] cs)
        log_det = (mult * spec.log()).flatten(-self.dims).sum(-1)  # ([B,] cs)
        per_channel = c0 * log_b2.exp().flatten(2).sum(2) + quad - n + log_det - log_b2.flatten(2).sum(2)
        return 0.5 * per_channel.sum(1)  # (B,)

    def spatial_prior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional prior p(z_s | z) from the decoder features at the spatial level: (mu_p, logvar_p)."""
        mu_p, logvar_p = self.p_spatial(h).chunk(2, dim=1)  # (B, cs, s, s[, s]) each
        return mu_p, logvar_p.clamp(-10.0, 5.0)

    def noise_field(self, batch: int, noise=None, device=None) -> torch.Tensor:
        """The standard-normal field eps of the spatial latent, (B, cs, s, s[, s]).

        ``noise`` None: the model's fixed field (seed NOISE_SEED), the same for every row, so that
        decode(z) depends on z alone; an int: a field from that seed, the same for every row; a
        torch.Generator: one independent field per row; a tensor: used as given (broadcast)."""
        shape = (1, self.spatial_channels) + (self.sizes[self.spatial_stage],) * self.dims
        device = device or self.noise.device
        if noise is None:
            eps = self.noise
        elif isinstance(noise, torch.Generator):
            eps = torch.randn((batch,) + shape[1:], generator=noise)
        elif isinstance(noise, (int, np.integer)):
            eps = torch.randn(shape, generator=torch.Generator().manual_seed(int(noise)))
        else:
            eps = torch.as_tensor(noise)
        return eps.to(device).expand((batch,) + shape[1:])

    def decode(self, z: torch.Tensor, noise=None, temperature: float = 1.0, texture: str | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> logits (B, 1, S, S[, S]) (same size as the input).

        The spatial latent is drawn from its conditional prior p(z_s | z) as
        ``mu_p + temperature * sigma_p * eps`` with eps from :meth:`noise_field` (default: the fixed
        field, so the result is a deterministic function of z). ``texture`` "bank" (default: the
        model's ``texture_source``, "prior"): eps is instead the stored residual of the training
        code nearest to each row of z (``noise`` None, a generator or 0), or of the (k+1)-th
        nearest (``noise`` an int k), see :meth:`bank_texture`: again a deterministic function of
        z and the seed; a tensor ``noise`` is used as a Gaussian field as before. ``texture``
        "residual": ``noise`` (B, cs, s, s[, s]) is the standardized residual (z_s - mu_p) / sigma_p
        itself (what :meth:`texture_residuals` returns and a learned texture prior samples).
        ``texture`` "diffusion": the residual is drawn from the attached learned texture prior
        p(r | z) (:meth:`attach_texture_diffusion`), seeded by ``noise`` (an int, None = 0, or a
        generator); with an int seed every row shares the sampler's noise draws, so the result is
        a deterministic function of z and the seed, as with the Gaussian field."""
        h, i = self._top(z)
        z_s = None
        if self.spatial_channels:
            mu_p, logvar_p = self.spatial_prior(h)
            if (texture or self.texture_source) == "bank" and not isinstance(noise, torch.Tensor):
                rank = int(noise) if isinstance(noise, (int, np.integer)) else 0
                r = self.bank_texture(z, rank).to(h.dtype)  # (B, cs, s, s[, s])
                z_s = mu_p + temperature * torch.exp(0.5 * logvar_p) * r
            elif texture == "diffusion":  # a learned texture: r ~ p(r | z), seeded
                diff = self.texture_diffusion
                if diff is None:
                    raise ValueError("decode(texture='diffusion'): the model has no texture diffusion attached "
                                     "(bench/texture_diffusion.py fits one into a checkpoint copy)")
                shared = not isinstance(noise, torch.Generator)
                g = noise if not shared else torch.Generator().manual_seed(int(noise or 0))
                r = diff.to(h.device).sample(z, generator=g, shared_noise=shared).to(h.dtype)
                z_s = mu_p + temperature * torch.exp(0.5 * logvar_p) * r
            elif texture == "residual":  # noise is the standardized residual itself, not coloured
                z_s = mu_p + temperature * torch.exp(0.5 * logvar_p) * torch.as_tensor(noise).to(h)
            else:
                eps = self.noise_field(z.shape[0], noise, device=h.device).to(h.dtype)
                z_s = self.prior_texture(mu_p, logvar_p, eps, temperature, z=z)
        return self._bottom(h, i, z_s)

    def predict_properties(self, mu: torch.Tensor) -> torch.Tensor:
        """mu (B, latent_dim) -> normalized properties (B, P); see checkpoint.Normalizer.inverse."""
        return self.regressor(mu)

    @torch.no_grad()
    def predict_volumes(self, x: torch.Tensor, n_shifts: int = 0, seed: int = 0,
                        first: torch.Tensor | None = None) -> torch.Tensor:
        """Volumes x (B, 1, S, S[, S]) -> normalized properties (B, P): the regressor on the encoder's
        mean, averaged over x itself and ``n_shifts`` periodic shifts of it (seeded, the same shifts
        for every sample). ``first``: the prediction for x itself (B, P) when the caller already
        has it (an eval-mode forward's ``props``), so that pass is not run again.

        A periodic shift changes neither porosity nor k, but the global code (read from a flattened
        feature map) moves with it: the average is a shift-invariant predictor. On the 2D set it
        lifted the test R^2 of porosity from 0.92-0.97 to 0.98-0.99; on 3D data with non-periodic
        generators (foams) it cost up to 0.01 (bench/RESULTS.md, "Periodic shifts")."""
        axes = tuple(range(2, x.ndim))
        g = torch.Generator().manual_seed(int(seed))
        total = self.predict_properties(self.encode(x)[0]) if first is None else first  # (B, P)
        for _ in range(int(n_shifts)):
            shift = tuple(int(torch.randint(n, (1,), generator=g)) for n in x.shape[2:])
            total = total + self.predict_properties(self.encode(torch.roll(x, shift, axes))[0])
        return total / (int(n_shifts) + 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training/validation pass: posterior samples (training) or means (eval) of both levels.

        Returns logits (B, 1, S..), mu / logvar / z (B, L), props (B, P) and, with a spatial
        latent, ``kl_spatial`` (B,) = KL(q(z_s | x) || p(z_s | z)) in nats."""
        mu, logvar, spatial = self._encode_levels(x)  # (B, L) each
        z = self.reparameterize(mu, logvar) if self.training else mu
        h, i = self._top(z)
        out = {"mu": mu, "logvar": logvar, "z": z, "props": self.predict_properties(mu)}
        z_s = None
        if spatial is not None:
            mu_q, logvar_q = spatial[0], spatial[1].clamp(-10.0, 5.0)
            mu_p, logvar_p = self.spatial_prior(h)
            z_s = self.reparameterize(mu_q, logvar_q) if self.training else mu_q
            out["kl_spatial"] = self.kl_spatial(mu_q.float(), logvar_q.float(), mu_p.float(), logvar_p.float(), z=z)
            out["prior_features"] = (h, i, mu_p, logvar_p)  # for the generation term of the loss
        out["logits"] = self._bottom(h, i, z_s)
        return out

    def generate_from(self, out: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits decoded from the same global code as ``out`` but with the spatial latent drawn
        from its conditional prior (fresh noise): what decode(z) would deliver for this sample."""
        h, i, mu_p, logvar_p = out["prior_features"]
        eps = torch.randn(mu_p.shape, dtype=mu_p.dtype, device=mu_p.device, generator=generator)
        return self._bottom(h, i, self.prior_texture(mu_p, logvar_p, eps, z=out["z"]))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pore probabilities (B, 1, S, S[, S]) decoded from the posterior means of both levels."""
        was = self.training
        self.eval()
        p = torch.sigmoid(self.forward(x)["logits"])
        self.train(was)
        return p

    # --- the prior of the global code ------------------------------------------------------------
    def set_prior(self, weights, means, covariances) -> None:
        """Store a Gaussian mixture prior of the global code (weights (K,), means (K, L), cov (K, L, L))."""
        w = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
        m = torch.as_tensor(np.asarray(means), dtype=torch.float32)
        c = torch.as_tensor(np.asarray(covariances), dtype=torch.float64)
        tril = torch.linalg.cholesky(c).float()
        dev = self.prior_means.device
        self.prior_weights = (w / w.sum()).to(dev)
        self.prior_means = m.to(dev)
        self.prior_scale_tril = tril.to(dev)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the mixture's K and the bank's K are data: take the stored shapes before the copy;
        # a checkpoint written before the texture bank existed loads with an empty one
        for name in ("bank_codes", "bank_residuals"):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = getattr(self, name)[:0].clone()
        for name in ("prior_weights", "prior_means", "prior_scale_tril", "bank_codes", "bank_residuals"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n global codes from the stored prior (the fitted mixture, or N(0, I)); (n, L) on the model's device."""
        comp = torch.multinomial(self.prior_weights.cpu(), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.latent_dim, generator=generator)  # (n, L)
        means, tril = self.prior_means.cpu()[comp], self.prior_scale_tril.cpu()[comp]  # (n, L), (n, L, L)
        z = means + torch.einsum("nij,nj->ni", tril, eps)
        return z.to(self.prior_means.device)

    # --- the texture bank ------------------------------------------------------------------------
    @torch.no_grad()
    def texture_residuals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Volumes x (B, 1, S..) -> their global codes mu (B, L) and standardized posterior texture
        residuals (mu_q - mu_p(mu)) / sigma_p(mu) (B, cs, s, s[, s]): what :meth:`set_texture_bank`
        stores. decode(mu) with that residual as texture is the reconstruction of x from its means."""
        if not self.spatial_channels:
            raise ValueError("the model has no spatial latent: there is no texture to store")
        mu, _, spatial = self._encode_levels(x)
        h, _ = self._top(mu)
        mu_p, logvar_p = self.spatial_prior(h)
        return mu, (spatial[0] - mu_p) * torch.exp(-0.5 * logvar_p)

    @staticmethod
    def bank_rows(n_train: int, size: int, seed: int) -> torch.Tensor:
        """The training rows (sorted, seeded) whose textures a bank of ``size`` stores: (min(size, n_train),)."""
        pick = torch.randperm(n_train, generator=torch.Generator().manual_seed(int(seed)))[:max(0, int(size))]
        return pick.sort().values

    def set_texture_bank(self, codes, residuals) -> None:
        """Store the texture bank: codes (K, L) and residuals (K, cs, s, s[, s]) from
        :meth:`texture_residuals` (kept in float16). K = 0 empties it."""
        codes = torch.as_tensor(codes, dtype=torch.float32)
        residuals = torch.as_tensor(residuals)
        want = (self.spatial_channels,) + tuple(self.bank_residuals.shape[2:])
        if codes.ndim != 2 or codes.shape[1] != self.latent_dim or len(codes) != len(residuals) \
                or tuple(residuals.shape[1:]) != want:
            raise ValueError(f"texture bank: codes (K, {self.latent_dim}) and residuals (K, *{want}) expected, "
                             f"got {tuple(codes.shape)} and {tuple(residuals.shape)}")
        dev = self.bank_codes.device
        self.bank_codes = codes.to(dev)
        self.bank_residuals = residuals.to(device=dev, dtype=torch.float16)

    def attach_texture_diffusion(self, diff) -> None:
        """Attach a fitted :class:`models.texture_diffusion.TextureDiffusion` (eval mode, moved to the
        model's device) for ``decode(texture="diffusion")``; None detaches it."""
        if diff is not None:
            want = (self.dims, self.spatial_channels, self.latent_dim)
            got = (diff.dims, diff.spatial_channels, diff.latent_dim)
            if got != want:
                raise ValueError(f"texture diffusion (dims, texture channels, latent_dim) {got} does not fit "
                                 f"the model's {want}")
            diff = diff.to(next(self.parameters()).device).eval()
        object.__setattr__(self, "texture_diffusion", diff)

    @property
    def uses_bank(self) -> bool:
        """decode draws textures from the bank by default: texture_source is "bank" (it needs one)."""
        return self.texture_source == "bank"

    def bank_texture(self, z: torch.Tensor, rank: int = 0) -> torch.Tensor:
        """The stored residual of the (rank+1)-th nearest bank code (Euclidean) to each row of z
        (B, L): (B, cs, s, s[, s]) float32. rank wraps around the bank size."""
        if not len(self.bank_codes):
            raise ValueError("the model holds no texture bank (set_texture_bank, or texture_bank > 0 in training)")
        d = torch.cdist(z.float(), self.bank_codes.to(z.device))  # (B, K)
        idx = d.argsort(1)[:, int(rank) % d.shape[1]]  # (B,)
        return self.bank_residuals.to(z.device)[idx].float()
