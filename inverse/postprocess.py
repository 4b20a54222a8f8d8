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
   Cleaning is not monotone in the threshold (isolated pores join the spanning cluster at a lower
   one and stay), so the bisection can end off the goal, by a few voxels or by a jump of 1-2% of
   porosity; the voxels nearest the threshold that touch the phase they join are then flipped
   until the pore count is exact (:func:`flip_to_count`), and the result cleaned again.

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
                   iterations: int = 14, exact: bool = True) -> tuple[np.ndarray, float, dict]:
    """Binarize then clean; for porosity-matching rules, the porosity after cleaning matches phi.

    ``exact`` (porosity-matching rules): where the bisection ends off the goal, the pore count is
    brought to round(phi * size) by :func:`flip_to_count` (as near as its topology allows).
    Returns (im, threshold, info); info has ``rule``, ``phi_goal``, the cleaning counts and
    ``flipped`` (voxels flipped to meet the count).
    """
    prob = np.asarray(prob, dtype=np.float64)
    if rule == "decoded":
        phi = float(prob.mean())
    im, t = binarize(prob, rule if rule != "decoded" else "target", phi, fixed)
    if not do_clean:
        return im, t, {"rule": rule, "phi_goal": phi, "solid_removed": 0, "pores_removed": 0, "flipped": 0}
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
        n_pore = int(round(phi * prob.size))
        for _ in range(3 if exact else 0):  # the flips keep connectivity, but can shrink a solid
            if int(out.sum()) == n_pore:    # cluster to a floating island that clean() removes
                break
            flipped = flip_to_count(out, prob, n_pore)
            again, more = clean(flipped, max_island)
            if abs(int(again.sum()) - n_pore) >= abs(int(out.sum()) - n_pore):
                break
            info = {**info, "flipped": info.get("flipped", 0) + int((flipped != out).sum()),
                    **{k: info[k] + more[k] for k in ("solid_removed", "pores_removed")}}
            out = again
    return out, t, {"rule": rule, "phi_goal": phi, "flipped": 0, **info}


def flip_to_count(im: np.ndarray, prob: np.ndarray, n_pore: int) -> np.ndarray:
    """``im`` (*shape) bool with its pore count brought as near ``n_pore`` as topology allows.

    The voxels nearest the threshold (by ``prob``, the pore probability: the most probable solid
    voxels become pore, or the least probable pore voxels become solid) are flipped one at a time
    where the flip changes no connectivity: the voxel touches the phase it joins across a face,
    lies inside the box (face contact, which decides spanning and floating, is left alone), and the
    face neighbours of each phase are connected within its 3^ndim neighbourhood without it, so that
    no cluster of either phase is cut, merged or made (a sufficient local test). A copy.
    """
    out = np.asarray(im, dtype=bool).copy()
    left = n_pore - int(out.sum())
    if left == 0:
        return out
    to_pore = left > 0
    structure = ndimage.generate_binary_structure(out.ndim, 1)  # face connectivity, as clean()
    touches = np.zeros(out.shape, dtype=bool)  # a face neighbour of the phase it joins: a cheap prefilter
                                                # of the candidates (the local test below decides)
    for ax in range(out.ndim):
        for step in (1, -1):
            touches |= np.roll(out, step, axis=ax) == to_pore
    inside = np.zeros(out.shape, dtype=bool)
    inside[(slice(1, -1),) * out.ndim] = True
    cand = np.flatnonzero((out != to_pore) & touches & inside)
    p = prob.ravel()[cand]
    centre = (1,) * out.ndim
    faces = [tuple(1 + d for d in row) for row in np.vstack([np.eye(out.ndim, dtype=int), -np.eye(out.ndim, dtype=int)])]
    for flat in cand[np.argsort(-p if to_pore else p, kind="stable")]:
        idx = np.unravel_index(flat, out.shape)
        block = out[tuple(slice(i - 1, i + 2) for i in idx)]  # (3,) * ndim, the voxel at its centre
        if any(_local_clusters(block == phase, structure, centre, faces) != 1 for phase in (True, False)):
            continue  # the flip would cut the phase it leaves or merge the one it joins (or make an island)
        out[idx] = to_pore
        left += -1 if to_pore else 1
        if left == 0:
            break
    return out


def _local_clusters(mask: np.ndarray, structure: np.ndarray, centre: tuple, faces: list[tuple]) -> int:
    """Number of the clusters of ``mask`` (a 3^ndim block) without its centre that hold a face
    neighbour of the centre."""
    mask = mask.copy()
    mask[centre] = False
    lab, _ = ndimage.label(mask, structure=structure)
    return len({lab[f] for f in faces if lab[f]})
