"""Microstructure descriptors as pure functions of ``im`` (bool, True = pore), 2D or 3D.

Lengths are in voxels (multiply by ``voxel_size`` for metres); areas per volume in 1/voxel.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from core.properties import AXES


def porosity(im: np.ndarray) -> float:
    """Pore fraction ``phi`` of ``im`` (dimensionless)."""
    return float(np.count_nonzero(im)) / im.size


def two_point_correlation(im: np.ndarray, r_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radial two-point correlation S2(r) of the pore phase, periodic, by FFT.

    ``S2(r)`` is the probability that two points a distance r apart are both pore:
    ``S2(0) = phi`` and ``S2(r) -> phi**2`` for an uncorrelated medium at large r.

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore; treated as periodic
    r_max : largest distance in voxels (default: half the smallest edge)

    Returns
    -------
    r : (R,) integer distances 0..r_max in voxels
    s2 : (R,) S2 averaged over the lattice vectors whose length rounds to r
    """
    f = np.asarray(im, dtype=np.float64)
    F = np.fft.rfftn(f)
    auto = np.fft.irfftn(F * np.conj(F), s=f.shape) / f.size  # (*shape): S2 at every lattice vector
    grids = np.meshgrid(*[np.fft.fftfreq(n) * n for n in f.shape], indexing="ij")
    dist = np.sqrt(sum(g ** 2 for g in grids))
    r_max = int(min(f.shape) // 2) if r_max is None else int(r_max)
    bins = np.rint(dist).astype(int).ravel()
    keep = bins <= r_max
    sums = np.bincount(bins[keep], weights=auto.ravel()[keep], minlength=r_max + 1)
    counts = np.bincount(bins[keep], minlength=r_max + 1)
    return np.arange(r_max + 1), sums / np.maximum(counts, 1)


def face_densities(im: np.ndarray) -> np.ndarray:
    """(ndim,) pore-solid faces per voxel normal to each array axis (periodic), in the axis order of
    ``im``: the fraction of neighbour pairs along that axis that cross the interface."""
    im = np.asarray(im, dtype=bool)
    return np.array([float(np.count_nonzero(im != np.roll(im, 1, axis=a))) / im.size for a in range(im.ndim)])


def anisotropy(im: np.ndarray) -> float:
    """Largest over smallest of :func:`face_densities` (dimensionless, >= 1): 1 for a structure whose
    interfaces are crossed equally often along every axis (isotropic blobs: 1.00-1.13 on the 120
    images of README "2D images"), larger for grains stretched along an axis or stripes (inf when
    the interface never crosses one axis, 1 for a structure without interface)."""
    f = face_densities(im)
    if f.max() == 0:
        return 1.0
    return float(f.max() / f.min()) if f.min() > 0 else float("inf")


def specific_surface(im: np.ndarray, method: str = "marching_cubes", sigma: float = 0.75) -> float:
    """Pore-solid interface area per total volume, in 1/voxel (divide by voxel_size for 1/m).

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore; treated as periodic
    method : "marching_cubes" (default): area of the skimage marching-cubes mesh (marching-squares
        perimeter in 2D) of the image smoothed by a periodic Gaussian of ``sigma`` voxels, one
        period of the mesh kept. Measured on voxelised spheres: within 5% of 4 pi r^2 for
        r >= 4 voxels and 0.5% for r >= 9 (smaller features are underestimated); exact for
        axis-aligned planes. Unsmoothed (sigma=0) the staircase adds ~8-10%.
        "faces": number of pore-solid voxel faces (edges in 2D), periodic; exact for
        axis-aligned planes, 1.5x (3D) / 4/pi (2D) too large on average for isotropic surfaces.
        Speckle finer than ``sigma`` (no 0.5 level left after smoothing) falls back to the faces
        count divided by that isotropic factor.
    sigma : Gaussian smoothing in voxels before marching cubes
    """
    im = np.asarray(im, dtype=bool)
    if method == "faces":
        return float(face_densities(im).sum())
    if method != "marching_cubes":
        raise ValueError(f"method must be 'marching_cubes' or 'faces', got {method!r}")
    if im.all() or not im.any():
        return 0.0
    from skimage import measure

    f = im.astype(np.float32)
    if sigma > 0:
        f = ndimage.gaussian_filter(f, sigma, mode="wrap")
    if not f.min() < 0.5 < f.max():
        # speckle finer than the smoothing (isolated voxels): no 0.5 iso-surface is left; count faces
        # and take the isotropic average (faces overestimate an isotropic surface by 1.5x in 3D, 4/pi in 2D)
        return specific_surface(im, method="faces") / (1.5 if im.ndim == 3 else 4 / np.pi)
    padded = np.pad(f, 1, mode="wrap")  # the periodic cell is [1, n + 1) along each padded axis
    upper = np.array(im.shape, dtype=float) + 1
    if im.ndim == 3:
        verts, faces, _, _ = measure.marching_cubes(padded, level=0.5)
        tri = verts[faces]  # (T, 3 vertices, 3 coords)
        centre = tri.mean(axis=1)
        keep = np.all((centre >= 1) & (centre < upper), axis=1)
        area = 0.5 * np.linalg.norm(np.cross(tri[keep, 1] - tri[keep, 0], tri[keep, 2] - tri[keep, 0]), axis=1).sum()
    else:
        area = 0.0
        for c in measure.find_contours(padded, 0.5):
            mid = 0.5 * (c[1:] + c[:-1])
            keep = np.all((mid >= 1) & (mid < upper), axis=1)
            area += float(np.linalg.norm(np.diff(c, axis=0), axis=1)[keep].sum())
    return float(area) / im.size


def local_thickness(im: np.ndarray) -> np.ndarray:
    """Local thickness of the pore space: per pore voxel the diameter (voxels) of the largest
    inscribed sphere containing it (PoreSpy ``local_thickness``, which returns radii, x 2)."""
    import porespy as ps

    im = np.asarray(im, dtype=bool)
    if not im.any():
        return np.zeros(im.shape)
    return 2.0 * np.asarray(ps.filters.local_thickness(im), dtype=float)


def pore_size_distribution(im: np.ndarray, bins: int | np.ndarray = 20) -> dict:
    """Volume-weighted pore-size (local-thickness diameter) distribution, voxels.

    Returns
    -------
    dict with ``edges`` (bins+1,), ``fraction`` (bins,) pore-volume fraction per bin (sums to 1),
    ``mean`` and ``median`` diameter (voxels) over pore voxels.
    """
    lt = local_thickness(im)[np.asarray(im, dtype=bool)]
    if lt.size == 0:
        return {"edges": [], "fraction": [], "mean": float("nan"), "median": float("nan")}
    hist, edges = np.histogram(lt, bins=bins)
    return {"edges": edges.tolist(), "fraction": (hist / lt.size).tolist(),
            "mean": float(lt.mean()), "median": float(np.median(lt))}


def percolates(im: np.ndarray) -> dict[str, bool]:
    """Whether the pore phase connects the two opposite faces along each tensor axis.

    Face connectivity (6 neighbours in 3D, 4 in 2D), the one that carries flow on a lattice; the
    box is not wrapped. Keys are tensor axes ``x, y, z`` (x = last array axis).
    """
    im = np.asarray(im, dtype=bool)
    labels, _ = ndimage.label(im)  # default structure = face connectivity
    out = {}
    names = AXES[: im.ndim]
    for a in range(im.ndim):
        first = np.unique(np.take(labels, 0, axis=a))
        last = np.unique(np.take(labels, -1, axis=a))
        common = np.intersect1d(first[first > 0], last[last > 0])
        out[names[im.ndim - 1 - a]] = bool(common.size)
    return {k: out[k] for k in names}


def describe_volume(im: np.ndarray, r_max: int | None = None, psd_bins: int = 20) -> dict:
    """All descriptors of one volume: scalars plus the S2 curve and pore-size histogram."""
    r, s2 = two_point_correlation(im, r_max)
    psd = pore_size_distribution(im, psd_bins)
    perc = percolates(im)
    return {
        "porosity": porosity(im),
        "specific_surface": specific_surface(im),
        "anisotropy": anisotropy(im),
        "pore_diameter_mean": psd["mean"],
        "pore_diameter_median": psd["median"],
        **{f"percolates_{k}": v for k, v in perc.items()},
        "s2_r": r.tolist(), "s2": s2.tolist(), "psd": psd,
    }
