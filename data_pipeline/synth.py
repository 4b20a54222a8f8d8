"""Seeded synthetic microstructures, 2D (Y, X) and 3D (Z, Y, X); ``im`` is bool, True = pore.

Families
--------
- ``channels``: straight prismatic channels through the volume (square or circular section) in a
  solid matrix, the synthetic family of the original pVAE work.
- ``spheres``: solid spheres (disks in 2D) in a pore matrix, overlapping or not, mono- or
  polydisperse, porosity hit to one voxel (the radii are scaled by a common factor close to 1).
- ``blobs``: thresholded smoothed Gaussian noise (PoreSpy ``blobs``), exact porosity, anisotropy
  by per-axis blobiness.
- ``foam``: open-cell-foam-like solid struts on the edges of a Voronoi tessellation (PoreSpy's
  ``voronoi_edges``, rasterized at once: :func:`voronoi_edges`), thickened until the porosity is
  hit to one voxel; PoreSpy's tessellation puts struts along the box faces, ``periodic=True``
  continues it across them (seamless, as the periodic solver assumes).

All sizes are in voxels. Every function takes an explicit ``seed`` and returns the same array for
the same arguments. ``generate(name, shape, seed, **params)`` dispatches by family name; the
command ``python -m data_pipeline synth`` writes the results as .tif files or a dataset folder.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from core.cli import failed

Shape = Sequence[int]


def _check_shape(shape: Shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 2:
        raise ValueError(f"shape must be 2 or 3 sizes >= 2 (voxels), got {shape}")
    return shape


def _check_porosity(porosity: float) -> float:
    porosity = float(porosity)
    if not 0.0 < porosity < 1.0:
        raise ValueError(f"porosity must be in (0, 1), got {porosity}")
    return porosity


def _threshold_exact(field: np.ndarray, porosity: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Pore = the ``round(porosity * N)`` voxels with the largest ``field`` (exact to one voxel).

    Ties are broken at random (seeded by ``rng``) so that the count is exact even on fields with
    discrete values (e.g. Euclidean distances on a lattice).
    """
    flat = field.ravel()
    n_pore = int(round(porosity * flat.size))
    if rng is not None:
        keys = np.lexsort((rng.random(flat.size), flat))  # ascending field, random among ties
    else:
        keys = np.argsort(flat, kind="stable")
    im = np.ones(flat.size, dtype=bool)
    im[keys[: flat.size - n_pore]] = False
    return im.reshape(field.shape)


# ---------------------------------------------------------------------------------------------
# channels
# ---------------------------------------------------------------------------------------------
def _periodic_offset(coord: np.ndarray, centre: float, size: int) -> np.ndarray:
    """Minimum-image signed distance from voxel centres ``coord`` to ``centre`` on a ring of ``size``."""
    d = coord - centre
    return d - size * np.round(d / size)


def _channel_mask(shape: tuple[int, ...], axis: int, centre: np.ndarray, width: int, section: str) -> np.ndarray:
    """Bool mask of one straight channel along ``axis`` (periodic in the cross-section)."""
    cross = [a for a in range(len(shape)) if a != axis]
    offsets = []
    for a, c in zip(cross, centre):
        d = _periodic_offset(np.arange(shape[a], dtype=float), c, shape[a])
        bshape = [1] * len(shape)
        bshape[a] = shape[a]
        offsets.append(d.reshape(bshape))
    half = width / 2.0
    if section == "circle" and len(cross) == 2:
        m = offsets[0] ** 2 + offsets[1] ** 2 <= half ** 2
    else:  # square section (or a strip in 2D): exactly `width` voxel centres per cross axis
        m = np.ones([1] * len(shape), dtype=bool)
        for d in offsets:
            m = m & (d >= -half) & (d < half)
    return np.broadcast_to(m, shape)


def channels(shape: Shape, n_range=(1, 6), width_range=(2, 5), section: str = "square",
             axis: int | None = None, overlap: bool = True, seed: int = 0, max_tries: int = 200) -> np.ndarray:
    """Straight prismatic pore channels through a solid matrix.

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X) size in voxels
    n_range : (min, max) number of channels, inclusive; the count is drawn uniformly
    width_range : (min, max) channel width (square side or circle diameter) in voxels, inclusive,
        drawn uniformly per channel
    section : "square" or "circle" (3D only; in 2D a channel is a strip of ``width`` voxels)
    axis : array axis the channels run along; None draws it per channel uniformly
    overlap : if False, a new channel must keep at least one solid voxel between it and the others
    seed : random seed
    max_tries : placement attempts per channel when ``overlap`` is False

    Returns
    -------
    im : bool array of ``shape``, True = pore. Positions are uniform and periodic in the
        cross-section, so a channel near a face wraps around (the LBM box is periodic too).

    Raises
    ------
    ValueError : bad arguments, or a non-overlapping channel could not be placed.
    """
    shape = _check_shape(shape)
    if section not in ("square", "circle"):
        raise ValueError(f"section must be 'square' or 'circle', got {section!r}")
    n_lo, n_hi = (int(v) for v in n_range)
    w_lo, w_hi = (int(v) for v in width_range)
    if not 1 <= n_lo <= n_hi or not 1 <= w_lo <= w_hi:
        raise ValueError(f"need 1 <= n_range[0] <= n_range[1] and 1 <= width_range[0] <= width_range[1], "
                         f"got n_range={n_range}, width_range={width_range}")
    if axis is not None and not 0 <= int(axis) < len(shape):
        raise ValueError(f"axis must be None or in [0, {len(shape)}), got {axis}")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(n_lo, n_hi + 1))
    im = np.zeros(shape, dtype=bool)
    for k in range(n):
        for _ in range(1 if overlap else max_tries):
            ax = int(rng.integers(len(shape))) if axis is None else int(axis)
            width = int(rng.integers(w_lo, w_hi + 1))
            cross = [a for a in range(len(shape)) if a != ax]
            centre = rng.uniform(0, [shape[a] for a in cross])
            mask = _channel_mask(shape, ax, centre, width, section)
            if overlap or not (ndimage.binary_dilation(mask, iterations=1, border_value=0) & im).any():
                im |= mask
                break
        else:
            raise ValueError(f"channels: could not place channel {k + 1} of {n} without overlap in "
                             f"{max_tries} tries (shape {shape}, widths {width_range}); "
                             "use fewer/narrower channels or overlap=True")
    return im


# ---------------------------------------------------------------------------------------------
# spheres
# ---------------------------------------------------------------------------------------------
def _ball_volume(r: np.ndarray | float, dims: int) -> np.ndarray | float:
    return (4.0 / 3.0) * math.pi * np.asarray(r) ** 3 if dims == 3 else math.pi * np.asarray(r) ** 2


def _ratio_field(shape: tuple[int, ...], centres: np.ndarray, radii: np.ndarray, reach: float) -> np.ndarray:
    """min_i |x - c_i| / r_i over the voxel centres x (periodic), evaluated within ``reach * r_i``.

    Voxels farther than ``reach * r_i`` from every centre keep +inf. The solid of spheres with
    radii ``s * r_i`` is then exactly ``field < s`` for every s <= reach.
    """
    field = np.full(shape, np.inf)
    dims = len(shape)
    for c, r in zip(centres, radii):
        h = int(math.ceil(reach * r)) + 1
        idx, d2 = [], 0.0
        for a in range(dims):
            lo = int(math.floor(c[a])) - h
            coords = np.arange(lo, lo + 2 * h + 2)
            if 2 * h + 2 > shape[a]:  # the box wraps onto itself: use the whole axis, minimum image
                coords = np.arange(shape[a])
            d = _periodic_offset(coords.astype(float), c[a], shape[a])
            bshape = [1] * dims
            bshape[a] = len(coords)
            idx.append(np.mod(coords, shape[a]))
            d2 = d2 + (d ** 2).reshape(bshape)
        ix = np.ix_(*idx)
        field[ix] = np.minimum(field[ix], np.sqrt(d2) / r)
    return field


def _draw_radii(rng: np.random.Generator, radius, n: int) -> np.ndarray:
    if np.ndim(radius) == 0:
        return np.full(n, float(radius))
    r_lo, r_hi = (float(v) for v in radius)
    return rng.uniform(r_lo, r_hi, n)


def spheres(shape: Shape, porosity: float, radius: float | tuple[float, float] = 4, overlap: bool = True,
            seed: int = 0, clearance: float = 0.0, max_rejects: int = 20000) -> np.ndarray:
    """Solid spheres (disks in 2D) in a pore matrix, at a target porosity.

    Centres are uniform (continuous positions, periodic box). Overlapping spheres are a Boolean
    (Poisson) model with ``n = -ln(phi) V / <v>`` spheres; non-overlapping ones are placed by random
    sequential addition. The porosity is then hit to one voxel by scaling every radius by one
    common factor ``s`` (close to 1, and <= 1 for non-overlapping spheres, so they never touch).

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X) size in voxels
    porosity : target pore fraction in (0, 1)
    radius : sphere radius in voxels, or (r_min, r_max) for polydisperse spheres (uniform radii)
    overlap : whether spheres may overlap
    seed : random seed
    clearance : extra gap between non-overlapping spheres, voxels
    max_rejects : consecutive rejected placements before giving up (non-overlapping)

    Returns
    -------
    im : bool array of ``shape``, True = pore, with ``|im.mean() - porosity| <= 0.5 / im.size``.

    Raises
    ------
    ValueError : non-overlapping spheres cannot reach the porosity (random sequential addition
        jams near a solid fraction of 0.38 in 3D, 0.55 in 2D).
    """
    shape = _check_shape(shape)
    porosity = _check_porosity(porosity)
    if np.ndim(radius) == 0 and float(radius) <= 0 or np.ndim(radius) == 1 and not 0 < radius[0] <= radius[1]:
        raise ValueError(f"radius must be > 0 or (r_min, r_max) with 0 < r_min <= r_max, got {radius}")
    dims = len(shape)
    rng = np.random.default_rng(seed)
    box = np.asarray(shape, dtype=float)
    vol = float(np.prod(box))
    n_voxels = int(np.prod(shape))
    n_solid = n_voxels - int(round(porosity * n_voxels))
    r_max = float(np.max(radius))
    if overlap:
        mean_v = float(np.mean(_ball_volume(_draw_radii(np.random.default_rng(seed + 1), radius, 4096), dims)))
        n = max(1, int(math.ceil(-math.log(porosity) * vol / mean_v)))
        centres = rng.uniform(0, box, (n, dims))
        radii = _draw_radii(rng, radius, n)
        reach = 2.0
        while True:
            field = _ratio_field(shape, centres, radii, reach)
            s = np.sort(field.ravel())[n_solid - 1] if n_solid > 0 else 0.0
            if s < reach:
                break
            more = max(1, n // 4)  # not enough spheres to reach the solid fraction: add some
            centres = np.vstack([centres, rng.uniform(0, box, (more, dims))])
            radii = np.concatenate([radii, _draw_radii(rng, radius, more)])
            n += more
        return _threshold_exact(field, porosity, rng)

    # random sequential addition, then shrink every sphere by the same factor s <= 1
    centres = np.empty((0, dims))
    radii = np.empty(0)
    target_v = (1.0 - porosity) * vol
    rejects = 0
    while True:
        while float(np.sum(_ball_volume(radii, dims))) < target_v:
            c = rng.uniform(0, box)
            r = float(_draw_radii(rng, radius, 1)[0])
            d = centres - c
            d -= box * np.round(d / box)
            if len(radii) and np.any(np.sqrt((d ** 2).sum(1)) < radii + r + clearance):
                rejects += 1
                if rejects >= max_rejects:
                    phi_max = 1.0 - float(np.sum(_ball_volume(radii, dims))) / vol
                    raise ValueError(
                        f"spheres: porosity {porosity} is too low for non-overlapping spheres of radius "
                        f"{radius} in shape {shape} (jammed at porosity ~{phi_max:.3f}); use overlap=True "
                        "or a higher porosity")
                continue
            rejects = 0
            centres = np.vstack([centres, c])
            radii = np.append(radii, r)
        field = _ratio_field(shape, centres, radii, 1.0)
        s = np.sort(field.ravel())[n_solid - 1] if n_solid > 0 else 0.0
        if s < 1.0:  # shrinking by s reaches the target: spheres stay apart
            return _threshold_exact(field, porosity, rng)
        target_v += float(_ball_volume(r_max, dims))  # voxelised volume fell short: add spheres


# ---------------------------------------------------------------------------------------------
# blobs and foam (PoreSpy)
# ---------------------------------------------------------------------------------------------
def blobs(shape: Shape, porosity: float, blobiness: float | Sequence[float] = 1.0, seed: int = 0) -> np.ndarray:
    """Gaussian-blob medium: smoothed random noise thresholded at an exact porosity (PoreSpy).

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X) size in voxels
    porosity : pore fraction in (0, 1), hit to one voxel
    blobiness : larger = smaller, more numerous blobs (the Gaussian sigma is
        ``mean(shape) / (40 * blobiness)`` per axis); a per-axis sequence makes the medium
        anisotropic (a smaller value = longer features along that axis)
    seed : random seed

    Returns
    -------
    im : bool array of ``shape``, True = pore (periodic across the faces).
    """
    import porespy as ps

    shape = _check_shape(shape)
    porosity = _check_porosity(porosity)
    if np.ndim(blobiness) == 1:
        if len(blobiness) != len(shape):
            raise ValueError(f"blobiness needs one value per axis ({len(shape)}), got {blobiness}")
        blobiness = [float(b) for b in blobiness]
    else:
        blobiness = float(blobiness)
    im = ps.generators.blobs(list(shape), porosity=porosity, blobiness=blobiness, seed=int(seed), periodic=True)
    return np.asarray(im, dtype=bool)


def voronoi_edges(shape: Shape, ncells: int, seed: int, periodic: bool = False) -> np.ndarray:
    """One-voxel-thin edges of a random Voronoi tessellation: PoreSpy's ``voronoi_edges`` (3.2,
    ``r=0, flat_faces=True``), the same voxels for the same arguments, rasterized at once.

    PoreSpy mirrors the seeds into the 3^d neighbouring boxes, takes scipy's Voronoi diagram and
    draws every ridge edge with one Python call per edge (~8000 edges for 40 cells at 24^3: 0.9 s
    per volume, 27 of the 31 s that synthesizing the demo's 160 volumes took). Here the same
    edges, the same rounding (``np.rint`` of ``np.linspace``'s points, its arithmetic reproduced:
    ``i * (delta / (n - 1)) + start``, the last point the end itself) for all edges in one array.

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X) size in voxels
    ncells : number of Voronoi seeds (uniform in the box, rounded to voxels)
    seed : seed of the legacy ``np.random.RandomState`` PoreSpy draws from (the global state is
        not touched)
    periodic : False (PoreSpy's): the seeds are mirrored into the neighbouring boxes, so cell
        faces lie on the box faces (struts along every face of the box); True: the seeds are
        repeated periodically, so the tessellation continues across the faces (the same seeds;
        no PoreSpy counterpart)

    Returns
    -------
    im : bool array of ``shape``, True = not on an edge (PoreSpy's convention: the pore space).
    """
    from scipy.spatial import Voronoi

    shape = np.asarray(_check_shape(shape))
    im = np.zeros(shape, dtype=bool)
    base = np.around(np.random.RandomState(seed).rand(int(ncells), im.ndim) * (shape - 1), decimals=0)
    im[tuple(base.T.astype(int))] = True
    im = np.pad(im, [(s, s) for s in shape], mode="wrap" if periodic else "symmetric")  # (3 Y, 3 X[, 3 Z])
    big = np.asarray(im.shape)
    vor = Voronoi(points=np.vstack(np.where(im)).T)
    # PoreSpy shrinks the vertices by (big - 1) / big; a periodic tessellation keeps them in place
    vertices = np.around(vor.vertices) if periodic else np.around(vor.vertices) * ((big - 1) / big)
    first, second = [], []
    for facet in vor.ridge_vertices:  # the closed cycle of each ridge's vertices
        first.extend(facet)
        second.extend(facet[1:] + facet[:1])
    edges = np.sort(np.array([first, second]).T, axis=1)  # (E, 2) vertex indices
    edges = edges[~(edges == -1).any(axis=1)]  # drop the edges at infinity
    key = np.unique(edges[:, 0] * len(vertices) + edges[:, 1])  # and the duplicates
    edges = np.stack([key // len(vertices), key % len(vertices)], axis=1)
    p0 = np.around(vertices[edges[:, 0]]).astype(int)  # (E, D)
    p1 = np.around(vertices[edges[:, 1]]).astype(int)
    inside = ((p0 >= 0) & (p0 < big) & (p1 >= 0) & (p1 < big)).all(axis=1)
    p0, p1 = p0[inside], p1[inside]
    n = np.abs(p1 - p0).max(axis=1) + 1  # points per edge, as np.linspace(.., n) gets them
    owner = np.repeat(np.arange(len(n)), n)  # (P,) edge of each point
    i = (np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)).astype(float)  # index along its edge
    div = np.maximum(n - 1, 1)[owner].astype(float)
    last = i == (n - 1)[owner]
    drawn = np.zeros(big, dtype=bool)
    coords = []
    for a in range(im.ndim):
        start, stop = p0[owner, a].astype(float), p1[owner, a].astype(float)
        y = i * ((stop - start) / div) + start
        y[last] = stop[last]
        coords.append(np.rint(y).astype(int))
    drawn[tuple(coords)] = True
    middle = tuple(slice(int(s), int(2 * s)) for s in shape)  # the original box
    return ~drawn[middle]


def foam_cells(shape: Shape, cell_size: float) -> int:
    """Number of Voronoi cells of a foam of mean cell diameter ``cell_size`` voxels in ``shape``."""
    return max(2, int(round(np.prod(shape) / float(cell_size) ** len(shape))))


def foam(shape: Shape, porosity: float, cell_size: float = 10.0, seed: int = 0, periodic: bool = False) -> np.ndarray:
    """Open-cell-foam-like medium: solid struts along the edges of a random Voronoi tessellation.

    The edge network of ``ncells = prod(shape) / cell_size**dims`` Poisson seeds (PoreSpy
    ``voronoi_edges``, one voxel thin) is thickened by a Euclidean distance threshold until the
    porosity is hit to one voxel (ties in the last shell are broken at random, seeded).

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X) size in voxels
    porosity : pore fraction in (0, 1); open-cell foams are typically 0.7-0.97
    cell_size : mean cell diameter in voxels
    seed : random seed
    periodic : False (the default, the foams of every dataset built before 2026-12-02): struts run
        along the box faces (PoreSpy's mirrored seeds), a seam that the periodic solver reads as
        part of the medium and that a periodic shift moves inside the volume; True: the
        tessellation and the strut thickening continue across the faces (:func:`voronoi_edges`)

    Returns
    -------
    im : bool array of ``shape``, True = pore; periodic across the faces only with ``periodic``.
    """
    shape = _check_shape(shape)
    porosity = _check_porosity(porosity)
    if cell_size <= 0:
        raise ValueError(f"cell_size must be > 0 voxels, got {cell_size}")
    edges = np.asarray(voronoi_edges(shape, ncells=foam_cells(shape, cell_size), seed=int(seed),
                                     periodic=periodic), dtype=bool)
    if periodic:  # distances across the faces too: the edges tiled 3^d times, the middle box kept
        tiled = np.pad(edges, [(s, s) for s in shape], mode="wrap")
        middle = tuple(slice(int(s), int(2 * s)) for s in shape)
        dist = ndimage.distance_transform_edt(tiled)[middle]
    else:
        dist = ndimage.distance_transform_edt(edges)  # voxels to the nearest edge
    return _threshold_exact(dist, porosity, np.random.default_rng(seed))


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "channels": channels,
    "spheres": spheres,
    "blobs": blobs,
    "foam": foam,
}


def generate(name: str, shape: Shape, seed: int, **params) -> np.ndarray:
    """Run generator ``name`` (a key of GENERATORS) with ``params``; bool array, True = pore."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose from {', '.join(GENERATORS)}")
    func = GENERATORS[name]
    import inspect

    accepted = set(inspect.signature(func).parameters) - {"shape", "seed"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"generator {name!r}: unknown parameter(s) {unknown}; it takes {sorted(accepted)}")
    return func(shape, seed=int(seed), **params)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _parse_value(text: str):
    """A command-line parameter value: JSON (numbers, lists, true/false) or a bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline synth",
        description="Generate seeded synthetic microstructures (uint8 TIFF, 1 = pore).",
        epilog="examples:\n"
               "  python -m data_pipeline synth spheres --size 32 --param porosity=0.6 --param radius=[2,5] --out out/\n"
               "  python -m data_pipeline synth blobs --dims 2 --size 128 --n 10 --param porosity=0.5 "
               "--param blobiness=[1,3] --dataset --out ds/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", choices=sorted(GENERATORS))
    p.add_argument("--out", required=True, help="output folder (.tif files, or a dataset folder with --dataset)")
    p.add_argument("--dims", type=int, choices=(2, 3), default=3)
    p.add_argument("--size", type=int, nargs="+", default=[32],
                   help="edge length in voxels, or one per axis (Z Y X / Y X)")
    p.add_argument("--n", type=int, default=1, help="number of samples (seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="generator parameter, JSON value (e.g. porosity=0.6, radius=[2,5], section=circle)")
    p.add_argument("--dataset", action="store_true",
                   help="write a dataset folder (dataset.yaml + volumes/), unlabeled; label it with build")
    args = p.parse_args(argv)

    from data_pipeline.io import DATASET_YAML, VOLUMES_DIR, write_volume, write_yaml

    size = args.size * args.dims if len(args.size) == 1 else args.size
    if len(size) != args.dims:
        p.error(f"--size needs 1 or {args.dims} values, got {args.size}")
    params = {}
    for item in args.param:
        if "=" not in item:
            p.error(f"--param {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        params[k.strip()] = _parse_value(v)
    out = Path(args.out)
    vol_dir = out / VOLUMES_DIR if args.dataset else out
    for i in range(args.n):
        seed = args.seed + i
        try:
            im = generate(args.generator, size, seed, **params)
        except ValueError as exc:
            return failed("synth", exc)
        name = f"s{i:05d}" if args.dataset else f"{args.generator}_{seed:05d}"
        write_volume(vol_dir / f"{name}.tif", im)
        print(f"{vol_dir / (name + '.tif')}: porosity {im.mean():.4f}")
    if args.dataset:
        write_yaml(out / DATASET_YAML, {
            "dims": args.dims, "shape": list(size), "voxel_size": None, "pore": "1 = pore, 0 = solid",
            "source": {"kind": "synth", "generator": args.generator, "params": params,
                       "seeds": list(range(args.seed, args.seed + args.n))},
            "label": "none"})
        print(f"dataset written to {out} (unlabeled; label with python -m data_pipeline build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
