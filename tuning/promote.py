"""Promote the best trial of a study to the MLflow Model Registry; the ``promote`` verb.

    python -m tuning promote --study runs/tune_smoke/smoke            # best trial by the study's metric
    python -m tuning promote --run-id <MLflow run id of a trial>      # or a chosen trial
    # -> registered model "pvae" (--name), new version, alias "champion" (--alias)

The model is a pyfunc (:mod:`tuning.pyfunc`) whose artifact is the trial's best checkpoint, weights
only (``model.safetensors``, ``config.json``, ``norm.json``; the optimizer state is left out), with an
input/output signature and the code it needs, so ``mlflow.pyfunc.load_model("models:/pvae@champion")``
works from another process and another working directory. It is logged into the trial's own MLflow run.

Only pVAE studies are promoted. A study of the permeability surrogate (``model: surrogate``) is
refused with a message naming its best checkpoint: the surrogate is not a pVAE (no latent space for
``inverse design``), and its consumers take a checkpoint folder, not a registry URI
(``models.surrogate.load_surrogate(FOLDER)``, ``python -m models.surrogate predict``, the ``surrogate:``
labeler of ``python -m data_pipeline build``). Registering it under ``pvae`` would put a model that
cannot decode behind ``models:/pvae@champion``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from core.tracking import using_store
from tuning import tracking
from tuning.config import model_spec

ROOT = Path(__file__).resolve().parents[1]
#: Files of a checkpoint folder that make the model (no optimizer / RNG state).
MODEL_FILES = ("model.safetensors", "config.json", "norm.json", "metrics.json")
#: Code shipped inside the MLflow model (imported by tuning.pyfunc when it loads).
CODE_PATHS = ("models", "tuning", "data_pipeline")


def best_trial_run(tracking_uri: str, experiment_id: str, parent_run_id: str, metric: str, mode: str):
    """The finished trial run of a study with the best ``best_<metric>`` that has a checkpoint."""
    runs = [r for r in tracking.trial_runs(tracking_uri, experiment_id, parent_run_id)
            if r.info.status == "FINISHED" and f"best_{metric}" in r.data.metrics
            and ("best_checkpoint" in r.data.tags or "last_checkpoint" in r.data.tags)]
    if not runs:
        raise ValueError(f"no finished trial with a checkpoint under parent run {parent_run_id} in {tracking_uri}")
    key = lambda r: r.data.metrics[f"best_{metric}"]  # noqa: E731
    return min(runs, key=key) if mode == "min" else max(runs, key=key)


def fetch_checkpoint(uri: str, dest: Path) -> Path:
    """Copy the model files of a trial checkpoint (local path or ``<scheme>://path``) into ``dest``."""
    from ray import tune

    if "://" in uri:
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        src = Path(tune.Checkpoint(path, filesystem=fs).to_directory(str(dest.parent / "download")))
    else:
        src = Path(uri)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: checkpoint folder is gone (deleted by keep_checkpoints or moved?)")
    folder = src / "best" if (src / "best").is_dir() else src / "last"
    dest.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, dest / name)
    if not (dest / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: no model.safetensors; not a pVAE checkpoint")
    return dest


class NotPromotable(ValueError):
    """The study or run trained a model that ``promote`` does not register (the surrogate)."""


def check_promotable(model: str, checkpoint: str | None = None) -> None:
    """Raise NotPromotable for a model without a registered name (ModelSpec.registered_name None)."""
    if model_spec(model).registered_name is None:
        where = f" Its best checkpoint: {checkpoint.rstrip('/')}/best." if checkpoint else ""
        raise NotPromotable(
            f"a {model!r} study is not promoted to the MLflow Model Registry (only pVAE studies are: "
            f"inverse design needs a pVAE behind models:/pvae@champion).{where} Use the checkpoint folder "
            "directly: models.surrogate.load_surrogate(FOLDER), `python -m models.surrogate predict`, or "
            "`surrogate: FOLDER` in a data_pipeline build config.")


def promote(tracking_uri: str, run_id: str, name: str = "pvae", alias: str = "champion",
            check: bool = True) -> dict:
    """Log the checkpoint of trial run ``run_id`` as a pyfunc model, register it, set the alias.

    Returns a dict with name, version, alias, model_uri, run_id, checkpoint, max_abs_diff (the largest
    difference between the registered model and the checkpoint on seeded test volumes).
    """


    c = tracking.client(tracking_uri)
    run = c.get_run(run_id)
    uri = run.data.tags.get("best_checkpoint") or run.data.tags.get("last_checkpoint")
    if not uri:
        raise ValueError(f"MLflow run {run_id} has no checkpoint tag (best_checkpoint); is it a trial of a study?")
    check_promotable(run.data.tags.get("model", "pvae"), uri)
    with using_store(tracking_uri):
        return _log_and_register(c, run, run_id, uri, name, alias, check)


def _log_and_register(c, run, run_id: str, uri: str, name: str, alias: str, check: bool) -> dict:
    import mlflow
    import numpy as np

    from models.checkpoint import load_model
    from tuning.pyfunc import signature

    # MLflow 3 files a logged model under the active experiment: the trial's, not Default (./mlruns)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = fetch_checkpoint(uri, Path(tmp) / "checkpoint")
        import json
        if "latent_dim" not in json.loads((ckpt / "config.json").read_text()):  # a run without the model tag
            check_promotable("surrogate", uri)
        model, cfg, norm = load_model(ckpt)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(ROOT / "tuning" / "pyfunc_model.py"), artifacts={"checkpoint": str(ckpt)},
                code_paths=[str(ROOT / p) for p in CODE_PATHS], signature=signature(cfg),
                pip_requirements=_requirements(), registered_model_name=name,
                metadata={"properties": list(cfg.properties), "dims": cfg.dims, "input_size": cfg.input_size,
                          "latent_dim": cfg.latent_dim, "source_checkpoint": uri})
        version = str(info.registered_model_version)
        c.set_registered_model_alias(name, alias, version)
        for k, v in {"ray.trial_id": run.data.tags.get(tracking.TRIAL_TAG, ""), "source_run_id": run_id,
                     "checkpoint": uri, "dataset_hash": run.data.tags.get("dataset_hash", "")}.items():
            c.set_model_version_tag(name, version, k, v)
        result = {"name": name, "version": version, "alias": alias, "model_uri": f"models:/{name}@{alias}",
                  "run_id": run_id, "checkpoint": uri}
        if check:  # the registered model must reproduce the checkpoint's outputs
            loaded = mlflow.pyfunc.load_model(result["model_uri"])
            x = (np.random.default_rng(0).random((2, 1) + (cfg.input_size,) * cfg.dims) < 0.5).astype(np.float32)
            got = loaded.predict(x)
            import torch
            with torch.no_grad():
                mu, _ = model.encode(torch.from_numpy(x))
                want = norm.inverse(model.predict_properties(mu).numpy())
            result["max_abs_diff"] = float(np.max(np.abs(got[list(cfg.properties)].to_numpy() - want)))
    return result


def _requirements() -> list[str]:
    """Pinned runtime requirements of the model (from requirements.txt; torch CPU/CUDA as installed)."""
    keep = ("torch", "numpy", "pandas", "pyyaml", "safetensors", "mlflow", "scipy", "matplotlib", "tifffile")
    lines = []
    req = ROOT / "requirements.txt"
    if req.is_file():
        for line in req.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and line.split("==")[0].split("[")[0].lower() in keep:
                lines.append(line)
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning promote", description=(
        "Register the best trial of a study (by the study's metric) or a given trial run as an MLflow model "
        "and point an alias at it (models:/<name>@<alias>). pVAE studies only: a surrogate study (model: surrogate) "
        "is refused with the path of its best checkpoint folder."))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="study folder (storage_path/name) of `python -m tuning run`")
    src.add_argument("--config", help="study YAML (its storage_path/name is the study folder)")
    src.add_argument("--run-id", help="MLflow run id of a trial to promote instead of the best one")
    p.add_argument("--name", default="pvae", help="registered model name (default: pvae)")
    p.add_argument("--alias", default="champion", help="alias to set on the new version (default: champion)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's, $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///runs/tune/mlflow.db)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.run_id:
            uri = tracking.resolve_tracking_uri(None, "runs/tune", explicit=args.tracking_uri)
            run_id = args.run_id
        else:
            from tuning.study import read_state

            if args.config:
                from tuning.config import load_study_config
                path = load_study_config(args.config).experiment_path
            else:
                path = args.study if "://" in args.study else str(Path(args.study).resolve())
            state = read_state(path)
            uri = args.tracking_uri or state["tracking_uri"]
            run = best_trial_run(uri, state["experiment_id"], state["parent_run_id"],
                                 state["study"]["metric"], state["study"]["mode"])
            check_promotable(state["study"].get("model", "pvae"),  # names the best trial's checkpoint
                             run.data.tags.get("best_checkpoint") or run.data.tags.get("last_checkpoint"))
            run_id = run.info.run_id
            print(f"best trial {run.data.tags.get(tracking.TRIAL_TAG)} (run {run_id}): "
                  f"best_{state['study']['metric']} = {run.data.metrics['best_' + state['study']['metric']]:.5g}")
        result = promote(uri, run_id, name=args.name, alias=args.alias)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m tuning promote: {exc}", file=sys.stderr)
        return 2
    print(f"registered {result['name']} version {result['version']} as {result['model_uri']} "
          f"(run {result['run_id']}; checkpoint {result['checkpoint']}; "
          f"max |registered - checkpoint| = {result.get('max_abs_diff', float('nan')):.2e})")
    return 0
