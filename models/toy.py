"""A tiny labeled toy dataset for tests, smoke configs and benchmarks of the pVAE stage.

The volumes are thresholded, periodically smoothed Gaussian random fields (porosity and
correlation length vary per sample). The labels are NOT lattice Boltzmann results: porosity is
measured exactly and the diagonal permeabilities come from a Kozeny-Carman proxy

    k_ii = phi^3 / (5 (1 - phi)^2 s_i^2)     (lattice units, voxel^2)

with s_i the density of pore/solid faces whose normals are perpendicular to axis i (faces per
voxel, scaled by d / (d - 1) to the total-surface convention). They are smooth, physically
plausible functions of each volume, so a model that learns them is checkable; ``labeler`` in
properties.csv says ``kozeny-carman-proxy``. Off-diagonal components are 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from core.properties import diagonal_columns
from data_pipeline.io import K_COLUMNS, write_properties, write_volume, write_yaml


def toy_volume(size: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    """One bool (S,)*dims volume (True = pore): smoothed noise thresholded at a random porosity."""
    sigma = rng.uniform(1.0, 2.5) * np.exp(rng.uniform(-0.4, 0.4, size=dims))  # anisotropic correlation, voxels
    field = ndimage.gaussian_filter(rng.standard_normal((size,) * dims), sigma=sigma, mode="wrap")
    phi_target = rng.uniform(0.2, 0.6)
    return field < np.quantile(field, phi_target)


def kozeny_carman_proxy(im: np.ndarray) -> dict[str, float]:
    """Porosity and diagonal proxy permeabilities (voxel^2) of a periodic bool volume."""
    dims = im.ndim
    phi = float(im.mean())
    faces = [float(np.count_nonzero(im != np.roll(im, 1, axis=a))) / im.size for a in range(dims)]  # per voxel
    out = {"porosity": phi}
    for i, name in enumerate(diagonal_columns(dims)):  # k_xx, k_yy(, k_zz)
        axis = dims - 1 - i  # x is the last array axis
        s = sum(f for a, f in enumerate(faces) if a != axis) * dims / (dims - 1)
        out[name] = phi**3 / (5.0 * max(1 - phi, 1e-3) ** 2 * max(s, 1e-3) ** 2) if phi > 0 else 0.0
    return out


def make_toy_dataset(root, n: int = 64, size: int = 16, dims: int = 3, seed: int = 0) -> Path:
    """Write a toy dataset folder (dataset.yaml, volumes/, properties.csv) and return its path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        sid = f"toy{i:05d}"
        im = toy_volume(size, dims, rng)
        write_volume(root / "volumes" / f"{sid}.tif", im)
        row = {"sample_id": sid, **kozeny_carman_proxy(im)}
        for c in K_COLUMNS[dims]:
            row.setdefault(c, 0.0)
        row.update({"steps": 0, "converged": True, "residual": 0.0, "max_mach": 0.0,
                    "labeler": "kozeny-carman-proxy", "status": "ok", "error": ""})
        rows.append(row)
    write_yaml(root / "dataset.yaml", {
        "dims": dims, "shape": [size] * dims, "voxel_size": None, "pore": 1,
        "generator": {"name": "models.toy.make_toy_dataset", "n": n, "size": size, "seed": seed},
        "labels": "porosity exact; diagonal k from a Kozeny-Carman proxy (not LBM)"})
    write_properties(root, pd.DataFrame(rows))
    return root
