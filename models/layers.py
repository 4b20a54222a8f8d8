"""Building blocks both networks use (the pVAE and the surrogate CNN): periodic convolutions,
normalization and activation."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class _CircularPad(torch.autograd.Function):
    """Periodic padding by ``p`` voxels on every spatial axis of (B, C, *spatial), with a backward
    that folds the halo's gradient back onto the opposite faces (one copy per axis).

    Same values as ``F.pad(x, [p] * 2 * n, mode="circular")``, whose autograd backward goes through
    one full-size zero tensor and copy per slice of the padding: on 2 CPU cores that was a third of
    a pVAE training step (bench/pad.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: int) -> torch.Tensor:
        ctx.p = p
        return F.pad(x, [p] * 2 * (x.ndim - 2), mode="circular")  # (B, C, S + 2p, ...)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        p = ctx.p
        for d in range(2, g.ndim):  # out[i] = x[(i - p) mod S] along axis d
            s = g.shape[d] - 2 * p
            core = g.narrow(d, p, s).clone()  # (.., S, ..): i in [p, p + S)
            core.narrow(d, 0, p).add_(g.narrow(d, p + s, p))  # i in [p + S, S + 2p) -> j in [0, p)
            core.narrow(d, s - p, p).add_(g.narrow(d, 0, p))  # i in [0, p) -> j in [S - p, S)
            g = core
        return g, None


def circular_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, *spatial) -> (B, C, *(S + 2p)): periodic padding on every spatial axis (p <= S)."""
    if p == 0:
        return x
    if any(s < p for s in x.shape[2:]):
        raise ValueError(f"circular padding {p} is larger than the spatial shape {tuple(x.shape[2:])}")
    return _CircularPad.apply(x, int(p))


class _PeriodicMixin:
    """A Conv2d/Conv3d whose ``padding_mode="circular"`` uses :func:`circular_pad` (same weights,
    same state-dict keys and values as torch's own: checkpoints load either way)."""

    def _conv_forward(self, x, weight, bias):
        uniform = not isinstance(self.padding, str) and len(set(self.padding)) == 1  # one p on every axis
        if self.padding_mode != "circular" or not uniform:
            return super()._conv_forward(x, weight, bias)
        conv = F.conv3d if x.ndim == 5 else F.conv2d
        return conv(circular_pad(x, self.padding[0]), weight, bias, self.stride, 0, self.dilation, self.groups)


class PeriodicConv2d(_PeriodicMixin, nn.Conv2d):
    pass


class PeriodicConv3d(_PeriodicMixin, nn.Conv3d):
    pass


def conv_layer(dims: int, *args, **kwargs) -> nn.Module:
    """nn.Conv2d / nn.Conv3d arguments; circular padding through :func:`circular_pad`."""
    return (PeriodicConv3d if dims == 3 else PeriodicConv2d)(*args, **kwargs)


def norm_layer(kind: str, dims: int, channels: int) -> nn.Module:
    """BatchNorm (2D/3D), GroupNorm (gcd(channels, 8) groups) or identity."""
    if kind == "batch":
        return (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(channels)
    if kind == "group":
        groups = math.gcd(channels, 8)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


def activation(kind: str) -> nn.Module:
    return {"relu": nn.ReLU, "silu": nn.SiLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}[kind]()


class PatchDiscriminator(nn.Module):
    """A convolutional critic of binary structures (B, 1, S, S[, S]) -> patch logits (B, 1, s, s[, s])
    (s = S / 2^len(channels)): real (training) structures against generated ones. Strided periodic
    convolutions with spectral normalization and leaky ReLU, the PatchGAN layout (pix2pix, VQGAN):
    each logit judges a receptive field of a few grains, not the whole box, so the term is about
    texture (the shape of grains, struts and channels), while porosity and k stay with the other
    terms.

    With ``cond_dim`` > 0 the critic is conditioned on a code (B, cond_dim) by projection (Miyato &
    Koyama 2018): each patch logit gains <features, W code>, so it judges whether a structure fits
    its code (round grains for a code of sphere packings), not only whether it looks like any
    training structure."""

    def __init__(self, dims: int, channels=(16, 32, 64), kernel_size: int = 3, cond_dim: int = 0):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers, c_in = [], 1
        for c in channels:
            layers += [sn(conv_layer(dims, c_in, c, kernel_size, stride=2, padding=kernel_size // 2,
                                     padding_mode="circular")), nn.LeakyReLU(0.2)]
            c_in = c
        layers.append(sn(conv_layer(dims, c_in, 1, kernel_size, padding=kernel_size // 2, padding_mode="circular")))
        self.net = nn.Sequential(*layers)
        self.embed = sn(nn.Linear(cond_dim, c_in, bias=False)) if cond_dim > 0 else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 1, *shape) -> patch logits (B, 1, *patches); ``cond`` (B, cond_dim) when conditioned."""
        if (cond is None) != (self.embed is None):
            raise ValueError("PatchDiscriminator: pass a code exactly when built with cond_dim > 0")
        f = self.net[:-1](x.float())  # (B, C, *patches)
        logits = self.net[-1](f)
        if cond is not None:
            e = self.embed(cond.float()).reshape(*cond.shape[:1], -1, *([1] * (f.dim() - 2)))  # (B, C, 1..)
            logits = logits + (f * e).sum(1, keepdim=True)
        return logits
