"""``python -m data_pipeline build --config configs/data_demo.yaml``: synthesize (or take imported
volumes), label with the LBM solver, a trained surrogate or both, write a dataset folder (README.md, "On-disk dataset").

- Deterministic: sample ``i`` draws its generator family and parameters from
  ``default_rng([seed, i])``, so a sample does not depend on ``n_samples`` or on other samples.
- Parallel: labeling runs as Ray tasks (a local Ray started here with ``num_cpus``, or
  ``address=`` a running cluster); each task asks for ``gpus_per_task`` GPUs when the cluster has
  GPUs. A task takes the volume itself (read here, passed through Ray's object store) and returns
  its row; only this process reads and writes the dataset folder, so the build needs no storage
  shared between nodes (a job's working directory is unpacked separately on every node).
  ``parallel: serial`` labels in this process (no Ray).
- Labelers (``label``): ``lbm`` (the solver), ``surrogate`` (a trained models.surrogate checkpoint,
  ``surrogate: FOLDER``, batched in this process), ``mixed`` (each sample goes to the solver with
  probability ``lbm_fraction``, seeded by ``seed`` and the sample id only, see
  data_pipeline.label_surrogate.assign_labelers; the rest to the surrogate), ``none`` (porosity
  only). Every row says who labeled it (``labeler``). Whenever a surrogate is in use, every ok
  solver row also gets the surrogate's relative error (``surrogate_relerr_k_xx``, ...,
  ``surrogate_relerr`` = max over the diagonal): the running check, shown in the progress bar and
  summarised in dataset.yaml (``labeling.surrogate_check``).
- Resumable: properties.csv is rewritten atomically after every labeled sample (surrogate: every
  batch). A rerun labels only samples whose row does not satisfy the labeler assigned to them now:
  a solver row satisfies every labeler (never replaced by a cheaper label); a surrogate row
  satisfies ``surrogate`` and ``none`` but is relabeled by the solver where the solver is assigned
  now (``label: lbm``, or a larger ``lbm_fraction``), and relabeled by the surrogate when the
  model differs from the one recorded in dataset.yaml (then the check is recomputed too);
  failed rows are kept unless ``retry_failed``.
- Failures (solver divergence, not converged, generator cannot reach the porosity) are rows with
  ``status = failed`` and the reason in ``error``; they are never dropped or filled.

Generators in the config: ``family -> {weight: w, generator: <synth name, default family>, <param>: value | {uniform: [lo, hi]} |
{randint: [lo, hi]} | {choice: [a, b, ...]}}``; see configs/data_demo.yaml.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.config import FlatConfig, load_config_file
from core.properties import diagonal_columns
from data_pipeline import synth
from data_pipeline.label_surrogate import (MODES, RELERR, RunningCheck, assign_labelers, labeler_kind,
                                           installed_labeler_loader, relative_errors, surrogate_row)
from data_pipeline.io import (DATASET_YAML, K_COLUMNS, VOLUMES_DIR, DataError, atomic_path,
                              property_columns, read_dataset_meta, read_properties, read_volume,
                              volume_path, write_properties, write_volume, write_yaml)

SAMPLES_CSV = "samples.csv"
LABELS = MODES  # ("lbm", "surrogate", "mixed", "none")
#: Fields whose change makes an existing output folder a different dataset (n_samples may grow).
_IDENTITY = ("dims", "size", "seed", "generators", "source")  # what makes the volumes of a synthetic build
_IDENTITY_SOURCE = ("source",)  # ... of a build from imported volumes (the synthesis fields play no part)
_SYNTHESIS = ("dims", "size", "n_samples", "seed", "generators")  # left out of a source build's recorded config


@dataclass
class BuildConfig(FlatConfig):
    """Everything the build needs; loaded from YAML (an unknown key is an error)."""
    out: str = field(metadata={"help": "the dataset folder"})  # written (created; resumed if it exists)
    dims: int = 3                         # 2 or 3
    size: int = 32                        # edge length in voxels (cubic / square volumes)
    n_samples: int = 64
    seed: int = 0
    generators: dict = field(default_factory=lambda: {"blobs": {"porosity": {"uniform": [0.4, 0.8]}}})
    source: str | None = None             # dataset folder (or folder of .tif) of imported volumes
    label: str = "lbm"                    # "lbm" | "surrogate" | "mixed" | "none" (porosity only)
    surrogate: str | None = None          # checkpoint folder of a trained surrogate (label surrogate/mixed)
    lbm_fraction: float = 0.2             # mixed: probability that a sample goes to the solver (seeded per id)
    surrogate_device: str = "auto"        # torch device of the surrogate in this process ("auto": CUDA if any)
    surrogate_batch_size: int = 32        # volumes per surrogate batch
    solver: dict = field(default_factory=dict)   # kwargs of data_pipeline.permeability.permeability
    num_cpus: int | None = None           # local Ray CPUs (None = all)
    address: str | None = None            # Ray cluster address ("auto", "ray://host:10001"); None = local
    voxel_size: float | None = None       # metres, recorded in dataset.yaml
    parallel: str = "ray"                 # "ray" | "serial"
    gpus_per_task: float = 1.0            # GPUs per labeling task when the cluster has GPUs
    threads_per_task: int = 1             # solver threads per labeling task (CPU)
    retry_failed: bool = False            # relabel rows with status "failed" on a rerun
    recheck_percolation: bool = False     # relabel solver rows whose k = 0 pattern the topology test contradicts

    ERROR = DataError

    @classmethod
    def unknown_keys_error(cls, unknown, valid, source) -> DataError:
        if {"shape", "pore"} & set(unknown):  # a dataset's own dataset.yaml given as a build config
            folder = Path(str(source)).parent
            return DataError(f"{source}: this is a dataset's description (dataset.yaml: keys {sorted(unknown)}), "
                             f"not a build config; to label its volumes run `python -m data_pipeline label {folder}`, "
                             f"or build with a config that has `source: {folder}` (and `out:`); valid build keys: "
                             f"{sorted(valid)}")
        return DataError(f"{source}: unknown config key(s) {sorted(unknown)}; valid keys: {sorted(valid)} "
                         "(imported volumes are labeled with `source: <dataset folder>` or "
                         "`python -m data_pipeline label <dataset folder>`)")

    def __post_init__(self):
        if self.dims not in (2, 3):
            raise DataError(f"dims must be 2 or 3, got {self.dims}")
        if self.label not in LABELS:
            raise DataError(f"label must be one of {LABELS}, got {self.label!r}")
        if self.label in ("surrogate", "mixed") and not self.surrogate:
            raise DataError(f"label: {self.label} needs a trained surrogate: set surrogate: <checkpoint folder> "
                            "(or --surrogate PATH)")
        if not 0.0 <= float(self.lbm_fraction) <= 1.0:
            raise DataError(f"lbm_fraction must be in [0, 1], got {self.lbm_fraction}")
        if int(self.surrogate_batch_size) < 1:
            raise DataError(f"surrogate_batch_size must be >= 1, got {self.surrogate_batch_size}")
        if self.parallel not in ("ray", "serial"):
            raise DataError(f"parallel must be 'ray' or 'serial', got {self.parallel!r}")
        if self.source is None:
            if self.size < 4 or self.n_samples < 1:
                raise DataError(f"need size >= 4 and n_samples >= 1, got size={self.size}, n_samples={self.n_samples}")
            if not self.generators:
                raise DataError("generators is empty (or give source: a folder of imported volumes)")
            for name, spec in self.generators.items():
                if not isinstance(spec or {}, dict):
                    raise DataError(f"generators.{name}: expected a mapping of parameters, got {spec!r}")
                func = (spec or {}).get("generator", name)
                if func not in synth.GENERATORS:
                    raise DataError(f"generators.{name}: unknown generator {func!r}; choose from "
                                    f"{', '.join(synth.GENERATORS)} (or set generator: <one of them>)")


def load_build_config(path, **overrides) -> BuildConfig:
    """Read a BuildConfig from YAML; ``overrides`` (not None) replace file values."""
    return load_config_file(BuildConfig, Path(path), overrides, skip_none=True)


# ---------------------------------------------------------------------------------------------
# the plan: which generator and parameters each sample uses (pure, deterministic)
# ---------------------------------------------------------------------------------------------
def _draw(rng: np.random.Generator, name: str, key: str, value):
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise DataError(f"generators.{name}.{key}: expected one of uniform/randint/choice, got {value}")
    (kind, arg), = value.items()
    if kind == "uniform":
        lo, hi = arg
        return float(rng.uniform(lo, hi))
    if kind == "randint":  # inclusive
        lo, hi = arg
        return int(rng.integers(int(lo), int(hi) + 1))
    if kind == "choice":
        return arg[int(rng.integers(len(arg)))]
    raise DataError(f"generators.{name}.{key}: unknown distribution {kind!r} (uniform, randint, choice)")


def plan_sample(cfg: BuildConfig, i: int) -> dict:
    """Generator name, seed and drawn parameters of sample ``i`` (depends only on cfg.seed and i)."""
    rng = np.random.default_rng([int(cfg.seed), int(i)])
    names = list(cfg.generators)
    weights = np.array([float((cfg.generators[n] or {}).get("weight", 1.0)) for n in names])
    if (weights < 0).any() or weights.sum() <= 0:
        raise DataError(f"generators: weights must be >= 0 with a positive sum, got {dict(zip(names, weights))}")
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    spec = {k: v for k, v in (cfg.generators[name] or {}).items() if k not in ("weight", "generator")}
    params = {k: _draw(rng, name, k, v) for k, v in spec.items()}
    seed = int(rng.integers(2 ** 31 - 1))
    return {"sample_id": f"s{i:05d}", "family": name, "generator": (cfg.generators[name] or {}).get("generator", name),
            "seed": seed, "params": params}


def synthesize(cfg: BuildConfig, plan: dict) -> np.ndarray:
    """The volume of one planned sample: bool, True = pore."""
    shape = (cfg.size,) * cfg.dims
    return synth.generate(plan["generator"], shape, plan["seed"], **plan["params"])


# ---------------------------------------------------------------------------------------------
# labeling: a pure function of the volume (Ray only wraps it)
# ---------------------------------------------------------------------------------------------
def label_sample(im: np.ndarray, solver: dict | None = None, label: str = "lbm") -> dict:
    """Label one volume; never raises for a solver failure (returns a failed row instead).

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore
    solver : keyword arguments of ``data_pipeline.permeability.permeability``
    label : "lbm" (permeability tensor, lattice units voxel^2) or "none" (porosity only)

    Returns
    -------
    row : dict with porosity, k_* (lattice units), steps, converged, residual, max_mach,
        labeler, status ("ok" | "failed") and error ("" or the reason)
    """
    im = np.asarray(im, dtype=bool)
    row = {"porosity": float(im.mean()), "labeler": label, "status": "ok", "error": ""}
    if label == "none":
        return row
    from data_pipeline.permeability import SolverError, permeability

    t0 = time.perf_counter()
    try:
        res = permeability(im, **(solver or {}))
    except (SolverError, ValueError, ArithmeticError, MemoryError) as exc:
        # the sample's failure (divergence, no pore space, too large): a failed row with the reason;
        # anything else is a bug and stops the build (which resumes where it stopped)
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        return row
    k = np.asarray(res.k, dtype=float)  # (D, D), tensor indices (x, y[, z])
    index = {"x": 0, "y": 1, "z": 2}
    for col in K_COLUMNS[im.ndim]:
        row[col] = float(k[index[col[2]], index[col[3]]])
    row.update(steps=int(res.steps), converged=bool(res.converged), residual=float(res.residual),
               max_mach=float(res.max_mach), seconds=round(time.perf_counter() - t0, 3))
    if not res.converged:
        row.update(status="failed", error=f"not converged after {res.steps} steps (residual {res.residual:.3g})")
    elif not np.all(np.isfinite(k)):
        row.update(status="failed", error="non-finite permeability")
    return row


def _solver_kwargs(cfg: BuildConfig) -> dict:
    """cfg.solver checked against the solver's options (a typo fails the build, not every sample)."""
    import inspect

    from data_pipeline import permeability as perm

    kw = dict(cfg.solver)
    valid = set(getattr(perm, "_DEFAULTS", {})) | {
        n for n, p in inspect.signature(perm.permeability).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "im"}
    unknown = sorted(set(kw) - valid)
    if unknown:
        raise DataError(f"solver: unknown option(s) {unknown}; valid: {sorted(valid)}")
    if "threads" in valid and "threads" not in kw:
        kw["threads"] = int(cfg.threads_per_task)
    return kw


# ---------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------
def _identity(cfg: BuildConfig) -> dict:
    """The config fields that decide which volumes a dataset folder holds (a rerun must agree)."""
    d = dataclasses.asdict(cfg)
    return {k: d[k] for k in (_IDENTITY if cfg.source is None else _IDENTITY_SOURCE)}


def _prepare_meta(cfg: BuildConfig, out: Path, dims: int, shape: list[int], source_meta: dict | None) -> dict:
    path = out / DATASET_YAML
    ident = json.loads(json.dumps(_identity(cfg)))
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        old_ident = (old.get("build") or {}).get("identity")
        diff = sorted(k for k in ident if old_ident is not None and ident[k] != old_ident.get(k))
        if diff:  # only the fields this build is identified by (an older dataset.yaml may hold more)
            raise DataError(f"{path}: {out} was built with a different config (fields {diff}); "
                            "use another out folder or delete it")
    meta = {
        "dims": dims, "shape": shape,
        "voxel_size": cfg.voxel_size if cfg.voxel_size is not None else (source_meta or {}).get("voxel_size"),
        "pore": "uint8 TIFF, 1 = pore, 0 = solid; 3D as (Z, Y, X) pages",
        "units": {"permeability": "lattice units (voxel^2); physical = k * voxel_size^2"},
        "source": ({"kind": "synthetic", "generators": cfg.generators, "seed": cfg.seed,
                    "per_sample": f"{SAMPLES_CSV} (generator, seed, drawn params)"}
                   if cfg.source is None else {"kind": "imported", "from": str(cfg.source),
                                               "meta": (source_meta or {}).get("source")}),
        "label": cfg.label,
        "solver": dict(cfg.solver) if cfg.label in ("lbm", "mixed") else None,
        "build": {"identity": ident, "config": {k: v for k, v in dataclasses.asdict(cfg).items()
                                                if cfg.source is None or k not in _SYNTHESIS}},
    }
    if source_meta and source_meta.get("binarization"):
        meta["binarization"] = source_meta["binarization"]
    return meta


def _synthesize_all(cfg: BuildConfig, out: Path, progress: bool) -> tuple[list[str], dict[str, str]]:
    """Write the missing volumes; returns all sample ids and synthesis errors per id."""
    from tqdm import tqdm

    ids, errors, rows = [], {}, []
    for i in tqdm(range(cfg.n_samples), desc="synthesize", unit="sample", disable=not progress):
        plan = plan_sample(cfg, i)
        sid = plan["sample_id"]
        ids.append(sid)
        rows.append({"sample_id": sid, "family": plan["family"], "generator": plan["generator"], "seed": plan["seed"],
                     "params": json.dumps(plan["params"], sort_keys=True)})
        if volume_path(out, sid).is_file():
            continue
        try:
            im = synthesize(cfg, plan)
        except ValueError as exc:
            errors[sid] = f"synthesis ({plan['generator']} {plan['params']}): {exc}"
            continue
        write_volume(volume_path(out, sid), im)
    with atomic_path(out / SAMPLES_CSV) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return ids, errors


def _take_source(cfg: BuildConfig, out: Path) -> tuple[list[str], int, list[int], dict | None]:
    """Volumes of ``cfg.source`` (a dataset folder or a folder of .tif), copied into ``out``."""
    src = Path(cfg.source)
    meta = read_dataset_meta(src) if (src / DATASET_YAML).is_file() else None
    vol_dir = src / VOLUMES_DIR if meta else src
    paths = sorted(vol_dir.glob("*.tif"))
    if not paths:
        raise DataError(f"{vol_dir}: no .tif volumes to label")
    first = read_volume(paths[0])
    shape = list(first.shape)
    same = out.resolve() == src.resolve()
    for p in paths:
        if not same and not volume_path(out, p.stem).is_file():
            im = read_volume(p)
            if list(im.shape) != shape:
                raise DataError(f"{p}: shape {im.shape} differs from {paths[0]} {tuple(shape)}")
            volume_path(out, p.stem).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, volume_path(out, p.stem))
    return [p.stem for p in paths], first.ndim, shape, meta


class _Properties:
    """properties.csv kept in memory and rewritten atomically after every change."""

    #: labeler of the row -> labelers it satisfies (a solver row is never replaced by a cheaper label)
    SATISFIES = {"lbm": ("lbm", "surrogate", "none"), "surrogate": ("surrogate", "none"), "none": ("none",)}

    def __init__(self, out: Path, dims: int, stale_surrogate: bool = False):
        self.out, self.dims = out, dims
        self.stale_surrogate = stale_surrogate  # surrogate rows come from another model: relabel them
        df = read_properties(out)
        self.rows = {r["sample_id"]: r for r in df.to_dict("records")} if not df.empty else {}

    def done(self, sid: str, label: str, retry_failed: bool) -> bool:
        """The row of ``sid`` satisfies ``label`` (the labeler assigned to it now); see the module docstring."""
        r = self.rows.get(sid)
        if r is None:
            return False
        have = labeler_kind(r.get("labeler"))
        if label not in self.SATISFIES.get(have, ()):
            return False  # e.g. porosity-only or surrogate rows get the solver's permeability once assigned to it
        if have == "surrogate" and label == "surrogate" and self.stale_surrogate:
            return False
        return r.get("status") == "ok" or (r.get("status") == "failed" and not retry_failed)

    def put(self, sid: str, row: dict, write: bool = True) -> None:
        self.rows[sid] = {"sample_id": sid, **row}
        if write:
            self.write()

    def counts(self, ids) -> dict[str, int]:
        """Ok rows per labeler among ``ids``."""
        out: dict[str, int] = {}
        for sid in ids:
            r = self.rows.get(sid) or {}
            if r.get("status") == "ok":
                kind = labeler_kind(r.get("labeler")) or "unknown"
                out[kind] = out.get(kind, 0) + 1
        return out

    def write(self) -> None:
        df = pd.DataFrame(list(self.rows.values()))
        cols = property_columns(self.dims)
        extra = [c for c in df.columns if c not in cols]
        df = df.reindex(columns=cols + extra)
        empty_k = [c for c in K_COLUMNS[self.dims] if df[c].isna().all()]
        write_properties(self.out, df.drop(columns=empty_k))  # porosity-only datasets carry no k


def _percolation_mismatches(out: Path, props: _Properties, dims: int, ids) -> set[str]:
    """Ok solver rows whose pattern of k_ii = 0 disagrees with the topology test of their volume.

    Until 2026-12-02 the test (data_pipeline.lbm.topology) could miss a winding cluster (k = 0 on an
    axis that percolates: ~0.5% of the bench families near porosity 0.35-0.55) and joined 3D pores
    touching at a corner; rows labeled then are found here and relabeled (``recheck_percolation``)."""
    from data_pipeline.lbm.topology import active_pore_space

    k_cols = diagonal_columns(dims)
    stale = set()
    for sid in ids:
        r = props.rows.get(sid)
        if not r or r.get("status") != "ok" or labeler_kind(r.get("labeler")) != "lbm":
            continue
        k = [r.get(c) for c in k_cols]
        if any(v is None or not np.isfinite(float(v)) for v in k):
            continue
        flags = active_pore_space(read_volume(volume_path(out, sid)))[1]  # (D,) x, y(, z)
        if [float(v) > 0 for v in k] != [bool(f) for f in flags]:
            stale.add(sid)
    return stale


def build_dataset(cfg: BuildConfig, *, progress: bool = True, load_labeler=None) -> Path:
    """Synthesize or take volumes, label what is missing, write the dataset; returns its folder.

    ``load_labeler(folder, dims, shape, device) -> (labeler, info)`` loads the surrogate of
    ``label: surrogate | mixed`` (models.surrogate.load_checked_surrogate; this stage never imports
    models): the labeler has ``predict(ims) -> list[dict]`` and ``device``.
    """
    out = Path(cfg.out)
    label = cfg.label

    def load_surrogate(dims, shape):
        if load_labeler is None:
            raise DataError(f"label: {label} needs a surrogate labeler: run `python -m data_pipeline build` "
                            "from the installed project (pip install -e .), or pass load_labeler")
        return load_labeler(cfg.surrogate, dims, shape, cfg.surrogate_device)

    sur = sur_info = None
    if label in ("surrogate", "mixed") and cfg.source is None:  # checked before anything is written
        sur, sur_info = load_surrogate(cfg.dims, [cfg.size] * cfg.dims)
    old_meta = (yaml.safe_load((out / DATASET_YAML).read_text()) or {}) if (out / DATASET_YAML).is_file() else {}
    old_labeling = old_meta.get("labeling") or {}
    (out / VOLUMES_DIR).mkdir(parents=True, exist_ok=True)
    solver_kw = _solver_kwargs(cfg) if label in ("lbm", "mixed") else {}
    if cfg.source is None:
        dims, shape, source_meta = cfg.dims, [cfg.size] * cfg.dims, None
        meta = _prepare_meta(cfg, out, dims, shape, None)
        meta["labeling"] = old_labeling  # updated once the labels it describes are written
        write_yaml(out / DATASET_YAML, meta)
        ids, synth_errors = _synthesize_all(cfg, out, progress)
    else:
        ids, dims, shape, source_meta = _take_source(cfg, out)
        if label in ("surrogate", "mixed"):
            sur, sur_info = load_surrogate(dims, shape)
        meta = _prepare_meta(cfg, out, dims, shape, source_meta)
        meta["labeling"] = old_labeling
        write_yaml(out / DATASET_YAML, meta)
        synth_errors = {}
    if meta.get("solver") is None and old_meta.get("solver"):
        meta["solver"] = old_meta["solver"]  # the settings of solver rows labeled by an earlier run
        write_yaml(out / DATASET_YAML, meta)

    old_sha = (old_labeling.get("surrogate") or {}).get("sha256")
    props = _Properties(out, dims, stale_surrogate=sur is not None and old_sha != sur_info["sha256"])
    assigned = assign_labelers(ids, label, cfg.lbm_fraction, cfg.seed)
    for sid, err in synth_errors.items():
        if not props.done(sid, assigned[sid], cfg.retry_failed):
            props.put(sid, {"porosity": float("nan"), "labeler": assigned[sid], "status": "failed", "error": err})
    redo = _percolation_mismatches(out, props, dims, ids) if cfg.recheck_percolation else set()
    if cfg.recheck_percolation:
        print(f"build {out}: {len(redo)} solver row(s) with k = 0 on an axis the topology test finds "
              f"percolating (or k > 0 on one it finds blocked): relabeled", flush=True)
    todo = [s for s in ids if s not in synth_errors
            and (s in redo or not props.done(s, assigned[s], cfg.retry_failed))]
    by = {kind: [s for s in todo if assigned[s] == kind] for kind in ("lbm", "surrogate", "none")}
    split = f": {len(by['lbm'])} lbm, {len(by['surrogate'])} surrogate" if label == "mixed" else ""
    print(f"build {out}: {len(ids)} samples, {len(ids) - len(todo)} already labeled, labeling {len(todo)} "
          f"({label}{split})", flush=True)

    check = finish = None
    if sur is not None:
        # ok solver rows without a check value from this model get one (rows labeled earlier, a new model)
        recheck = [s for s in ids if s not in todo and _is_ok_lbm(props.rows.get(s))
                   and (props.stale_surrogate or not _finite(props.rows[s].get(RELERR)))]
        preds = _label_surrogate(cfg, out, sur, by["surrogate"], by["lbm"] + recheck, props, dims, progress)
        k_floor = float(sur.cfg.k_floor)
        for sid in recheck:
            props.rows[sid].update(relative_errors(props.rows[sid], preds.pop(sid), dims, k_floor))
        props.write()
        check = RunningCheck(dims)
        for sid in ids:
            if sid not in todo and _is_ok_lbm(props.rows.get(sid)):
                check.add(props.rows[sid])
        # surrogate rows and check values now all come from this model: record it
        meta["labeling"] = {**old_labeling, "surrogate": sur_info}
        write_yaml(out / DATASET_YAML, meta)

        def finish(sid: str, row: dict) -> dict:
            pred = preds.pop(sid, None)
            if pred is not None and row.get("status") == "ok" and labeler_kind(row.get("labeler")) == "lbm":
                row.update(relative_errors(row, pred, dims, k_floor))
                check.add(row)
            return row
    todo_solver = by["lbm"] + by["none"]
    if todo_solver:
        kind = "lbm" if by["lbm"] else "none"
        if kind == "none" or cfg.parallel == "serial":
            _label_serial(out, todo_solver, solver_kw, kind, props, progress, finish, check)
        else:
            _label_ray(cfg, out, todo_solver, solver_kw, kind, props, progress, finish, check)
    props.write()
    labeling = {**(meta.get("labeling") or {}), "mode": label, "seed": int(cfg.seed), "labelers": props.counts(ids)}
    labeling["lbm_fraction"] = float(cfg.lbm_fraction) if label == "mixed" else None
    if check is not None:
        labeling["surrogate_check"] = check.summary()
        if check.n:
            print(f"build {out}: running check: {check.postfix()} over the solver-labeled rows", flush=True)
    meta["labeling"] = labeling
    write_yaml(out / DATASET_YAML, meta)
    n_ok = sum(1 for s in ids if (props.rows.get(s) or {}).get("status") == "ok")
    print(f"build {out}: {n_ok} ok ({', '.join(f'{v} {k}' for k, v in sorted(labeling['labelers'].items()))}), "
          f"{len(ids) - n_ok} failed or missing; properties in {out / 'properties.csv'}", flush=True)
    return out


def _finite(x) -> bool:
    try:
        return bool(np.isfinite(float(x)))
    except (TypeError, ValueError):
        return False


def _is_ok_lbm(row: dict | None) -> bool:
    return bool(row) and row.get("status") == "ok" and labeler_kind(row.get("labeler")) == "lbm"


def _label_surrogate(cfg: BuildConfig, out: Path, sur, label_ids: list[str], check_ids: list[str],
                     props: _Properties, dims: int, progress: bool) -> dict[str, dict]:
    """Surrogate pass in this process, in batches: rows for ``label_ids`` (written per batch) and
    predictions of ``check_ids`` (solver rows, for the running check) returned by id."""
    from tqdm import tqdm

    to_label = set(label_ids)
    order = list(dict.fromkeys(list(label_ids) + list(check_ids)))
    preds: dict[str, dict] = {}
    bs = int(cfg.surrogate_batch_size)
    with tqdm(total=len(order), desc="label (surrogate)", unit="sample", disable=not progress or not order) as bar:
        for s in range(0, len(order), bs):
            chunk = order[s:s + bs]
            ims = np.stack([read_volume(volume_path(out, sid)) for sid in chunk])  # (B, *shape) bool
            for sid, pred in zip(chunk, sur.predict(ims)):
                if sid in to_label:
                    props.put(sid, surrogate_row(pred, dims), write=False)
                else:
                    preds[sid] = pred
            if to_label.intersection(chunk):
                props.write()
            bar.update(len(chunk))
    return preds


def _label_serial(out: Path, todo: list[str], solver_kw: dict, label: str, props: _Properties, progress: bool,
                  finish=None, check: RunningCheck | None = None):
    from tqdm import tqdm

    with tqdm(todo, desc=f"label ({label})", unit="sample", disable=not progress) as bar:
        for sid in bar:
            row = label_sample(read_volume(volume_path(out, sid)), solver_kw, label)
            props.put(sid, finish(sid, row) if finish else row)
            if check is not None:
                bar.set_postfix_str(check.postfix())


def _label_ray(cfg: BuildConfig, out: Path, todo: list[str], solver_kw: dict, label: str,
               props: _Properties, progress: bool, finish=None, check: RunningCheck | None = None):
    import os

    import ray
    from tqdm import tqdm

    started = False
    if not ray.is_initialized():
        repo = str(Path(__file__).resolve().parents[1])
        if cfg.address:
            runtime_env = {"working_dir": repo, "excludes": [".venv", ".git", "runs", "mlruns", "*.tif"]} \
                if str(cfg.address).startswith("ray://") else None
            ray.init(address=cfg.address, runtime_env=runtime_env)
        elif os.environ.get("RAY_ADDRESS"):  # inside a Ray job or a SLURM allocation: join that cluster
            ray.init()
        else:  # no cluster named: a local Ray of our own, whatever a dead head's marker says (address="local");
            # workers import the project through its editable install (pyproject.toml)
            ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False)
        started = True
    try:
        resources = ray.cluster_resources()
        opts = {"num_cpus": max(1, int(cfg.threads_per_task))}
        if resources.get("GPU", 0) > 0:
            opts["num_gpus"] = float(cfg.gpus_per_task)
        task = ray.remote(label_sample).options(**opts)
        slots = max(1, int(resources.get("CPU", 1) // opts["num_cpus"]))
        if "num_gpus" in opts:
            slots = max(slots, int(resources["GPU"] / opts["num_gpus"]))
        window = 2 * slots  # volumes in flight (bounds the object store, keeps every slot busy)
        queue = list(todo)
        pending: dict = {}
        with tqdm(total=len(todo), desc=f"label ({label}, ray)", unit="sample", disable=not progress) as bar:
            while queue or pending:
                while queue and len(pending) < window:
                    sid = queue.pop(0)
                    # the volume travels as the task's argument (object store), never as a path: the
                    # task may run on a node where this process's files do not exist
                    pending[task.remote(read_volume(volume_path(out, sid)), solver_kw, label)] = sid
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    sid = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except ray.exceptions.RayTaskError:
                        raise  # label_sample raised: a bug, not the sample's failure (rerun resumes)
                    except ray.exceptions.RayError as exc:  # worker died, out of memory: recorded
                        im = read_volume(volume_path(out, sid))
                        row = {"porosity": float(im.mean()), "labeler": label, "status": "failed",
                               "error": f"ray task: {type(exc).__name__}: {str(exc).splitlines()[0]}"}
                    props.put(sid, finish(sid, row) if finish else row)
                    bar.update(1)
                    if check is not None:
                        bar.set_postfix_str(check.postfix())
    finally:
        if started:
            ray.shutdown()


def main(argv: list[str] | None = None, load_labeler=None) -> int:
    """The command line; ``load_labeler`` (default: the installed ``pvae.labelers`` entry point,
    models.surrogate.load_checked_surrogate) loads the surrogate of label surrogate/mixed."""
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline build",
        description="Synthesize (or take imported volumes), label with the LBM solver in Ray tasks, a trained "
                    "surrogate, or both (mixed), write a dataset folder. Resumable: a rerun labels only what "
                    "is missing.")
    p.add_argument("--config", required=True, help="YAML with BuildConfig fields (configs/data_demo.yaml)")
    p.add_argument("--out", help="override the dataset folder")
    p.add_argument("--n-samples", type=int, help="override n_samples")
    p.add_argument("--num-cpus", type=int, help="local Ray CPUs")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://head:10001)")
    p.add_argument("--label", choices=LABELS, help="override the labeler: lbm (solver), surrogate (needs --surrogate), "
                   "mixed (solver on a seeded --lbm-fraction, surrogate on the rest), none (porosity only)")
    p.add_argument("--surrogate", metavar="PATH", help="checkpoint folder of a trained surrogate (e.g. runs/sur/best)")
    p.add_argument("--lbm-fraction", type=float, metavar="F",
                   help="mixed: probability in [0, 1] that a sample goes to the solver (seeded per sample id)")
    p.add_argument("--serial", action="store_true", help="label in this process, without Ray")
    p.add_argument("--retry-failed", action="store_true", help="relabel samples whose row is failed")
    p.add_argument("--recheck-percolation", action="store_true",
                   help="relabel solver rows whose k = 0 axes the topology test contradicts (rows labeled "
                        "before 2026-12-02, see bench/RESULTS.md 'Percolation test and the step cap')")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_build_config(args.config, out=args.out, n_samples=args.n_samples, num_cpus=args.num_cpus,
                                address=args.address, label=args.label, surrogate=args.surrogate,
                                lbm_fraction=args.lbm_fraction,
                                parallel="serial" if args.serial else None,
                                retry_failed=True if args.retry_failed else None,
                                recheck_percolation=True if args.recheck_percolation else None)
        if load_labeler is None and cfg.label in ("surrogate", "mixed"):
            load_labeler = installed_labeler_loader("surrogate")
        out = build_dataset(cfg, progress=not args.no_progress, load_labeler=load_labeler)
    except DataError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    print(f"dataset: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
