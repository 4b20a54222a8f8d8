"""Loss terms of the pVAE, returned as a dict of named terms that are logged unchanged."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, nats; (B,)."""
    return 0.5 * torch.sum(mu.pow(2) + logvar.exp() - 1.0 - logvar, dim=1)


def pvae_loss(out: dict[str, torch.Tensor], x: torch.Tensor, y_norm: torch.Tensor | None,
              beta: float = 1.0, alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Named loss terms, each per voxel and per sample (independent of batch and volume size).

    recon : mean binary cross-entropy per voxel of the logits against x (nats/voxel)
    kl    : closed-form KL to N(0, I) per sample, divided by the number of voxels (nats/voxel)
    prop  : mean squared error of the normalized properties (0 when y_norm is None)
    loss  : recon + beta * kl + alpha * prop
    """
    logits = out["logits"].float()
    n_vox = math.prod(x.shape[1:])
    recon = F.binary_cross_entropy_with_logits(logits, x.float(), reduction="mean")
    kl = kl_divergence(out["mu"].float(), out["logvar"].float()).mean() / n_vox
    if y_norm is None:
        prop = torch.zeros((), device=logits.device)
    else:
        prop = F.mse_loss(out["props"].float(), y_norm.float())
    loss = recon + beta * kl + alpha * prop
    return {"loss": loss, "recon": recon, "kl": kl, "prop": prop}
