"""Run and resume Ray Tune studies of the pVAE or the permeability surrogate; ``run`` and ``resume``.

    python -m tuning run --config configs/tune_smoke.yaml             # pVAE (model: pvae, the default)
    python -m tuning run --config configs/tune_surrogate_smoke.yaml   # CNN surrogate (model: surrogate)
    python -m tuning resume runs/tune_smoke/smoke        # after a killed driver: Tuner.restore

The study config's ``model`` picks the config class and trainer of the trials (tuning.config.MODELS);
everything else (searcher, ASHA, checkpoints, MLflow runs, resume, ablation) is the same code.

A study folder (``storage_path/name``, the Tune experiment) holds Tune's state and checkpoints,
``tuning_study.json`` (the study config, the resolved base training config and the MLflow ids, so
``resume`` needs nothing else) and ``summary.csv`` (one row per trial) at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.cli import failed
from tuning import tracking
from tuning.config import StudyConfig, load_study_config, model_spec

STATE_FILE = "tuning_study.json"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class StudyHandle:
    """What a finished (or resumed) study returns."""
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    results: object  # ray.tune.ResultGrid
    summary: "object"  # pandas.DataFrame, one row per trial


# --- preparation ---------------------------------------------------------------------------
def ensure_dataset(cfg: StudyConfig) -> Path:
    """The dataset folder of the study, built from ``build_config`` when it is missing."""
    root = Path(cfg.dataset).resolve()
    if (root / "dataset.yaml").is_file() and (root / "properties.csv").is_file():
        return root
    if not cfg.build_config:
        raise FileNotFoundError(f"{root}: no dataset (dataset.yaml + properties.csv); build it with "
                                "`python -m data_pipeline build --config ...` or set build_config in the study config")
    from data_pipeline.build import build_dataset, load_build_config

    print(f"building the dataset {root} from {cfg.build_config} ...", flush=True)
    return Path(build_dataset(load_build_config(cfg.build_config, out=str(root)))).resolve()


def base_training_config(cfg: StudyConfig, dataset_dir: Path) -> dict:
    """The fixed training config of every trial: train_config + train, fitted to the dataset (dims,
    input_size, the target columns it has: ``properties`` of the pVAE, ``components`` of the
    surrogate) and to the trial's resources (device, torch threads). Checked by building the
    model's config."""
    from data_pipeline.io import read_dataset_meta

    spec = cfg.spec
    base = cfg.base_training_dict()
    meta = read_dataset_meta(dataset_dir)
    dims, shape = int(meta["dims"]), [int(s) for s in meta["shape"]]
    if "dims" not in cfg.train:
        base["dims"] = dims
    if "input_size" not in cfg.train:
        base["input_size"] = shape[0]
    targets = spec.targets_field
    if targets not in cfg.train:
        from data_pipeline.dataset import labeled_table

        columns = set(labeled_table(dataset_dir).columns)
        props = base.get(targets) or spec.default_targets(base["dims"])
        base[targets] = [p for p in props if p in columns]
    if cfg.gpu == 0 and base.get("device", "auto") == "auto":
        base["device"] = "cpu"
    if not base.get("num_threads"):
        base["num_threads"] = max(1, int(cfg.cpu))  # torch threads = the trial's CPU share
    # every sampled key must make a valid config: check the fixed part now, before Ray starts
    return spec.make_config(base).to_dict()


def ensure_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Start (local) or connect to Ray unless already initialized; True when this call started it.

    A cluster only when one is named (``address`` / ``ray_address`` / ``--address``, or
    ``RAY_ADDRESS``, which a Ray job sets); otherwise a fresh local Ray (``address="local"``), whatever
    Ray's ``ray_current_cluster`` marker says (a killed ``ray start`` head leaves it behind)."""
    import ray

    if ray.is_initialized():
        return False
    # trial workers import models/, tuning/, data_pipeline/ through the editable install (pyproject.toml)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's driver otherwise replaces builtins.print once worker logs arrive (tqdm_ray), and numba
    # then fails to compile functions that print, e.g. at `import porespy` in the dataset build
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=True)
    if address is None and not os.environ.get("RAY_ADDRESS"):
        address = "local"
    if address == "local":
        kwargs["num_cpus"] = num_cpus
    ray.init(address=address, **kwargs)
    return True


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None):
    """Ray for the length of a study: :func:`ensure_ray` on entry; on exit, a Ray it started is shut
    down (one already running, e.g. a test's or a cluster job's, is left as it was)."""
    started = ensure_ray(address, num_cpus)
    try:
        yield
    finally:
        if started:
            import ray
            ray.shutdown()


# --- what the nodes of a cluster share -----------------------------------------------------
#: The largest node-local dataset a study ships to its trials through Ray's object store (bytes).
SHIP_LIMIT_BYTES = 2 * 1024 ** 3


def job_working_dir() -> Path | None:
    """The working directory of the Ray job this driver runs in, None outside such a job.

    Ray unpacks a job's working directory separately on every node (at different paths, and a file
    the driver writes there exists on the driver's node only), so a path inside it is node-local."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        working_dir = ray.get_runtime_context().runtime_env.working_dir()
    except Exception:  # a runtime env without working_dir support: not a job's working directory
        return None
    return Path.cwd().resolve() if working_dir else None  # a job's driver starts in its working dir


def node_local(path: str, job_dir: Path | None) -> bool:
    """``path`` (relative paths: to the current directory) lies inside the job's working directory."""
    if job_dir is None or "://" in str(path):
        return False
    p = Path(path).resolve()
    return p == job_dir or job_dir in p.parents


def _alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def check_storage(storage_path: str) -> None:
    """Stop at once (ValueError naming ``storage_path``) when Ray Tune's storage is node-local on a
    multi-node cluster: trials on other nodes could not write their checkpoints where the driver,
    a retry or ``resume`` reads them (Ray Tune requires shared storage there)."""
    job_dir = job_working_dir()
    if not node_local(storage_path, job_dir):
        return
    n = _alive_nodes()
    if n > 1:
        raise ValueError(
            f"storage_path {storage_path!r} ({Path(storage_path).resolve()}) lies inside this Ray job's working "
            f"directory, which Ray unpacks separately on each of the cluster's {n} nodes. Ray Tune writes every "
            "trial's checkpoints under storage_path, so on a multi-node cluster it must be shared storage: a folder "
            "mounted at the same path on every node or an object store, e.g. --storage-path /mnt/shared/pvae/runs "
            "or --storage-path s3://bucket/pvae/runs. The dataset needs no shared storage (a dataset inside the "
            "working directory is shipped to the trials through Ray's object store); see cluster/README.md")


def ship_dataset(dataset_dir: str, limit: int = SHIP_LIMIT_BYTES) -> dict | None:
    """Put a node-local dataset (inside the job's working directory) into Ray's object store for the
    trials on other nodes; None when the dataset is not node-local (trials read ``dataset_dir``).

    Returns ``{"ref": [ObjectRef], "node": the driver's node id, "key": content hash}`` (the ref sits in a
    list so that ``tune.with_parameters`` passes it on unresolved: only trials off the driver's node
    fetch it). A node-local dataset larger than ``limit`` bytes stops the study (ValueError naming
    ``dataset`` and shared storage)."""
    import ray

    from data_pipeline.transfer import dataset_size, pack_dataset

    job_dir = job_working_dir()
    if not node_local(dataset_dir, job_dir):
        return None
    size = dataset_size(dataset_dir)
    if size > limit:
        raise ValueError(
            f"dataset {dataset_dir} ({size / 1e9:.2f} GB) lies inside this Ray job's working directory, which exists "
            f"on the driver's node only, and is larger than the {limit / 1e9:.2f} GB a study ships to its trials "
            "through Ray's object store: put it on shared storage mounted at the same path on every node and pass "
            "--dataset /mnt/shared/pvae/data (with --storage-path on shared storage too); see cluster/README.md")
    packed = pack_dataset(dataset_dir)
    print(f"dataset {dataset_dir} is node-local (inside the job's working directory): shipped to trials on other "
          f"nodes through Ray's object store ({len(packed['files'])} files, {size / 1e6:.1f} MB, key {packed['key']})",
          flush=True)
    return {"ref": [ray.put(packed)], "node": ray.get_runtime_context().get_node_id(), "key": packed["key"]}


def make_trainable(state: dict, shipped: dict | None = None):
    """The trainable with its fixed arguments and resources (the same for run and resume);
    ``shipped``: the dataset in the object store (:func:`ship_dataset`) for trials off the driver's node."""
    from ray import tune

    from tuning.trainable import train_trial

    study = state["study"]
    model = study.get("model", "pvae")  # studies started before model: existed are pVAE studies
    resources = {"cpu": float(study["cpu"]), "gpu": float(study["gpu"])}
    fn = tune.with_parameters(train_trial, dataset_dir=state["dataset_dir"], base=state["base"],
                              log_figures=bool(study["log_figures"]), model=model, shipped=shipped)
    fn.__name__ = f"train_{model}"  # Ray's trial names: train_pvae_<id>, train_surrogate_<id>
    return tune.with_resources(fn, resources)


def make_search(cfg: StudyConfig, param_space: dict):
    """Search algorithm (seeded, concurrency-limited) and scheduler of a study."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.sample import Domain

    has_domain = any(isinstance(v, Domain) for v in param_space.values())
    if cfg.search == "hyperopt" and has_domain:
        from ray.tune.search.hyperopt import HyperOptSearch

        search = ConcurrencyLimiter(HyperOptSearch(random_state_seed=cfg.seed), max_concurrent=cfg.max_concurrent)
    else:
        search = BasicVariantGenerator(max_concurrent=cfg.max_concurrent, random_state=cfg.seed)
    if cfg.scheduler == "asha":
        max_t = max(int(_max_epochs(cfg)), 1)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                                  grace_period=min(cfg.grace_period, max_t), reduction_factor=cfg.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    return search, scheduler


def _max_epochs(cfg: StudyConfig) -> int:
    from tuning.config import parse_distribution

    spec = cfg.search_space.get("epochs")
    if spec is None:
        return int(cfg.train.get("epochs", cfg.spec.config_class()().epochs if not cfg.train_config else
                                  cfg.base_training_dict()["epochs"]))
    name, args = parse_distribution("epochs", spec)
    return int(max(args if name in (None, "choice", "grid") else args[:2]))


# --- state file ----------------------------------------------------------------------------
def _write_state(path: str, state: dict) -> None:
    text = json.dumps(state, indent=2, default=str)
    if "://" in path:
        import pyarrow.fs

        fs, p = pyarrow.fs.FileSystem.from_uri(path)
        fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(p) as f:
            f.write(text.encode())
        return
    from data_pipeline.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_state(experiment_path: str) -> dict:
    """The ``tuning_study.json`` of a study folder (raises naming the path when missing)."""
    path = _join(experiment_path, STATE_FILE)
    if "://" in path:
        import pyarrow.fs

        fs, p = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_input_stream(p) as f:
            return json.loads(f.read().decode())
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: not a study folder of `python -m tuning run` (no {STATE_FILE})")
    return json.loads(Path(path).read_text())


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name if "://" in base else str(Path(base) / name)


# --- run / resume ----------------------------------------------------------------------------
def prepare_study(cfg: StudyConfig, tracking_uri: str | None = None, param_space: dict | None = None,
                  kind: str = "study") -> dict:
    """Validate everything, build the dataset if needed, open MLflow; returns the study state."""
    from ray import tune

    param_space = cfg.param_space() if param_space is None else param_space
    dataset_dir = ensure_dataset(cfg)
    base = base_training_config(cfg, dataset_dir)
    cfg.spec.make_config({**base, **_probe(param_space)})  # one sampled point must make a valid config
    experiment_path = cfg.experiment_path
    if tune.Tuner.can_restore(experiment_path):
        raise FileExistsError(f"{experiment_path} already holds a study: continue it with "
                              f"`python -m tuning resume {experiment_path}`, or set another name (--name)")
    uri = tracking.resolve_tracking_uri(cfg.tracking_uri, cfg.storage_path, explicit=tracking_uri)
    exp_id = tracking.get_or_create_experiment(uri, cfg.experiment_name)
    tags = {**tracking.dataset_tags(dataset_dir), "git_commit": tracking.git_commit(), "kind": kind,
            "model": cfg.model}
    study_params = {k: v for k, v in cfg.to_dict().items() if k not in ("train", "search_space")}
    study_params.update({f"space.{k}": v for k, v in cfg.search_space.items()})
    study_params.update({f"train.{k}": v for k, v in cfg.train.items()})
    parent = tracking.start_study_run(uri, exp_id, experiment_path, run_name=cfg.name, params=study_params, tags=tags)
    return {"study": cfg.to_dict(), "kind": kind, "dataset_dir": str(dataset_dir), "base": base,
            "tracking_uri": uri, "experiment_id": exp_id, "parent_run_id": parent, "tags": tags,
            "experiment_path": experiment_path}


def _probe(param_space: dict) -> dict:
    """One point of the search space (a sample of each distribution, the first grid value)."""
    from ray.tune.search.sample import Domain

    point = {}
    for k, v in param_space.items():
        if isinstance(v, Domain):
            v = v.sample()
        elif isinstance(v, dict) and "grid_search" in v:
            v = v["grid_search"][0]
        point[k] = v.item() if hasattr(v, "item") else v
    return point


def run_study(cfg: StudyConfig, tracking_uri: str | None = None, param_space: dict | None = None,
              kind: str = "study", num_samples: int | None = None, scheduler: bool = True) -> StudyHandle:
    """Run a study end to end and return its results (ResultGrid) and per-trial summary."""
    from ray import tune

    param_space = cfg.param_space() if param_space is None else param_space
    with ray_session(cfg.ray_address):  # before the build: it labels on this Ray (its cluster's nodes)
        check_storage(cfg.storage_path)  # at once, before anything is built or trained
        state = prepare_study(cfg, tracking_uri, param_space, kind)
        shipped = ship_dataset(state["dataset_dir"])
        search, sched = make_search(cfg, param_space)
        if not scheduler:
            from ray.tune.schedulers import FIFOScheduler
            sched = FIFOScheduler()
        callback = tracking.MLflowTrialCallback(
            state["tracking_uri"], state["experiment_id"], state["parent_run_id"], state["base"],
            cfg.metric, cfg.mode, state["tags"], log_figures=cfg.log_figures, model=cfg.model)
        tuner = tune.Tuner(
            make_trainable(state, shipped),
            param_space=param_space,
            tune_config=tune.TuneConfig(metric=cfg.metric, mode=cfg.mode, search_alg=search, scheduler=sched,
                                        num_samples=num_samples or cfg.num_samples,
                                        reuse_actors=True),  # later trials skip process start + imports
            run_config=tune.RunConfig(
                name=cfg.name, storage_path=_storage(cfg.storage_path), callbacks=[callback], verbose=1,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.keep_checkpoints,
                                                        checkpoint_score_attribute=cfg.metric,
                                                        checkpoint_score_order=cfg.mode),
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures)))
        _write_state(_join(state["experiment_path"], STATE_FILE), state)
        t0 = time.time()
        results = tuner.fit()
        return _finish(state, results, time.time() - t0)


def resume_study(experiment_path: str, tracking_uri: str | None = None, restart_errored: bool = False) -> StudyHandle:
    """Continue an interrupted study (Tuner.restore): finished trials stay as they are, unfinished
    ones continue from their last checkpoint, the searcher goes on where it stopped."""
    from ray import tune

    experiment_path = experiment_path if "://" in experiment_path else str(Path(experiment_path).resolve())
    state = read_state(experiment_path)
    if not tune.Tuner.can_restore(experiment_path):
        raise FileNotFoundError(f"{experiment_path}: no Tune experiment state to resume (tuner.pkl missing)")
    if tracking_uri and tracking_uri != state["tracking_uri"]:
        print(f"note: this study logs to {state['tracking_uri']} (recorded at start); --tracking-uri ignored",
              file=sys.stderr)
    cfg = StudyConfig.from_dict(state["study"], source=_join(experiment_path, STATE_FILE))
    if not Path(state["dataset_dir"], "dataset.yaml").is_file():
        raise FileNotFoundError(f"{state['dataset_dir']}: the study's dataset is gone")
    tracking.client(state["tracking_uri"]).update_run(state["parent_run_id"], status="RUNNING")
    with ray_session(cfg.ray_address):
        check_storage(experiment_path)
        tuner = tune.Tuner.restore(experiment_path, trainable=make_trainable(state, ship_dataset(state["dataset_dir"])),
                                   resume_unfinished=True,
                                   resume_errored=False, restart_errored=restart_errored)
        t0 = time.time()
        results = tuner.fit()
        return _finish(state, results, time.time() - t0)


def _storage(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def _finish(state: dict, results, wall_s: float) -> StudyHandle:
    """Summary table (printed, written, logged to the parent run) and the parent run's end."""
    study = state["study"]
    summary = summarize(results, study["metric"], study["mode"], base=state["base"],
                        params=summary_params(study))
    c = tracking.client(state["tracking_uri"])
    run_id = state["parent_run_id"]
    if "://" not in state["experiment_path"]:
        out = Path(state["experiment_path"]) / "summary.csv"
        from data_pipeline.io import atomic_path
        with atomic_path(out) as tmp:
            summary.to_csv(tmp, index=False)
        c.log_artifact(run_id, str(out))
    ok = summary[summary["status"] != "ERROR"]
    value = ok[f"best_{study['metric']}"].dropna()
    if len(value):
        best = value.min() if study["mode"] == "min" else value.max()
        c.log_metric(run_id, f"best_{study['metric']}", float(best))
    c.log_metric(run_id, "n_trials", len(summary))
    c.log_metric(run_id, "n_errored", int((summary["status"] == "ERROR").sum()))
    c.log_metric(run_id, "study_wall_s", wall_s)
    c.set_terminated(run_id, status="FINISHED")
    print_summary(summary, state)
    return StudyHandle(state["experiment_path"], state["tracking_uri"], state["experiment_id"], run_id,
                       results, summary)


def summary_params(study: dict) -> list[str]:
    """Hyperparameter columns of a study's summary: the model's core ones, then the other searched keys."""
    core = list(model_spec(study.get("model", "pvae")).core_params)
    return core + [k for k in study.get("search_space", {}) if k not in core]


def summarize(results, metric: str, mode: str, base: dict | None = None, params=None):
    """One row per trial: id, status, the hyperparameters ``params`` (default: the pVAE's core ones;
    sampled, else the fixed value from ``base``), epochs, best metric, test metrics, error reason."""
    import pandas as pd

    rows = []
    analysis = getattr(results, "_experiment_analysis", None)  # trial ids of trials that never reported
    ids = {t.path: t.trial_id for t in getattr(analysis, "trials", [])}
    for r in results:
        m = r.metrics or {}
        cfg = r.config or {}
        row = {"trial_id": m.get("trial_id") or ids.get(r.path, ""),
               "status": "ERROR" if r.error else ("TERMINATED" if m.get("completed") else "STOPPED")}
        for k in (model_spec("pvae").core_params if params is None else params):
            row[k] = cfg.get(k, (base or {}).get(k))
        hist = r.metrics_dataframe
        best = None
        if hist is not None and metric in getattr(hist, "columns", []):
            col = hist[metric].dropna()
            if len(col):
                best = float(col.min() if mode == "min" else col.max())
        row["epochs"] = int(m.get("epoch", 0) or 0)
        row[f"best_{metric}"] = best
        for k in ("test_recon_bce", "test_mse_norm", "test_r2_mean"):  # pVAE, surrogate, both
            row[k] = m.get(k)
        row["error"] = tracking.reason_from_traceback(str(r.error)) if r.error else ""
        row["path"] = r.path
        rows.append(row)
    return pd.DataFrame(rows)


def print_summary(summary, state: dict) -> None:
    cols = ["trial_id", "status", *summary_params(state["study"]), "epochs", f"best_{state['study']['metric']}", "error"]
    with_cols = [c for c in cols if c in summary.columns]
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(summary[with_cols].to_string(index=False))
    n_err = int((summary["status"] == "ERROR").sum())
    print(f"\n{len(summary)} trials, {n_err} errored; study folder {state['experiment_path']}")
    print(f"MLflow: {state['tracking_uri']} (experiment id {state['experiment_id']}, parent run "
          f"{state['parent_run_id']})")
    if state["tracking_uri"].startswith("sqlite:"):
        print(f"  open the UI: mlflow ui --backend-store-uri {state['tracking_uri']}   (http://127.0.0.1:5000)")


# --- verbs ---------------------------------------------------------------------------------
def study_parser(verb: str, description: str, config_help: str) -> argparse.ArgumentParser:
    """The parser of a verb that reads a study YAML (`run`, `ablate`): --config and the overrides
    they share (each overrides the study YAML's field)."""
    p = argparse.ArgumentParser(prog=f"python -m tuning {verb}", description=description)
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--name", help="experiment name (folder under storage_path); overrides the YAML")
    p.add_argument("--storage-path", help="local folder, shared filesystem or s3:// URI; overrides the YAML")
    p.add_argument("--dataset", help="dataset folder; overrides the YAML (built from build_config if missing)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, the YAML, "
                                          "else sqlite:///<storage_path>/mlflow.db)")
    p.add_argument("--address", help="Ray address ('auto' = running cluster); default: local Ray")
    return p


def study_main(parser: argparse.ArgumentParser, argv: list[str] | None, run) -> int:
    """A `run`/`ablate` command line: its study config (the YAML with the command-line overrides) and
    ``run(cfg, args)`` -> exit status; bad input (config, dataset, storage) -> one line on stderr, 2."""
    args = parser.parse_args(argv)
    try:
        cfg = load_study_config(args.config, name=args.name, storage_path=args.storage_path, dataset=args.dataset,
                                ray_address=args.address, num_samples=getattr(args, "num_samples", None))
        return run(cfg, args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        return failed(parser.prog, exc)


def build_run_parser() -> argparse.ArgumentParser:
    p = study_parser("run", (
        "Run a Ray Tune study of the pVAE or the permeability surrogate (model:, search space, searcher, ASHA, resources, storage from the YAML); "
        "one MLflow run per trial under a parent run per study."), "study YAML (e.g. configs/tune_smoke.yaml)")
    p.add_argument("--num-samples", type=int, help="number of trials; overrides the YAML")
    return p


def main_run(argv: list[str] | None = None) -> int:
    def run(cfg: StudyConfig, args) -> int:
        handle = run_study(cfg, tracking_uri=args.tracking_uri)
        return 0 if (handle.summary["status"] != "ERROR").any() else 1
    return study_main(build_run_parser(), argv, run)


def build_resume_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning resume", description=(
        "Resume an interrupted study (killed driver, lost head node) from its folder with Tuner.restore: "
        "finished trials are kept, unfinished ones continue from their last checkpoint."))
    p.add_argument("path", help="study folder (storage_path/name), as printed by `python -m tuning run`")
    p.add_argument("--restart-errored", action="store_true", help="also rerun errored trials from scratch")
    p.add_argument("--tracking-uri", help="ignored when different from the study's (recorded at start)")
    return p


def main_resume(argv: list[str] | None = None) -> int:
    args = build_resume_parser().parse_args(argv)
    try:
        handle = resume_study(args.path, tracking_uri=args.tracking_uri, restart_errored=args.restart_errored)
    except (ValueError, FileNotFoundError) as exc:
        return failed("python -m tuning resume", exc)
    return 0 if (handle.summary["status"] != "ERROR").any() else 1


main = main_run
