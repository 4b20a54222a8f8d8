"""Morphology of microstructures and of sets of them: the one module that judges whether a
structure looks like the material (used by model evaluation, inverse design, the study and bench).

Per structure (``im`` bool, True = pore, 2D or 3D, treated as periodic where stated):
porosity, two-point correlation S2(r) (radial, FFT, periodic), specific surface (1/voxel),
mean pore chord length along the axes (voxels), Euler characteristic density of the pore phase
(per voxel), the anisotropy of the pore-solid faces (largest over smallest face density along the
axes: the radial S2 and the specific surface cannot see grains stretched along one axis, nor
stripes), the local porosity spread (:func:`local_porosity_spread`: nor can they see solid gathered
into clumps beside an open band), and optionally the mean local-thickness pore diameter (PoreSpy; slower).

Between structures and sets: the RMS distance of S2 curves, the porosity Wasserstein distance,
for each structure the S2 distance to the nearest reference, and ratios of specific surface.
Lengths in voxels, surfaces per volume in 1/voxel (divide by ``voxel_size`` for 1/m).
"""
from __future__ import annotations

import numpy as np

from data_pipeline.descriptors import (anisotropy, face_densities, local_thickness, porosity, specific_surface,  # noqa: F401
                                       two_point_correlation)

#: scalar descriptors written per structure (results.csv, MLflow), in this order
SCALARS = ("porosity", "specific_surface", "chord_length", "euler_density", "anisotropy")


def chord_length(im: np.ndarray) -> float:
    """Mean length (voxels) of pore chords: maximal runs of pore voxels along the array axes.

    Runs are taken along every line of every axis; a run that touches the box face is counted as
    it is (not wrapped). Returns 0 for a volume without pore and the edge length for an all-pore one.
    """
    im = np.asarray(im, dtype=bool)
    total, count = 0, 0
    for ax in range(im.ndim):
        lines = np.moveaxis(im, ax, -1).reshape(-1, im.shape[ax]).astype(np.int8)  # (n_lines, L)
        padded = np.pad(lines, ((0, 0), (1, 1)))
        d = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past its end
        starts, ends = np.nonzero(d == 1), np.nonzero(d == -1)
        total += int((ends[1] - starts[1]).sum())
        count += len(starts[1])
    return total / count if count else 0.0


def local_porosity_spread(im: np.ndarray, window: int | None = None) -> float:
    """Standard deviation, over every position, of the porosity of a periodic box of edge
    ``window`` voxels (local porosity theory, Hilfer 1991); default window: a quarter of the
    smallest edge, at least 2. 0 for a structure whose every window holds the same porosity; for a
    half-filled box split into two slabs at window w it grows toward 0.5 as w / edge shrinks.
    Solid gathered into clumps beside an open band raises it; specific surface and S2 do not see that."""
    from scipy import ndimage

    im = np.asarray(im, dtype=np.float64)
    w = window if window is not None else max(2, min(im.shape) // 4)
    return float(ndimage.uniform_filter(im, size=w, mode="wrap").std())


def euler_density(im: np.ndarray) -> float:
    """Euler characteristic of the pore phase per voxel (scikit-image ``euler_number``,
    connectivity 1 = face neighbours in 3D, 1 = edge neighbours in 2D). In 3D chi = components
    - tunnels + cavities: positive for isolated pores, negative for a well-connected network."""
    from skimage.measure import euler_number

    im = np.asarray(im, dtype=bool)
    return float(euler_number(im, connectivity=1)) / im.size


def s2_curve(im: np.ndarray, r_max: int | None = None) -> np.ndarray:
    """Radial S2(r), r = 0..r_max (default half the smallest edge); see descriptors.two_point_correlation."""
    return two_point_correlation(im, r_max)[1]


def morphology(im: np.ndarray, pore_size: bool = False) -> dict:
    """Scalar descriptors of one structure (see :data:`SCALARS`) plus its S2 curve.

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore
    pore_size : also the mean local-thickness pore diameter ``pore_diameter`` (voxels; PoreSpy, slower)

    Returns
    -------
    dict with porosity (-), specific_surface (1/voxel, :func:`surface_from_faces`), chord_length (voxels), euler_density
    (1/voxel), anisotropy (-), ``s2`` (R,) and, when asked, pore_diameter (voxels)
    """
    im = np.asarray(im, dtype=bool)
    out = {"porosity": porosity(im), **{name: fn(im) for name, fn in _LEARNABLE_FNS.items()},
           "anisotropy": anisotropy(im), "s2": s2_curve(im)}
    if pore_size:
        lt = local_thickness(im)[im]
        out["pore_diameter"] = float(lt.mean()) if lt.size else 0.0
    return out


def surface_from_faces(im: np.ndarray) -> float:
    """Specific surface (1/voxel) from the count of pore-solid voxel faces, divided by the isotropic
    factor (1.5 in 3D, 4/pi in 2D: the mean over orientations of a surface's projected face count).

    Within 2.5% of 4 pi r^2 on voxelised spheres of radius 4-12 and resolving voxel-scale speckle,
    which the smoothed marching-cubes estimate of ``descriptors.specific_surface`` erases (on a
    fine random field it reads 2% of this value): comparisons between structures of different
    texture scale need one estimator that sees both. Axis-aligned planes read 1/1.5 of their area."""
    im = np.asarray(im, dtype=bool)
    return specific_surface(im, method="faces") / (1.5 if im.ndim == 3 else 4 / np.pi)


#: how each learnable descriptor is measured (also by :func:`morphology`)
_LEARNABLE_FNS = {"specific_surface": surface_from_faces, "chord_length": chord_length, "euler_density": euler_density}
#: descriptors a model may learn as extra targets (``PVAEConfig.descriptors``): computed from the
#: volume alone and unchanged by the symmetries of the square / cube (anisotropy is not)
LEARNABLE = tuple(_LEARNABLE_FNS)


def learnable_descriptors(vols, names) -> np.ndarray:
    """Descriptors ``names`` (a subset of :data:`LEARNABLE`) of every structure: (N, *shape) bool
    -> (N, len(names)) float64, specific surface in 1/voxel, chord length in voxels, Euler density
    per voxel (the functions of :func:`morphology`). Raises ValueError for another name."""
    bad = [n for n in names if n not in LEARNABLE]
    if bad:
        raise ValueError(f"not a learnable descriptor: {bad} (choose from {list(LEARNABLE)})")
    return np.array([[_LEARNABLE_FNS[n](np.asarray(v, dtype=bool)) for n in names] for v in vols],
                    dtype=np.float64).reshape(len(vols), len(names))


def s2_distance(s2_a: np.ndarray, s2_b: np.ndarray) -> float:
    """RMS over lags of the difference of two S2 curves (same lags), dimensionless."""
    a, b = np.asarray(s2_a, dtype=float), np.asarray(s2_b, dtype=float)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def nearest_s2_distances(s2_set: np.ndarray, s2_ref: np.ndarray) -> np.ndarray:
    """For each curve of s2_set (n, R): RMS S2 distance to the nearest curve of s2_ref (m, R); (n,)."""
    a, b = np.atleast_2d(s2_set).astype(float), np.atleast_2d(s2_ref).astype(float)
    d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T  # (n, m) squared L2
    return np.sqrt(np.maximum(d2, 0.0).min(1) / a.shape[1])


def wasserstein(a, b) -> float:
    """1D Wasserstein (earth mover's) distance between two samples of a scalar."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(a, float), np.asarray(b, float)))


def describe_set(volumes) -> dict:
    """Descriptors of a set of structures: ``scalars`` dict name -> (n,) and ``s2`` (n, R)."""
    rows = [morphology(v) for v in volumes]
    return {"scalars": {k: np.array([r[k] for r in rows]) for k in SCALARS},
            "s2": np.stack([r["s2"] for r in rows]) if rows else np.zeros((0, 0))}


def compare_sets(generated: dict, reference: dict) -> dict:
    """How far a set of structures is from a reference set, both from :func:`describe_set`.

    Returns porosity_wasserstein, s2_nearest_median (median over generated structures of the S2
    distance to the nearest reference), s2_mean_distance (between the mean curves), and per scalar
    descriptor the ratio of medians ``<name>_ratio`` (generated / reference).
    """
    g, r = generated["scalars"], reference["scalars"]
    out = {"porosity_wasserstein": wasserstein(g["porosity"], r["porosity"]),
           "s2_nearest_median": float(np.median(nearest_s2_distances(generated["s2"], reference["s2"]))),
           "s2_mean_distance": s2_distance(generated["s2"].mean(0), reference["s2"].mean(0))}
    for k in SCALARS:
        ref = float(np.median(r[k]))
        out[f"{k}_ratio"] = float(np.median(g[k])) / ref if ref != 0 else float("nan")
    return out


def compare_to(im: np.ndarray, reference: dict) -> dict:
    """Morphology of one structure against one reference structure's :func:`morphology`:
    its own scalars, ``specific_surface_ratio`` (im / reference) and ``s2_distance``."""
    m = morphology(im)
    ref_ss = reference["specific_surface"]
    out = {k: m[k] for k in SCALARS}
    out["specific_surface_ratio"] = m["specific_surface"] / ref_ss if ref_ss > 0 else float("nan")
    out["s2_distance"] = s2_distance(m["s2"], reference["s2"])
    return out
