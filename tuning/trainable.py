"""The Ray Tune trainable: the epoch loop of a model's trainer, one ``tune.report`` per epoch.

One function, :func:`train_trial`, trains every model of ``tuning.config.MODELS``: the model name
picks the config class (``PVAEConfig`` / ``SurrogateConfig``) and the trainer class
(``models.train.Trainer`` / ``models.surrogate.SurrogateTrainer``, the same interface), so metrics,
checkpoints, MLflow logging, ASHA, retries, resume and ablations work alike for both.

A Tune checkpoint of a trial is a folder::

    last/    the trainer state after this epoch (weights, config, normalization, optimizer, RNGs)
    best/    the lowest-val_loss weights so far (same layout; what ``promote`` registers)
    eval/    only in the trial's final checkpoint: test metrics and figures of the best weights

A retried trial (FailureConfig) or a resumed study (Tuner.restore) continues from ``last/`` with
``<Trainer>.resume``, which also picks up ``best/``. Only ``tune.report``, ``tune.get_checkpoint`` and
``tune.Checkpoint`` are used here (``ray.train.*`` calls fail inside Tune trainables in Ray 2.6x).
A loss that turns non-finite raises FloatingPointError from the trainer: the trial ends as errored
with that message and the study goes on.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import ray
from ray import tune


def local_dataset(dataset_dir: str, shipped: dict | None, node_id: str) -> tuple[str, str]:
    """The dataset folder this trial reads on its node and where it came from (``path`` | ``object_store``).

    ``shipped`` (tuning.study.ship_dataset): the dataset is node-local to the driver's node; a trial
    elsewhere fetches it from Ray's object store and unpacks it once per node into
    ``<tmp>/pvae-datasets/<content hash>``. Without it ``dataset_dir`` must be visible here (shared storage)."""
    if shipped is not None and node_id != shipped["node"]:
        from data_pipeline.transfer import unpack_dataset

        parent = Path(tempfile.gettempdir()) / "pvae-datasets"
        if not (parent / shipped["key"] / "dataset.yaml").is_file():
            return str(unpack_dataset(ray.get(shipped["ref"][0]), parent)), "object_store"
        return str(parent / shipped["key"]), "object_store"
    if not (Path(dataset_dir) / "dataset.yaml").is_file():
        raise FileNotFoundError(
            f"dataset {dataset_dir}: not found on this trial's node ({node_id}); the study's `dataset` must be on "
            "shared storage mounted at the same path on every node (or inside the job's working directory, "
            "then the study ships it to the trials); see cluster/README.md")
    return dataset_dir, "path"


def train_trial(config: dict, *, dataset_dir: str, base: dict, log_figures: bool = True,
                model: str = "pvae", shipped: dict | None = None) -> None:
    """Train one trial of ``model`` (a key of tuning.config.MODELS); ``config`` holds the sampled
    values, ``base`` the fixed training config (fields of the model's config class); ``shipped`` the
    dataset in Ray's object store for trials off the driver's node (see :func:`local_dataset`)."""
    t_start = time.perf_counter()
    import torch

    from tuning.config import model_spec

    spec = model_spec(model)
    Trainer = spec.trainer_class()
    cfg = spec.make_config({**base, **config})
    node_id = ray.get_runtime_context().get_node_id()
    dataset_dir, dataset_source = local_dataset(dataset_dir, shipped, node_id)
    work = Path(tempfile.mkdtemp(prefix=f"{model}-trial-"))
    best_local = work / "best"  # the best weights this trial has seen, copied into every checkpoint
    try:
        restored = tune.get_checkpoint()
        if restored is not None:
            with restored.as_directory() as d:
                if (Path(d) / "best").is_dir():
                    shutil.copytree(Path(d) / "best", best_local)
                trainer = Trainer.resume(Path(d) / "last", dataset_dir)
            # resume reads the config saved in the checkpoint; the trial's config must match
            if trainer.cfg.to_dict() != cfg.to_dict():
                raise RuntimeError("checkpoint config differs from the trial config; refusing to resume")
        else:
            trainer = Trainer(cfg, dataset_dir)
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        setup_s = time.perf_counter() - t_start  # imports, dataset load, model build

        while not trainer.should_stop():
            metrics = trainer.train_epoch()  # FloatingPointError on a non-finite loss -> trial errors
            finished = trainer.should_stop()
            with tempfile.TemporaryDirectory(dir=work) as d:
                d = Path(d)
                trainer.save_checkpoint(d / "last")
                if trainer.is_best():
                    trainer.save_checkpoint(best_local)
                if best_local.is_dir():
                    shutil.copytree(best_local, d / "best")
                report = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
                report["n_train"] = len(trainer.train_set)
                report["ray_node_id"] = node_id  # where this epoch ran (a retried trial may move)
                report["dataset_source"] = dataset_source  # "path" or "object_store" (shipped to this node)
                if setup_s is not None:
                    report["trial_setup_s"], setup_s = setup_s, None
                if finished:
                    t_eval = time.perf_counter()
                    report.update(_final_evaluation(trainer, d / "eval", log_figures))
                    report["final_eval_s"] = time.perf_counter() - t_eval
                    report["completed"] = 1
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(d)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _final_evaluation(trainer, out_dir: Path, log_figures: bool) -> dict:
    """Test metrics of the best weights (``test_*``), figures written to ``out_dir``."""
    trainer.load_best_weights()  # the weights of the best epoch (kept by the trainer)
    result = trainer.evaluate("test", out_dir=out_dir if log_figures else None)
    return {f"test_{k}": float(v) for k, v in _flat_numbers(result).items()}


def _flat_numbers(d: dict, prefix: str = "") -> dict:
    """Finite numbers of a nested metrics dict, keys joined with '_' (figures and lists dropped)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_numbers(v, key + "_"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = v
    return out
