"""From a decoded pore-probability field to a clean binary microstructure.

1. Binarize with a stated threshold rule (:func:`binarize`):
   ``target``  the threshold is the (1 - phi) quantile of the field, so that the pore fraction
               equals the requested porosity phi (the target's, or the predicted one);
   ``decoded`` the same with phi = mean pore probability of the field (the decoder's own porosity);
   ``fixed``   a fixed probability (0.5 = the most likely phase per voxel).
2. Clean (:func:`clean`), with scipy.ndimage connected components (face connectivity):
   * floating solid islands (solid clusters touching no face of the box and of at most
     ``max_island`` voxels: decoder speckle, physically a grain held by nothing) become pore;
   * isolated pores (pore clusters that do not span the box between two opposite faces along any
     axis, while some other cluster does) become solid: they hold fluid that never flows and
     would only inflate the porosity. Dead-end branches attached to a spanning cluster are kept.
3. :func:`binarize_clean` does both and, for the ``target`` / ``decoded`` rules, bisects the
   threshold so that the porosity AFTER cleaning matches phi (cleaning removes pore voxels).

Vocabulary: ``prob`` float array of pore probabilities in [0, 1]; ``im`` bool, True = pore.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def porosity_threshold(prob: np.ndarray, phi: float) -> float:
    """Threshold t such that the fraction of voxels with prob > t is (as close as possible to) phi
    (the evaluation's rule, :func:`models.binarize.porosity_thresholds`, on one structure)."""
    import torch

    from models.binarize import porosity_thresholds

    p = torch.as_tensor(np.asarray(prob, dtype=np.float64))[None]  # (1, *shape)
    return float(porosity_thresholds(p, float(np.clip(phi, 0.0, 1.0)))[0])


def binarize(prob: np.ndarray, rule: str = "target", phi: float | None = None,
             fixed: float = 0.5) -> tuple[np.ndarray, float]:
    """Binarize ``prob`` -> (im bool, threshold) with the rule described in the module doc."""
    prob = np.asarray(prob)
    if rule == "fixed":
        t = float(fixed)
    elif rule == "decoded":
        t = porosity_threshold(prob, float(prob.mean()))
    elif rule == "target":
        if phi is None:
            raise ValueError("threshold rule 'target' needs a porosity phi")
        t = porosity_threshold(prob, phi)
    else:
        raise ValueError(f"threshold rule must be 'target', 'decoded' or 'fixed', got {rule!r}")
    return prob > t, t


def _touches_faces(labels: np.ndarray, n: int) -> np.ndarray:
    """(n + 1, ndim, 2) bool: label l touches the low / high face of each axis."""
    out = np.zeros((n + 1, labels.ndim, 2), dtype=bool)
    for ax in range(labels.ndim):
        for side, idx in ((0, 0), (1, -1)):
            face = np.take(labels, idx, axis=ax)
            out[np.unique(face), ax, side] = True
    return out


def clean(im: np.ndarray, max_island: int = 64) -> tuple[np.ndarray, dict]:
    """Remove floating solid islands and isolated (non-spanning) pore clusters.

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore
    max_island : largest floating solid cluster (voxels) that is turned into pore

    Returns
    -------
    im : the cleaned volume (a copy)
    info : ``solid_removed`` and ``pores_removed`` (voxel counts), ``spanning`` (a pore cluster
        spans the box along some axis)
    """
    im = np.asarray(im, dtype=bool).copy()
    structure = ndimage.generate_binary_structure(im.ndim, 1)  # face connectivity
    info = {"solid_removed": 0, "pores_removed": 0, "spanning": False}

    solid_lab, n_solid = ndimage.label(~im, structure=structure)
    if n_solid:
        touch = _touches_faces(solid_lab, n_solid).any(axis=(1, 2))  # (n + 1,)
        sizes = np.bincount(solid_lab.ravel(), minlength=n_solid + 1)
        floating = (~touch) & (sizes <= max_island)
        floating[0] = False
        mask = floating[solid_lab]
        info["solid_removed"] = int(mask.sum())
        im[mask] = True

    pore_lab, n_pore = ndimage.label(im, structure=structure)
    if n_pore:
        touch = _touches_faces(pore_lab, n_pore)  # (n + 1, ndim, 2)
        spans = (touch[:, :, 0] & touch[:, :, 1]).any(axis=1)
        spans[0] = False
        info["spanning"] = bool(spans.any())
        if spans.any():
            mask = (pore_lab > 0) & ~spans[pore_lab]
            info["pores_removed"] = int(mask.sum())
            im[mask] = False
    return im, info


def binarize_clean(prob: np.ndarray, rule: str = "target", phi: float | None = None,
                   fixed: float = 0.5, do_clean: bool = True, max_island: int = 64,
                   iterations: int = 14) -> tuple[np.ndarray, float, dict]:
    """Binarize then clean; for porosity-matching rules, the porosity after cleaning matches phi.

    Returns (im, threshold, info); info has ``rule``, ``phi_goal`` and the cleaning counts.
    """
    prob = np.asarray(prob, dtype=np.float64)
    if rule == "decoded":
        phi = float(prob.mean())
    im, t = binarize(prob, rule if rule != "decoded" else "target", phi, fixed)
    if not do_clean:
        return im, t, {"rule": rule, "phi_goal": phi, "solid_removed": 0, "pores_removed": 0}
    out, info = clean(im, max_island)
    if rule != "fixed" and phi is not None:
        # cleaning changes the pore count; bisect the porosity handed to the threshold
        lo, hi = 0.0, 1.0
        best = (abs(out.mean() - phi), out, t, info)
        ask = phi
        for _ in range(iterations):
            err = out.mean() - phi
            if abs(err) < 0.5 / prob.size:
                break
            if err < 0:
                lo = ask
            else:
                hi = ask
            ask = 0.5 * (lo + hi)
            im, t = binarize(prob, "target", ask)
            out, info = clean(im, max_island)
            if abs(out.mean() - phi) < best[0]:
                best = (abs(out.mean() - phi), out, t, info)
        _, out, t, info = best
    return out, t, {"rule": rule, "phi_goal": phi, **info}
