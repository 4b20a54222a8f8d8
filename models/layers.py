"""Building blocks both networks use (the pVAE and the surrogate CNN): normalization and activation."""
from __future__ import annotations

import math

from torch import nn


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
