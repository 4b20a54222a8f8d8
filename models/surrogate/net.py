"""Multiscale CNN regressor of the surrogate (one definition for 2D and 3D); see models/surrogate/__init__.py."""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from models.layers import activation as act_layer
from models.layers import conv_layer, norm_layer
from models.surrogate.config import SurrogateConfig


class _Branch(nn.Module):
    """Stride-2 stages on one resolution; returns the global mean of every stage's output."""

    def __init__(self, dims: int, size: int, channels: list[int], kernel_size: int, norm: str, activation: str):
        super().__init__()
        conv = partial(conv_layer, dims)
        pad = kernel_size // 2
        n_stages = max(1, min(len(channels), int(math.floor(math.log2(size)))))  # stop at a 1-voxel grid
        self.stages = nn.ModuleList()
        c_in = 1
        for c in channels[:n_stages]:
            self.stages.append(nn.Sequential(
                conv(c_in, c, kernel_size, stride=2, padding=pad, padding_mode="circular", bias=norm == "none"),
                norm_layer(norm, dims, c), act_layer(activation),
                conv(c, c, kernel_size, stride=1, padding=pad, padding_mode="circular", bias=norm == "none"),
                norm_layer(norm, dims, c), act_layer(activation)))
            c_in = c
        self.out_features = sum(channels[:n_stages])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)  # (B, C_i, *shape / 2^(i+1))
            feats.append(x.flatten(2).mean(2))  # (B, C_i)
        return torch.cat(feats, dim=1)  # (B, sum C_i)


class MultiscaleCNN(nn.Module):
    """Multiscale CNN regressor: (B, 1, *shape) in {0, 1} -> (B, n_outputs) normalized targets.

    Parameters
    ----------
    dims : 2 or 3
    input_size : edge of the cubic/square input (voxels), divisible by 2**(scales-1)
    n_outputs : number of targets
    scales : number of input resolutions (full grid, then average-pooled by 2, 4, ...)
    channels : channels of the stride-2 stages of each branch
    kernel_size, norm, activation, dropout, head_depth, head_width : see SurrogateConfig
    """

    def __init__(self, dims: int = 3, input_size: int = 32, n_outputs: int = 7, scales: int = 3,
                 channels=(16, 32, 64), kernel_size: int = 3, norm: str = "batch", activation: str = "silu",
                 dropout: float = 0.0, head_depth: int = 1, head_width: int = 128):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        self.dims, self.input_size, self.scales = dims, int(input_size), int(scales)
        channels = [int(c) for c in channels]
        self.branches = nn.ModuleList(
            _Branch(dims, self.input_size // 2 ** s, channels, kernel_size, norm, activation) for s in range(scales))
        n_feat = sum(b.out_features for b in self.branches) + 1  # + input porosity
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        width = n_feat
        for _ in range(head_depth):
            layers += [nn.Linear(width, head_width), act_layer(activation)]
            width = head_width
        layers.append(nn.Linear(width, n_outputs))
        self.head = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, cfg: SurrogateConfig) -> "MultiscaleCNN":
        return cls(cfg.dims, cfg.input_size, len(cfg.components), cfg.scales, cfg.channels, cfg.kernel_size,
                   cfg.norm, cfg.activation, cfg.dropout, cfg.head_depth, cfg.head_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.input_size,) * self.dims
        if x.ndim != self.dims + 2 or tuple(x.shape[2:]) != expected or x.shape[1] != 1:
            raise ValueError(f"expected input (B, 1, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        pool = F.avg_pool3d if self.dims == 3 else F.avg_pool2d
        feats = [x.flatten(1).mean(1, keepdim=True)]  # (B, 1) porosity
        for s, branch in enumerate(self.branches):
            xs = pool(x, 2 ** s) if s else x  # (B, 1, *shape / 2^s) local porosity
            feats.append(branch(xs))
        return self.head(torch.cat(feats, dim=1))  # (B, n_outputs)
