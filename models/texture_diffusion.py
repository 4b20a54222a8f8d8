"""A learned conditional texture prior: a denoising diffusion model of the pVAE's texture latent.

The pVAE decodes a structure from a global code z (porosity, k: what the regressor reads and the
search moves) and a texture latent z_s on a coarse grid. Its built-in prior p(z_s | z) is Gaussian
(``mu_p + sigma_p * r`` with r white or a stationary field of a learned spectrum), and a Gaussian
field cannot carry round grains, straight channels or foam cells: decoded with it, a test structure's
own code keeps its generator family 0.345 of the time, with the stored posterior texture of the
nearest training code ("bank") 0.525 (bench/RESULTS.md, "Texture bank").

This module learns p(r | z) for the standardized posterior residual r = (mu_q - mu_p) / sigma_p
(:meth:`models.pvae.PVAE.texture_residuals`) of a trained, frozen pVAE: a DDPM (Ho et al. 2020) with
a cosine noise schedule (Nichol & Dhariwal 2021) whose noise predictor is a small periodic U-Net
conditioned on (t, z) by FiLM, sampled with DDIM (Song et al. 2021). It is what latent diffusion
(Rombach et al. 2022) does with a VAE's latent grid, here conditioned on the global code.

Shapes: r (B, cs, s, s[, s]) with s the texture grid (16 for 32^3 volumes), z (B, L).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.layers import conv_layer


@dataclass
class TextureDiffusionConfig:
    """Fit settings of :func:`fit_texture_diffusion` (saved beside the weights).

    channels : U-Net channels per level (len 3: grid s, s/2, s/4; s must be divisible by 4)
    cond_width : width of the (t, z) embedding
    timesteps : T of the forward process (cosine schedule)
    sample_steps : DDIM steps when sampling (<= timesteps); eta : the sampler's noise (0 deterministic
        DDIM, 1 ancestral; see :meth:`TextureDiffusion.sample`)
    steps, batch_size, lr, ema : optimisation (AdamW, cosine decay; the sampler uses the EMA weights)
    augment : symmetries of the square / cube drawn per structure when the residuals are computed
        (each symmetric copy is encoded: its code moves with it)
    seed : seeds the augmentation, the initial weights and the batches
    """
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    cond_width: int = 128
    timesteps: int = 1000
    sample_steps: int = 50
    eta: float = 1.0
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    ema: float = 0.995
    augment: int = 4
    seed: int = 0

    def validate(self) -> None:
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"texture diffusion: channels must be 3 positive widths, got {self.channels}")
        if not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(f"texture diffusion: sample_steps must be in 1..timesteps ({self.timesteps}), "
                             f"got {self.sample_steps}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"texture diffusion: ema must be in [0, 1), got {self.ema}")


def cosine_alpha_bar(timesteps: int) -> torch.Tensor:
    """alpha_bar(t) of the cosine schedule at t = 0..T, (T + 1,) float64; alpha_bar(0) = 1."""
    s = 0.008
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    a = f / f[0]
    # clip each step's beta at 0.999 (the schedule's end), as Nichol & Dhariwal do
    beta = (1 - a[1:] / a[:-1]).clamp(max=0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - beta, 0)])


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t (B,) -> (B, dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = t.float()[:, None] * freq[None]
    return torch.cat([arg.sin(), arg.cos()], dim=1)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, FiLM from the condition between, a 1x1 skip when widths differ."""

    def __init__(self, dims: int, c_in: int, c_out: int, cond_width: int):
        super().__init__()
        self.dims = dims
        self.n1 = nn.GroupNorm(math.gcd(c_in, 8), c_in)
        self.c1 = conv_layer(dims, c_in, c_out, 3, padding=1, padding_mode="circular")
        self.film = nn.Linear(cond_width, 2 * c_out)
        self.n2 = nn.GroupNorm(math.gcd(c_out, 8), c_out)
        self.c2 = conv_layer(dims, c_out, c_out, 3, padding=1, padding_mode="circular")
        nn.init.zeros_(self.c2.weight)  # each block starts as its skip
        nn.init.zeros_(self.c2.bias)
        self.skip = conv_layer(dims, c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))  # (B, c_out, *grid)
        scale, shift = self.film(cond).view(len(cond), -1, *([1] * self.dims)).chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        return self.skip(x) + self.c2(F.silu(h))


class TextureDenoiser(nn.Module):
    """Noise predictor eps(r_t, t, z) for residual fields (B, cs, s, s[, s]): a 3-level periodic
    U-Net (s -> s/2 -> s/4 and back, skip connections), conditioned on (t, z) by FiLM, for the
    field less its spatial mean; the mean (per channel) from a small MLP on the means and (t, z)."""

    def __init__(self, dims: int, spatial_channels: int, latent_dim: int, channels=(16, 32, 64),
                 cond_width: int = 128):
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.dims, self.cond_width = dims, int(cond_width)
        self.cond = nn.Sequential(nn.Linear(cond_width // 2 + latent_dim, cond_width), nn.SiLU(),
                                  nn.Linear(cond_width, cond_width))
        conv = lambda a, b, k=3, s=1: conv_layer(dims, a, b, k, stride=s, padding=k // 2,  # noqa: E731
                                                 padding_mode="circular")
        self.inp = conv(spatial_channels, c0)
        self.d0 = _ResBlock(dims, c0, c0, cond_width)
        self.down1 = conv(c0, c1, s=2)
        self.d1 = _ResBlock(dims, c1, c1, cond_width)
        self.down2 = conv(c1, c2, s=2)
        self.m1 = _ResBlock(dims, c2, c2, cond_width)
        self.m2 = _ResBlock(dims, c2, c2, cond_width)
        self.up1 = conv(c2, c1)
        self.u1 = _ResBlock(dims, 2 * c1, c1, cond_width)
        self.up0 = conv(c1, c0)
        self.u0 = _ResBlock(dims, 2 * c0, c0, cond_width)
        # GroupNorms remove the features' spatial means, so the U-Net cannot predict the uniform (k = 0)
        # part of the noise, which then stayed in every sample (2D, 2000 steps: 35-1500x the posterior
        # residuals' power at the lowest wavenumbers): the mean is the mean head's (below)
        self.out = conv(c0, spatial_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # the spatial mean per channel: the U-Net's GroupNorms remove it from every feature map, so it
        # is predicted apart, as the clean field's mean (near 0 for posterior residuals: easy to learn,
        # where the noise's mean would have to scale as 1 / sqrt(1 - alpha_bar) with the step)
        self.mean_head = nn.Sequential(nn.Linear(spatial_channels + cond_width, cond_width), nn.SiLU(),
                                       nn.Linear(cond_width, spatial_channels))

    def forward(self, r_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """r_t (B, cs, s..), t (B,) integer steps, z (B, L) standardized codes -> the noise less its
        spatial mean (B, cs, s..) and the clean field's spatial mean (B, cs)."""
        c = self.cond(torch.cat([timestep_embedding(t, self.cond_width // 2), z.float()], dim=1))  # (B, W)
        axes = tuple(range(2, r_t.ndim))
        m = r_t.mean(axes)  # (B, cs)
        x0_mean = self.mean_head(torch.cat([m, c], dim=1))  # (B, cs)
        h0 = self.d0(self.inp(r_t - m.view(*m.shape, *([1] * self.dims))), c)  # (B, c0, s..)
        h1 = self.d1(self.down1(h0), c)  # (B, c1, s/2..)
        h = self.m2(self.m1(self.down2(h1), c), c)  # (B, c2, s/4..)
        h = self.up1(F.interpolate(h, size=h1.shape[2:], mode="nearest"))  # (B, c1, s/2..)
        h = self.u1(torch.cat([h, h1], 1), c)
        h = self.up0(F.interpolate(h, size=h0.shape[2:], mode="nearest"))  # (B, c0, s..)
        h = self.u0(torch.cat([h, h0], 1), c)
        out = self.out(F.silu(h))
        return out - out.mean(axes, keepdim=True), x0_mean


class TextureDiffusion(nn.Module):
    """p(r | z): the denoiser, the schedule and the standardizations of r (per channel) and z."""

    def __init__(self, dims: int, spatial_channels: int, grid: int, latent_dim: int,
                 cfg: TextureDiffusionConfig | None = None):
        super().__init__()
        self.cfg = cfg or TextureDiffusionConfig()
        self.cfg.validate()
        if grid % 4:
            raise ValueError(f"texture diffusion: the texture grid ({grid}) must be divisible by 4")
        self.dims, self.spatial_channels, self.grid, self.latent_dim = dims, spatial_channels, grid, latent_dim
        self.net = TextureDenoiser(dims, spatial_channels, latent_dim, self.cfg.channels, self.cfg.cond_width)
        self.register_buffer("alpha_bar", cosine_alpha_bar(self.cfg.timesteps).float())  # (T + 1,)
        self.register_buffer("r_scale", torch.ones(spatial_channels))  # per-channel std of r
        self.register_buffer("z_mean", torch.zeros(latent_dim))
        self.register_buffer("z_std", torch.ones(latent_dim))

    def meta(self) -> dict:
        return {"dims": self.dims, "spatial_channels": self.spatial_channels, "grid": self.grid,
                "latent_dim": self.latent_dim, "config": asdict(self.cfg)}

    def _shape(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, *([1] * (self.dims + 1)))  # (B,) -> (B, 1, 1..)

    def _z(self, z: torch.Tensor) -> torch.Tensor:
        return (z.float() - self.z_mean) / self.z_std

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
        """The clean (standardized) field estimated from x_t at steps t (B,): its fluctuation from
        the predicted noise, its spatial mean from the mean head."""
        eps_f, x0_mean = self.net(x_t, t, zc)
        a = self._shape(self.alpha_bar[t])
        fluct = x_t - x_t.mean(tuple(range(2, x_t.ndim)), keepdim=True)
        return (fluct - (1 - a).sqrt() * eps_f) / a.sqrt() + x0_mean.view(*x0_mean.shape, *([1] * self.dims))

    def loss(self, r0: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """At uniformly drawn steps: the mean squared error of the predicted noise less its spatial
        mean (the simple DDPM loss) plus that of the clean field's predicted spatial mean."""
        x0 = r0.float() / self.r_scale.view(1, -1, *([1] * self.dims))
        t = torch.randint(1, self.cfg.timesteps + 1, (len(x0),), generator=generator).to(x0.device)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        a = self._shape(self.alpha_bar[t])
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        eps_f, x0_mean = self.net(x_t, t, self._z(z))
        axes = tuple(range(2, x0.ndim))
        return F.mse_loss(eps_f, eps - eps.mean(axes, keepdim=True)) + F.mse_loss(x0_mean, x0.mean(axes))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None,
               steps: int | None = None, eta: float | None = None, shared_noise: bool = False) -> torch.Tensor:
        """Residual fields (B, cs, s, s[, s]) for codes z (B, L) by DDIM from a seeded Gaussian start
        (``generator``: the start and the fresh noise of each step; None: torch's global generator).
        ``shared_noise``: every row gets the same noise draws (drawn once per step, (1, cs, s..)), so
        a row's field is a function of its code and the seed alone, not of the rows beside it.

        ``eta`` 0: deterministic DDIM; 1: the DDPM posterior's noise at each step (ancestral), which
        corrects a denoiser's errors instead of carrying them: on the 2D set, 50 deterministic steps
        of a 800-step fit gave 1.7-2.3x the residuals' std (200 steps 1.1-1.2x)."""
        steps = int(steps or self.cfg.sample_steps)
        eta = float(self.cfg.eta if eta is None else eta)
        dev = self.alpha_bar.device
        shape = (len(z), self.spatial_channels) + (self.grid,) * self.dims
        draw = (1,) + shape[1:] if shared_noise else shape

        def noise() -> torch.Tensor:
            return torch.randn(draw, generator=generator).to(dev).expand(shape)

        x = noise()
        zc = self._z(z.to(dev))
        ts = np.linspace(self.cfg.timesteps, 0, steps + 1).round().astype(int)  # T .. 0
        for t_now, t_next in zip(ts[:-1], ts[1:]):
            a_now, a_next = self.alpha_bar[t_now], self.alpha_bar[t_next]
            x0 = self.predict_x0(x, torch.full((len(x),), int(t_now), device=dev), zc).clamp(-6.0, 6.0)
            eps = (x - a_now.sqrt() * x0) / (1 - a_now).sqrt()
            sigma = eta * ((1 - a_next) / (1 - a_now) * (1 - a_now / a_next)).clamp(min=0).sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next - sigma ** 2).clamp(min=0).sqrt() * eps
            if eta > 0 and t_next > 0:
                x = x + sigma * noise()
        return x * self.r_scale.view(1, -1, *([1] * self.dims))


def training_residuals(model, volumes: np.ndarray, augment: int, seed: int = 0, batch_size: int = 64):
    """Codes (N * (1 + augment), L) and residuals (N * (1 + augment), cs, s..) of ``volumes``
    (N, *shape) under the pVAE ``model`` (frozen, eval mode): each structure as given and in
    ``augment`` symmetric copies (seeded; each copy encoded, so its code is its own)."""
    from models.surrogate.augment import all_symmetries

    syms = all_symmetries(model.dims)
    rng = np.random.default_rng(seed)
    codes, res = [], []
    was = model.training
    model.eval()
    for copy in range(1 + int(augment)):
        for start in range(0, len(volumes), batch_size):
            v = np.asarray(volumes[start:start + batch_size])  # (b, *shape)
            if copy:
                v = np.stack([syms[int(rng.integers(len(syms)))].apply_volume(x) for x in v])
            x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).unsqueeze(1)
            with torch.no_grad():
                mu, r = model.texture_residuals(x.to(next(model.parameters()).device))
            codes.append(mu.float().cpu())
            res.append(r.float().cpu())
    model.train(was)
    return torch.cat(codes), torch.cat(res)


def fit_texture_diffusion(codes: torch.Tensor, residuals: torch.Tensor, cfg: TextureDiffusionConfig,
                          log_every: int = 0, progress=None) -> tuple[TextureDiffusion, list[float]]:
    """Fit p(r | z) to pairs (codes (N, L), residuals (N, cs, s..)); returns the model holding the
    EMA weights (eval mode) and the loss per step."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    dims = residuals.ndim - 2
    diff = TextureDiffusion(dims, residuals.shape[1], residuals.shape[2], codes.shape[1], cfg)
    axes = (0,) + tuple(range(2, residuals.ndim))
    diff.r_scale.copy_(residuals.float().std(dim=axes).clamp(min=1e-3))
    diff.z_mean.copy_(codes.float().mean(0))
    diff.z_std.copy_(codes.float().std(0).clamp(min=1e-3))
    ema = {k: v.detach().clone() for k, v in diff.net.state_dict().items()}
    opt = torch.optim.AdamW(diff.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps))
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    diff.train()
    for step in range(cfg.steps):
        idx = torch.randint(len(codes), (min(cfg.batch_size, len(codes)),), generator=g)
        loss = diff.loss(residuals[idx], codes[idx], generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(diff.net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for k, v in diff.net.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(cfg.ema).add_(v.detach(), alpha=1 - cfg.ema)
                else:
                    ema[k].copy_(v)
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
        if log_every and (step + 1) % log_every == 0:
            print(f"texture diffusion: step {step + 1}/{cfg.steps} loss "
                  f"{np.mean(losses[-log_every:]):.4f}", flush=True)
    diff.net.load_state_dict(ema)
    return diff.eval(), losses


WEIGHTS, META = "texture_diffusion.safetensors", "texture_diffusion.json"


def save_texture_diffusion(diff: TextureDiffusion, folder, extra: dict | None = None) -> None:
    """Write the weights and the meta (shapes, config, ``extra``) into ``folder`` (each file atomically)."""
    from pathlib import Path

    from safetensors.torch import save_file

    from core.io import atomic_path, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in diff.state_dict().items()}, str(tmp))
    write_json(folder / META, {**diff.meta(), **(extra or {})})


def load_texture_diffusion(folder, device: str | torch.device = "cpu") -> TextureDiffusion:
    """Read what :func:`save_texture_diffusion` wrote; eval mode."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (WEIGHTS, META):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: no {name} (not a texture diffusion folder)")
    meta = json.loads((folder / META).read_text())
    cfg = TextureDiffusionConfig(**meta["config"])
    diff = TextureDiffusion(meta["dims"], meta["spatial_channels"], meta["grid"], meta["latent_dim"], cfg)
    diff.load_state_dict(load_file(str(folder / WEIGHTS)))
    return diff.to(device).eval()
