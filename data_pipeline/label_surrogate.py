"""Surrogate and mixed labeling for ``python -m data_pipeline build`` (pure helpers; the build drives them).

- :func:`assign_labelers`: which labeler each sample gets. In ``mixed`` mode sample ``sid`` goes to the
  solver when ``u(seed, sid) < lbm_fraction``, ``u`` a uniform number in [0, 1) from a hash of the
  build seed and the sample id. The choice of a sample depends on nothing else (not on n_samples,
  the order or the other samples), so a rerun, a resumed build or a grown dataset never reassigns a
  sample, and a larger fraction only adds solver samples (nested). The number of solver samples is
  Binomial(n, lbm_fraction): within about 2 sqrt(n f (1 - f)) of f n.
- The labeler itself is handed to the build (``build_dataset(cfg, load_labeler=...)``): this stage
  never imports models; the command line finds ``models.surrogate.load_checked_surrogate`` through
  the ``pvae.labelers`` entry point of pyproject.toml (:func:`installed_labeler_loader`).
- :func:`surrogate_row` / :func:`relative_errors`: a properties.csv row from a prediction, and the
  surrogate's relative error on a solver-labeled row (the running check).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from core.properties import diagonal_columns
from data_pipeline.io import K_COLUMNS, DataError

MODES = ("lbm", "surrogate", "mixed", "none")
#: Column prefix of the running check on solver rows: surrogate_relerr_k_xx, ... and surrogate_relerr (max).
RELERR = "surrogate_relerr"


def labeler_kind(labeler) -> str:
    """"lbm" | "surrogate" | "none" | "" of a properties.csv ``labeler`` value ("surrogate:<ckpt>" -> "surrogate")."""
    if not isinstance(labeler, str):
        return ""
    return labeler.split(":", 1)[0]


def solver_key(seed: int, sample_id: str) -> float:
    """Seeded uniform number in [0, 1) of one sample (sha256 of seed and id: platform independent)."""
    h = hashlib.sha256(f"lbm-fraction/{int(seed)}/{sample_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def assign_labelers(ids, mode: str, lbm_fraction: float = 0.0, seed: int = 0) -> dict[str, str]:
    """Labeler of every sample id: "lbm", "surrogate" or "none".

    Parameters
    ----------
    ids : sample ids
    mode : "lbm" | "surrogate" | "none" (every sample) or "mixed"
    lbm_fraction : mixed only; probability in [0, 1] that a sample goes to the solver
    seed : the build seed
    """
    if mode not in MODES:
        raise DataError(f"label must be one of {MODES}, got {mode!r}")
    if mode != "mixed":
        return {sid: mode for sid in ids}
    if not 0.0 <= float(lbm_fraction) <= 1.0:
        raise DataError(f"lbm_fraction must be in [0, 1], got {lbm_fraction}")
    return {sid: "lbm" if solver_key(seed, sid) < float(lbm_fraction) else "surrogate" for sid in ids}


def model_fingerprint(folder) -> str:
    """Short sha256 of a checkpoint's weights, normalization and config (identifies the model)."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "norm.json", "config.json"):
        p = Path(folder) / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def installed_labeler_loader(name: str = "surrogate"):
    """The labeler loader registered under ``name`` in the ``pvae.labelers`` entry points
    (pyproject.toml: ``surrogate = models.surrogate:load_checked_surrogate``), or None.

    A loader is ``load(folder, dims, shape, device) -> (labeler, info)``; the labeler has
    ``predict(ims) -> list[dict]`` (one properties dict per volume) and ``device``.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group="pvae.labelers"):
        if ep.name == name:
            return ep.load()
    return None


def surrogate_row(pred: dict, dims: int) -> dict:
    """A properties.csv row from one ``Surrogate.predict`` dict: porosity measured, k_* predicted
    (lattice units, voxel^2; components the model does not predict stay absent = empty)."""
    row = {"porosity": float(pred["porosity"])}
    row.update({c: float(pred[c]) for c in K_COLUMNS[dims] if c in pred})
    row.update(labeler="surrogate", status="ok", error="")
    bad = [c for c in K_COLUMNS[dims] if c in row and not np.isfinite(row[c])]
    if bad:
        row.update(status="failed", error=f"surrogate: non-finite {bad}")
    return row


def relative_errors(row: dict, pred: dict, dims: int, k_floor: float = 1e-6) -> dict:
    """The surrogate's relative error |k_pred - k| / k on the diagonal of a solver row.

    NaN for a component whose solver value is <= k_floor (non-percolating along that axis: no
    relative error); ``surrogate_relerr`` is the max over the finite components (NaN if none).
    """
    out = {}
    for c in diagonal_columns(dims):
        k, p = float(row.get(c, np.nan)), float(pred.get(c, np.nan))
        out[f"{RELERR}_{c}"] = abs(p - k) / k if k > k_floor and np.isfinite(p) else float("nan")
    finite = [v for v in out.values() if np.isfinite(v)]
    out[RELERR] = max(finite) if finite else float("nan")
    return out


class RunningCheck:
    """Median relative error of the surrogate on the solver rows seen so far."""

    def __init__(self, dims: int):
        self.cols = [f"{RELERR}_{c}" for c in diagonal_columns(dims)] + [RELERR]
        self.values: dict[str, list[float]] = {c: [] for c in self.cols}

    def add(self, row: dict) -> None:
        if not np.isfinite(row.get(RELERR, np.nan)):
            return
        for c in self.cols:
            v = row.get(c, np.nan)
            if np.isfinite(v):
                self.values[c].append(float(v))

    @property
    def n(self) -> int:
        return len(self.values[RELERR])

    def postfix(self) -> str:
        if not self.n:
            return "surrogate check: no solver rows yet"
        return f"surrogate median rel. err {np.median(self.values[RELERR]):.3f} (n={self.n})"

    def summary(self) -> dict:
        """For dataset.yaml: n solver rows checked, median and 90th percentile per component and of the max."""
        out: dict = {"n": self.n, "metric": "|k_surrogate - k_lbm| / k_lbm on solver-labeled rows "
                                           "(surrogate_relerr = max over the diagonal)"}
        for c in self.cols:
            v = self.values[c]
            name = c[len(RELERR) + 1:] if c != RELERR else "max_diag"
            out[f"median_{name}"] = float(np.median(v)) if v else None
            out[f"p90_{name}"] = float(np.percentile(v, 90)) if v else None
        return out
