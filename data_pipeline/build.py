"""``python -m data_pipeline build --config configs/data_demo.yaml``: synthesize (or take imported
volumes), label with the LBM solver, write the dataset of DESIGN.md.

- Deterministic: sample ``i`` draws its generator family and parameters from
  ``default_rng([seed, i])``, so a sample does not depend on ``n_samples`` or on other samples.
- Parallel: labeling runs as Ray tasks (a local Ray started here with ``num_cpus``, or
  ``address=`` a running cluster); each task asks for ``gpus_per_task`` GPUs when the cluster has
  GPUs. ``parallel: serial`` labels in this process (no Ray).
- Resumable: properties.csv is rewritten atomically after every labeled sample; a rerun labels
  only samples without a row from the same labeler (failed rows are kept unless ``retry_failed``).
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from data_pipeline import synth
from data_pipeline.io import (DATASET_YAML, K_COLUMNS, VOLUMES_DIR, DataError, atomic_path,
                              property_columns, read_dataset_meta, read_properties, read_volume,
                              volume_path, write_properties, write_volume, write_yaml)

SAMPLES_CSV = "samples.csv"
LABELS = ("lbm", "none")
#: Fields whose change makes an existing output folder a different dataset (n_samples may grow).
_IDENTITY = ("dims", "size", "seed", "generators", "source")


@dataclass
class BuildConfig:
    """Everything the build needs; loaded from YAML (an unknown key is an error)."""
    out: str                              # dataset folder to write (created; resumed if it exists)
    dims: int = 3                         # 2 or 3
    size: int = 32                        # edge length in voxels (cubic / square volumes)
    n_samples: int = 64
    seed: int = 0
    generators: dict = field(default_factory=lambda: {"blobs": {"porosity": {"uniform": [0.4, 0.8]}}})
    source: str | None = None             # dataset folder (or folder of .tif) of imported volumes
    label: str = "lbm"                    # "lbm" | "none" (porosity only)
    solver: dict = field(default_factory=dict)   # kwargs of data_pipeline.permeability.permeability
    num_cpus: int | None = None           # local Ray CPUs (None = all)
    address: str | None = None            # Ray cluster address ("auto", "ray://host:10001"); None = local
    voxel_size: float | None = None       # metres, recorded in dataset.yaml
    parallel: str = "ray"                 # "ray" | "serial"
    gpus_per_task: float = 1.0            # GPUs per labeling task when the cluster has GPUs
    threads_per_task: int = 1             # solver threads per labeling task (CPU)
    retry_failed: bool = False            # relabel rows with status "failed" on a rerun

    def __post_init__(self):
        if self.dims not in (2, 3):
            raise DataError(f"dims must be 2 or 3, got {self.dims}")
        if self.label not in LABELS:
            raise DataError(f"label must be one of {LABELS}, got {self.label!r}")
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
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of config keys")
    data.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(BuildConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DataError(f"{path}: unknown config key(s) {unknown}; valid keys: {sorted(names)}")
    if "out" not in data:
        raise DataError(f"{path}: 'out' (the dataset folder) is required")
    try:
        return BuildConfig(**data)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


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
def solver_available() -> bool:
    try:
        import data_pipeline.permeability  # noqa: F401
    except ImportError:
        return False
    return True


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
    d = dataclasses.asdict(cfg)
    return {k: d[k] for k in _IDENTITY}


def _prepare_meta(cfg: BuildConfig, out: Path, dims: int, shape: list[int], source_meta: dict | None) -> dict:
    path = out / DATASET_YAML
    ident = json.loads(json.dumps(_identity(cfg)))
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        old_ident = (old.get("build") or {}).get("identity")
        if old_ident is not None and old_ident != ident:
            diff = sorted(k for k in ident if ident[k] != old_ident.get(k))
            raise DataError(f"{path}: {out} was built with a different config (fields {diff}); "
                            "use another out folder or delete it")
    meta = {
        "dims": dims, "shape": shape, "voxel_size": cfg.voxel_size,
        "pore": "uint8 TIFF, 1 = pore, 0 = solid; 3D as (Z, Y, X) pages",
        "units": {"permeability": "lattice units (voxel^2); physical = k * voxel_size^2"},
        "source": ({"kind": "synthetic", "generators": cfg.generators, "seed": cfg.seed,
                    "per_sample": f"{SAMPLES_CSV} (generator, seed, drawn params)"}
                   if cfg.source is None else {"kind": "imported", "from": str(cfg.source),
                                               "meta": (source_meta or {}).get("source")}),
        "label": cfg.label,
        "solver": dict(cfg.solver) if cfg.label == "lbm" else None,
        "build": {"identity": ident, "config": dataclasses.asdict(cfg)},
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

    def __init__(self, out: Path, dims: int):
        self.out, self.dims = out, dims
        df = read_properties(out)
        self.rows = {r["sample_id"]: r for r in df.to_dict("records")} if not df.empty else {}

    def done(self, sid: str, label: str, retry_failed: bool) -> bool:
        r = self.rows.get(sid)
        if r is None:
            return False
        if r.get("labeler") != label and not (label == "none" and r.get("labeler") == "lbm"):
            return False  # porosity-only rows get permeability once the solver is used
        return r.get("status") == "ok" or (r.get("status") == "failed" and not retry_failed)

    def put(self, sid: str, row: dict) -> None:
        self.rows[sid] = {"sample_id": sid, **row}
        self.write()

    def write(self) -> None:
        df = pd.DataFrame(list(self.rows.values()))
        cols = property_columns(self.dims)
        extra = [c for c in df.columns if c not in cols]
        df = df.reindex(columns=cols + extra)
        empty_k = [c for c in K_COLUMNS[self.dims] if df[c].isna().all()]
        write_properties(self.out, df.drop(columns=empty_k))  # porosity-only datasets carry no k


def build_dataset(cfg: BuildConfig, *, progress: bool = True) -> Path:
    """Synthesize or take volumes, label what is missing, write the dataset; returns its folder."""
    out = Path(cfg.out)
    (out / VOLUMES_DIR).mkdir(parents=True, exist_ok=True)
    label = cfg.label
    if label == "lbm" and not solver_available():
        label = "none"
        warnings.warn("data_pipeline.permeability cannot be imported: labeling POROSITY ONLY "
                      "(rerun the build once the solver exists to add permeability)", stacklevel=2)
        print("WARNING: LBM solver unavailable: labeling porosity only", file=sys.stderr)
    solver_kw = _solver_kwargs(cfg) if label == "lbm" else {}
    if cfg.source is None:
        dims, shape, source_meta = cfg.dims, [cfg.size] * cfg.dims, None
        meta = _prepare_meta(cfg, out, dims, shape, None)
        write_yaml(out / DATASET_YAML, meta)
        ids, synth_errors = _synthesize_all(cfg, out, progress)
    else:
        ids, dims, shape, source_meta = _take_source(cfg, out)
        meta = _prepare_meta(cfg, out, dims, shape, source_meta)
        write_yaml(out / DATASET_YAML, meta)
        synth_errors = {}
    if label != cfg.label:
        meta["label"] = f"{label} (solver unavailable; config asked for {cfg.label})"
        write_yaml(out / DATASET_YAML, meta)

    props = _Properties(out, dims)
    for sid, err in synth_errors.items():
        if not props.done(sid, label, cfg.retry_failed):
            props.put(sid, {"porosity": float("nan"), "labeler": label, "status": "failed", "error": err})
    todo = [s for s in ids if s not in synth_errors and not props.done(s, label, cfg.retry_failed)]
    print(f"build {out}: {len(ids)} samples, {len(ids) - len(todo)} already labeled, labeling {len(todo)} "
          f"({label})", flush=True)
    if todo:
        if label == "none" or cfg.parallel == "serial":
            _label_serial(out, todo, solver_kw, label, props, progress)
        else:
            _label_ray(cfg, out, todo, solver_kw, label, props, progress)
    props.write()
    n_ok = sum(1 for s in ids if (props.rows.get(s) or {}).get("status") == "ok")
    print(f"build {out}: {n_ok} ok, {len(ids) - n_ok} failed or missing; properties in {out / 'properties.csv'}",
          flush=True)
    return out


def _label_serial(out: Path, todo: list[str], solver_kw: dict, label: str, props: _Properties, progress: bool):
    from tqdm import tqdm

    for sid in tqdm(todo, desc=f"label ({label})", unit="sample", disable=not progress):
        props.put(sid, label_sample(read_volume(volume_path(out, sid)), solver_kw, label))


def _label_ray(cfg: BuildConfig, out: Path, todo: list[str], solver_kw: dict, label: str,
               props: _Properties, progress: bool):
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
        else:  # workers of a local Ray must import data_pipeline from this checkout
            pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=cfg.num_cpus, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
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
                    props.put(sid, row)
                    bar.update(1)
    finally:
        if started:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline build",
        description="Synthesize (or take imported volumes), label with the LBM solver in Ray tasks, "
                    "write a dataset folder. Resumable: a rerun labels only what is missing.")
    p.add_argument("--config", required=True, help="YAML with BuildConfig fields (configs/data_demo.yaml)")
    p.add_argument("--out", help="override the dataset folder")
    p.add_argument("--n-samples", type=int, help="override n_samples")
    p.add_argument("--num-cpus", type=int, help="local Ray CPUs")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://head:10001)")
    p.add_argument("--label", choices=LABELS, help="override the labeler")
    p.add_argument("--serial", action="store_true", help="label in this process, without Ray")
    p.add_argument("--retry-failed", action="store_true", help="relabel samples whose row is failed")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_build_config(args.config, out=args.out, n_samples=args.n_samples, num_cpus=args.num_cpus,
                                address=args.address, label=args.label,
                                parallel="serial" if args.serial else None,
                                retry_failed=True if args.retry_failed else None)
        out = build_dataset(cfg, progress=not args.no_progress)
    except DataError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    print(f"dataset: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
