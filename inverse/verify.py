"""Verification of candidates with the lattice Boltzmann solver (batched).

The solver (``data_pipeline.permeability.permeability_batch``) returns the permeability tensor in
lattice units (voxel^2), indices (x, y[, z]) with x the last (fastest) array axis. A batch that
raises (one sample diverging) is retried sample by sample so one bad candidate does not cost the
others their verification; its error is recorded, never hidden.
"""
from __future__ import annotations

import time

import numpy as np

from core.properties import component_index


def _record(im: np.ndarray, res, error: str = "") -> dict:
    dims = im.ndim
    rec = {"verified_porosity": float(np.mean(im)), "converged": False, "steps": 0, "error": error,
           "k": np.full((dims, dims), np.nan)}
    if res is not None:
        rec.update(verified_porosity=float(res.porosity), converged=bool(res.converged),
                   steps=int(res.steps), k=np.asarray(res.k, dtype=np.float64),
                   max_mach=float(res.max_mach), percolating=[bool(p) for p in res.percolating])
    return rec


def verify_batch(ims: list[np.ndarray], solver: dict | None = None) -> tuple[list[dict], float]:
    """Solve every candidate; returns (records, wall seconds).

    Parameters
    ----------
    ims : list of (Y, X) or (Z, Y, X) bool arrays, True = pore, one dimensionality
    solver : keyword arguments of ``permeability_batch`` (tol, max_steps, device, ...)

    Returns
    -------
    records : per candidate ``verified_porosity`` (-), ``k`` (D, D) voxel^2, ``converged``,
        ``steps``, ``error`` ("" when solved)
    seconds : wall time of the verification
    """
    from data_pipeline.permeability import SolverError, permeability_batch

    solver = dict(solver or {})
    t0 = time.perf_counter()
    if not ims:
        return [], 0.0
    try:
        results = permeability_batch(ims, **solver)
        recs = [_record(im, r) for im, r in zip(ims, results)]
    except (SolverError, FloatingPointError) as exc:
        recs = []
        for im in ims:
            try:
                recs.append(_record(im, permeability_batch([im], **solver)[0]))
            except (SolverError, FloatingPointError) as exc1:
                recs.append(_record(im, None, f"{type(exc1).__name__}: {exc1}"))
        if all(r["error"] for r in recs):
            for r in recs:
                r["error"] = r["error"] or f"{type(exc).__name__}: {exc}"
    return recs, time.perf_counter() - t0


def verified_values(rec: dict, properties: list[str]) -> dict[str, float]:
    """``{property: value}`` from a record (porosity and k components, lattice units)."""
    out = {}
    for p in properties:
        if p == "porosity":
            out[p] = float(rec["verified_porosity"])
        else:
            i, j = component_index(p)
            k = rec["k"]
            out[p] = float(k[i, j]) if i < k.shape[0] and j < k.shape[1] else float("nan")
    return out
