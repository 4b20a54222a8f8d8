"""The property-variational autoencoder (pVAE), one definition for 2D and 3D.

Pure core: tensors in, tensors out; no files, no config files, no devices chosen here.

Encoder: ``len(channels)`` stages of [conv stride 2 -> norm -> activation -> channel dropout],
then ``fc_mu`` / ``fc_logvar`` to ``latent_dim``. Decoder: ``fc_dec`` back to the smallest
feature map, then mirrored transposed-conv stages whose ``output_padding`` is computed per stage
so that the output size equals the input size for any edge length (48, 100, ...), ending in one
channel of logits (the sigmoid is applied only at inference, :meth:`PVAE.reconstruct`).
Regressor: an MLP on the latent mean ``mu`` that predicts the normalized properties.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.layers import activation as _act
from models.layers import norm_layer as _norm
from models.losses import kl_divergence, pvae_loss  # noqa: F401  (re-exported: the model's loss)


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


def output_paddings(sizes: list[int], kernel_size: int = 3) -> list[int]:
    """output_padding of each decoder stage so that stage i maps sizes[i+1] back to sizes[i]."""
    pad = kernel_size // 2
    pads = []
    for big, small in zip(sizes[:-1], sizes[1:]):
        op = big - ((small - 1) * 2 - 2 * pad + kernel_size)
        if not 0 <= op < 2:  # output_padding must be smaller than the stride
            raise ValueError(f"cannot map {small} back to {big} with stride 2, kernel {kernel_size}")
        pads.append(op)
    return pads


class PVAE(nn.Module):
    """Convolutional VAE with a property regressor on the latent mean.

    Parameters
    ----------
    dims : 2 or 3
    input_size : edge of the square/cubic input in voxels
    n_properties : number of regressed (normalized) properties
    channels : channels per strided stage (encoder order)
    latent_dim, kernel_size, norm ("batch" | "group" | "none"), activation, dropout
    regressor_depth, regressor_width : hidden layers and their width of the property MLP
    """

    def __init__(self, dims: int = 3, input_size: int = 32, n_properties: int = 4,
                 channels=(16, 32, 64), latent_dim: int = 16, kernel_size: int = 3,
                 norm: str = "batch", activation: str = "silu", dropout: float = 0.0,
                 regressor_depth: int = 2, regressor_width: int = 64):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        self.dims, self.input_size, self.latent_dim = dims, int(input_size), int(latent_dim)
        channels = [int(c) for c in channels]
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        deconv = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        drop = nn.Dropout3d if dims == 3 else nn.Dropout2d
        pad = kernel_size // 2
        self.sizes = stage_sizes(input_size, len(channels), kernel_size)  # [S, S/2, ..., s_min]
        paddings = output_paddings(self.sizes, kernel_size)
        self.bottleneck_shape = (channels[-1],) + (self.sizes[-1],) * dims  # (C, s, s[, s])
        flat = math.prod(self.bottleneck_shape)

        enc, c_in = [], 1
        for c in channels:
            enc += [conv(c_in, c, kernel_size, stride=2, padding=pad), _norm(norm, dims, c), _act(activation)]
            if dropout > 0:
                enc.append(drop(dropout))
            c_in = c
        self.encoder = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)

        self.fc_dec = nn.Linear(latent_dim, flat)
        dec = []
        outs = channels[::-1][1:] + [1]  # mirrored channel counts, last stage -> 1 logit channel
        for i, (c_in, c_out) in enumerate(zip(channels[::-1], outs)):
            op = paddings[len(channels) - 1 - i]
            dec.append(deconv(c_in, c_out, kernel_size, stride=2, padding=pad, output_padding=op))
            if i < len(channels) - 1:
                dec += [_norm(norm, dims, c_out), _act(activation)]
                if dropout > 0:
                    dec.append(drop(dropout))
        self.decoder = nn.Sequential(*dec)

        layers, width_in = [], latent_dim
        for _ in range(regressor_depth):
            layers += [nn.Linear(width_in, regressor_width), _act(activation)]
            width_in = regressor_width
        layers.append(nn.Linear(width_in, n_properties))
        self.regressor = nn.Sequential(*layers)

        # start near the prior: small posterior variance head keeps the first KL values moderate
        nn.init.zeros_(self.fc_logvar.bias)
        nn.init.normal_(self.fc_logvar.weight, std=1e-3)

    @classmethod
    def from_config(cls, cfg) -> "PVAE":
        return cls(dims=cfg.dims, input_size=cfg.input_size, n_properties=len(cfg.properties),
                   channels=cfg.channels, latent_dim=cfg.latent_dim, kernel_size=cfg.kernel_size,
                   norm=cfg.norm, activation=cfg.activation, dropout=cfg.dropout,
                   regressor_depth=cfg.regressor_depth, regressor_width=cfg.regressor_width)

    # --- the fixed interface ------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, S, S[, S]) in {0, 1} -> (mu, logvar), each (B, latent_dim)."""
        expected = (1,) + (self.input_size,) * self.dims
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"PVAE expects input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        h = self.encoder(x)  # (B, C, s, s[, s])
        h = h.flatten(1)  # (B, C * s^dims)
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I); (B, latent_dim)."""
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> logits (B, 1, S, S[, S]) (same size as the input)."""
        h = self.fc_dec(z)  # (B, C * s^dims)
        h = h.view(z.shape[0], *self.bottleneck_shape)  # (B, C, s, s[, s])
        return self.decoder(h)  # (B, 1, S, S[, S])

    def predict_properties(self, mu: torch.Tensor) -> torch.Tensor:
        """mu (B, latent_dim) -> normalized properties (B, P); see checkpoint.Normalizer.inverse."""
        return self.regressor(mu)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)  # (B, L) each
        z = self.reparameterize(mu, logvar) if self.training else mu
        return {"logits": self.decode(z), "mu": mu, "logvar": logvar, "z": z,
                "props": self.predict_properties(mu)}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pore probabilities (B, 1, S, S[, S]) decoded from the latent mean."""
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode(mu))
