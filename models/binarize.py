"""The one porosity rule of the project: binarize pore probabilities at a given porosity.

Evaluation, figures, the generation term of the loss (:func:`models.losses.binarize_straight_through`)
and inverse design's candidates (:mod:`inverse.postprocess`) all binarize with it. Shapes: ``prob``
(n, *shape) pore probabilities; thresholds (n,).
"""
from __future__ import annotations

import torch


def porosity_thresholds(prob: torch.Tensor, porosity) -> torch.Tensor:
    """Per structure of (n, *shape) pore probabilities, the threshold t with ``prob > t`` on (as
    close as possible to) round(porosity_i * V) voxels: midway between the last voxel kept and the
    first one left (ties at it fall on one side together). ``porosity``: a float or (n,) values in
    [0, 1]. Returns (n,) thresholds in the dtype of ``prob`` (float32 at least). The one porosity
    rule of the project: evaluation, figures and inverse design's candidates all binarize with it."""
    flat = prob.reshape(len(prob), -1)
    flat = flat if flat.is_floating_point() and flat.dtype != torch.float16 else flat.float()  # (n, V)
    n_vox = flat.shape[1]
    phi = torch.as_tensor(porosity, dtype=torch.float64).clamp(0, 1).expand(len(flat))  # (n,)
    n_pore = torch.round(phi * n_vox).long()  # (n,)
    ranked = flat.sort(1, descending=True).values  # (n, V)
    last_in = ranked.gather(1, (n_pore - 1).clamp(0, n_vox - 1).unsqueeze(1))[:, 0]  # smallest kept
    first_out = ranked.gather(1, n_pore.clamp(0, n_vox - 1).unsqueeze(1))[:, 0]  # largest left out
    thr = 0.5 * (last_in + first_out)
    thr = torch.where(n_pore <= 0, ranked[:, 0], thr)  # nothing is pore: prob > max is empty
    below = torch.nextafter(ranked[:, -1], torch.full_like(ranked[:, -1], -float("inf")))
    return torch.where(n_pore >= n_vox, below, thr)  # everything is pore


def binarize_at(prob: torch.Tensor, porosity) -> torch.Tensor:
    """Binarize each structure of (n, *shape) pore probabilities at a porosity of its own
    (:func:`porosity_thresholds`); ``porosity`` is a float or (n,) values. Returns bool, same shape."""
    thr = porosity_thresholds(prob, porosity)  # (n,)
    flat = prob.reshape(len(prob), -1).to(thr.dtype)  # (n, V)
    return (flat > thr[:, None]).reshape(prob.shape)


def binarize_expected(prob: torch.Tensor) -> torch.Tensor:
    """Binarize each structure at its own expected porosity, the mean of its pore probabilities
    (the "decoded" rule of inverse design): a fixed 0.5 turns a low-contrast map into one phase."""
    return binarize_at(prob, prob.reshape(len(prob), -1).float().mean(1))
