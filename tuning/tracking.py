"""MLflow helpers of the tuning stage: tracking URI, experiment, study (parent) and trial runs.

All MLflow writes of a study happen on the Ray driver, through :class:`MLflowTrialCallback`
(a Ray Tune callback): one writer per study keeps an embedded SQLite store free of lock contention,
and only the driver needs to reach a tracking server on a cluster. Each trial gets one MLflow run,
nested under the study's parent run (tag ``mlflow.parentRunId``), found again by its Ray trial id
when a trial is retried or the study is resumed, so a trial never gets two runs. A trial run's
params are its whole training config (the study's model config: PVAEConfig or SurrogateConfig) and
its tag ``model`` says which model it trained.

Tracking URI, first match wins: an explicit ``--tracking-uri``, ``MLFLOW_TRACKING_URI`` (MLflow's own
convention), ``tracking_uri`` of the study config, else the embedded store
``sqlite:///<storage_path>/mlflow.db`` with artifacts in ``<storage_path>/mlartifacts``.
Open the UI on the embedded store with::

    mlflow ui --backend-store-uri sqlite:///runs/tune/mlflow.db     # binds 127.0.0.1:5000
"""
from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ray import tune

# the MLflow basics live in the bottom layer; re-exported for the tuning stage
from core.tracking import (EXPERIMENT_KIND, artifact_root, client,  # noqa: F401
                           get_or_create_experiment, resolve_tracking_uri)

TRIAL_TAG = "ray.trial_id"
STUDY_TAG = "tune.experiment_path"
ROOT = Path(__file__).resolve().parents[1]
#: Ray bookkeeping keys of a result that are not worth a metric each.
_SKIP_METRICS = {"training_iteration", "timestamp", "time_total_s", "pid", "time_since_restore",
                 "iterations_since_restore", "done", "epoch", "completed", "checkpoint_dir_name"}


def git_commit() -> str:
    """Commit of the repository (``+dirty`` when the tree has changes); "unknown" outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_tags(dataset_dir: str | os.PathLike) -> dict[str, str]:
    """Tags that identify the dataset of a study: folder, id (dataset.yaml ``name`` or folder name), hash."""
    from data_pipeline.dataset import dataset_hash
    from data_pipeline.io import read_dataset_meta

    meta = read_dataset_meta(dataset_dir)
    return {"dataset": str(Path(dataset_dir).resolve()),
            "dataset_id": str(meta.get("name") or meta.get("id") or Path(dataset_dir).resolve().name),
            "dataset_hash": dataset_hash(dataset_dir)}


def start_study_run(tracking_uri: str, experiment_id: str, experiment_path: str, run_name: str,
                    params: dict, tags: dict) -> str:
    """A new parent run for a new study at ``experiment_path`` (a resumed study keeps the parent run
    saved in its state file). Never an older run with the same path: that path held a study that was
    deleted (``make demo`` removes its study folders), whose trials' checkpoints are gone, so its
    trial runs must not compete with the new study's in ``tuning promote``."""
    from mlflow.entities import Param

    c = client(tracking_uri)
    run = c.create_run(experiment_id, run_name=run_name,
                       tags={**{k: str(v) for k, v in tags.items()}, STUDY_TAG: experiment_path,
                             "mlflow.source.git.commit": tags.get("git_commit", "")})
    c.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
    return run.info.run_id


def find_trial_run(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str):
    """The MLflow run of one Ray trial of a study, or None."""
    runs = client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and "
                                       f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=2)
    return runs[0] if runs else None


def trial_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list:
    """All trial runs of a study (children of its parent run)."""
    return client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=5000)


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


class MLflowTrialCallback(tune.Callback):
    """Ray Tune callback: one MLflow run per trial, nested under the study's parent run.

    On trial start: params = the whole training config of the trial (fixed base + sampled values, as
    the study's model config: for the pVAE it includes the core params latent_dim, beta, lr,
    dataset_size, regressor_depth; for the surrogate every SurrogateConfig field), tags (Ray trial
    id, dataset id and hash, git commit, ``model``). Every result: its numeric metrics at
    ``step = epoch``, plus ``best_<metric>``, written once the epoch's checkpoint is registered
    (``on_checkpoint``) and Tune saves its experiment state (``get_state``; also at the trial's end):
    an epoch whose checkpoint was lost (node died between report and save) is logged with the value
    of the run that produced the kept checkpoint. An epoch that a resumed study runs again (killed
    driver: Tune restores its last state synced to storage, which may predate epochs already written)
    is logged once: the first written value stays, since MLflow cannot replace one step of a history
    (on restore the run's last logged step is read back from MLflow). Training resumes exactly from
    a checkpoint (optimizer, scheduler and RNG states), so the re-run reproduces that value.
    Re-reported epochs are counted in the tag ``repeated_epochs``. Every checkpoint: the tag ``best_checkpoint`` follows the
    best one; a checkpoint holding ``eval/`` (the trial's final evaluation) has its figures and
    metrics logged as artifacts. End: status FINISHED (tag ``stopped_by_scheduler`` when ASHA ended it
    early) or FAILED with the error in the tag ``error``.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, base: dict,
                 metric: str, mode: str, tags: dict, log_figures: bool = True, model: str = "pvae"):
        self.tracking_uri = tracking_uri
        self.model = model
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.base = dict(base)
        self.metric, self.mode = metric, mode
        self.tags = {k: str(v) for k, v in tags.items()}
        self.log_figures = log_figures
        self._runs: dict[str, str] = {}
        self._best: dict[str, float] = {}
        self._last_step: dict[str, int] = {}  # trial id -> last epoch logged
        self._repeated: dict[str, int] = {}  # trial id -> epochs reported again after a restore
        self._nodes: dict[str, list[str]] = {}  # trial id -> Ray node ids it ran on
        self._pending: dict[str, list] = {}
        self._reported: dict[str, dict[int, dict]] = {}  # trial id -> epoch -> metrics, checkpoint not yet saved
        self._ready: dict[str, dict[int, list]] = {}  # trial id -> epoch -> Metric list, checkpoint registered
        self._logged: dict[str, int] = {}  # trial id -> last epoch written to MLflow
        self._synced: set[str] = set()  # trial ids whose MLflow history this process has read or made
        self._client = None

    def __getstate__(self):  # pickled into tuner.pkl at the start: no live client, nothing in flight
        state = dict(self.__dict__)
        state["_client"] = None
        state["_pending"] = {}
        state["_reported"] = {}
        state["_ready"] = {}
        state["_synced"] = set()
        return state

    # --- Tune's experiment-state hooks: what a resumed study (Tuner.restore) starts from ------
    _STATE_KEYS = ("_runs", "_best", "_last_step", "_repeated", "_nodes", "_logged")

    def get_state(self) -> dict:
        """Called when Tune saves its experiment state (with every trial's registered checkpoint):
        the epochs of those checkpoints are final now, write them; then this callback's state."""
        for tid in list(self._ready):
            self._write(tid)
        return {k: getattr(self, k) for k in self._STATE_KEYS}

    def set_state(self, state: dict) -> None:
        for k in self._STATE_KEYS:
            if k in state:
                setattr(self, k, dict(state[k]))
        self._synced = set()  # the saved state may predate writes to MLflow: read them back first

    def _log_async(self, trial, run_id: str, metrics=(), tags=()) -> None:
        """log_batch off the driver's critical path (a trial waits for the driver between epochs);
        :meth:`_flush` waits for them before the run is closed."""
        ops = self.client.log_batch(run_id, metrics=list(metrics), tags=list(tags), synchronous=False)
        if ops is not None:
            self._pending.setdefault(trial.trial_id, []).append(ops)

    def _flush(self, trial) -> None:
        for ops in self._pending.pop(trial.trial_id, []):
            ops.wait()

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.tracking_uri)
        return self._client

    def trial_config(self, trial) -> dict:
        """The trial's whole training config (the model's config class: PVAEConfig, SurrogateConfig)."""
        from tuning.config import model_spec

        spec = model_spec(getattr(self, "model", "pvae"))  # callbacks pickled before model: existed
        return spec.make_config({**self.base, **trial.config}).to_dict()

    def run_id(self, trial) -> str:
        """The trial's run, created on first use (looked up by trial id after a restore)."""
        tid = trial.trial_id
        if tid in self._runs:
            if tid not in self.__dict__.setdefault("_synced", set()):  # pickled before it existed
                self._sync(tid, self._runs[tid])
            return self._runs[tid]
        found = find_trial_run(self.tracking_uri, self.experiment_id, self.parent_run_id, tid)
        if found is not None:
            run_id = found.info.run_id
            if found.info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            best = found.data.metrics.get(f"best_{self.metric}")
            if best is not None:
                self._best[tid] = best
            self._sync(tid, run_id)
        else:
            from mlflow.entities import Param

            run = self.client.create_run(self.experiment_id, run_name=str(trial), tags={
                **self.tags, "mlflow.parentRunId": self.parent_run_id, TRIAL_TAG: tid,
                "ray.trial_name": str(trial)})
            run_id = run.info.run_id
            params = self.trial_config(trial)
            self.client.log_batch(run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
            self._synced.add(tid)
        self._runs[tid] = run_id
        return run_id

    def _sync(self, tid: str, run_id: str) -> None:
        """After a restore: the epochs MLflow already holds for the trial (written after the restored
        state was saved, or without this callback's state) are not written again."""
        hist = self.client.get_metric_history(run_id, self.metric)
        if hist:
            last = max(m.step for m in hist)
            self._logged[tid] = max(self._logged.get(tid, -1), last)
            self._last_step[tid] = max(self._last_step.get(tid, -1), last)
        self._synced.add(tid)

    # --- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import RunTag

        run_id = self.run_id(trial)
        step = _step(result)
        tags = []
        tid = trial.trial_id
        reported = self._reported.setdefault(tid, {})
        if step <= self._last_step.get(tid, -1):
            # an epoch run again after a restore (its first run's checkpoint was never registered, or
            # a resumed study went back to its last saved state): the first run's values are dropped
            # unless already written (then the history keeps them, one point per epoch); counted in a tag
            self._repeated[tid] = self._repeated.get(tid, 0) + 1
            tags.append(RunTag("repeated_epochs", str(self._repeated[tid])))
            for e in [e for e in reported if e >= step]:
                del reported[e]
        reported[step] = {k: float(v) for k, v in result.items() if k not in _SKIP_METRICS and _finite_number(v)}
        self._last_step[tid] = max(step, self._last_step.get(tid, -1))
        node = result.get("ray_node_id")
        if isinstance(node, str) and node not in self._nodes.setdefault(trial.trial_id, []):
            self._nodes[trial.trial_id].append(node)  # every node the trial ran on, in order
            tags += [RunTag("ray.node_id", node), RunTag("ray.node_ids", ",".join(self._nodes[trial.trial_id]))]
            source = result.get("dataset_source")
            if isinstance(source, str):  # how the dataset reached that node: "path" | "object_store"
                tags.append(RunTag(f"dataset_source.{node}", source))
        if tags:
            self._log_async(trial, run_id, tags=tags)

    def _accept(self, tid: str, step: int, result: dict | None = None) -> None:
        """The epoch ``step`` of trial ``tid`` is kept (its checkpoint is registered, or the trial ended):
        queue its metrics (and ``best_<metric>``) for writing."""
        from mlflow.entities import Metric

        values = self._reported.get(tid, {}).pop(step, None)
        if values is None:
            if result is None:
                return
            values = {k: float(v) for k, v in result.items() if k not in _SKIP_METRICS and _finite_number(v)}
        value = values.get(self.metric)
        if value is not None:
            old = self._best.get(tid)
            if old is None or (value < old if self.mode == "min" else value > old):
                self._best[tid] = value
            values[f"best_{self.metric}"] = self._best[tid]
        now = int(time.time() * 1000)
        self._ready.setdefault(tid, {})[step] = [Metric(k, v, now, step) for k, v in values.items()]

    def _write(self, tid: str) -> None:
        """Write the kept epochs of a trial not yet in MLflow (synchronously: a snapshot of Tune's
        state that holds their checkpoints must not outlive a lost write)."""
        ready = self._ready.pop(tid, {})
        run_id = self._runs.get(tid)
        if run_id is None:
            return
        metrics = [m for e in sorted(ready) if e > self._logged.get(tid, -1) for m in ready[e]]
        for i in range(0, len(metrics), 1000):  # MLflow's log_batch limit
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])
        if ready:
            self._logged[tid] = max(self._logged.get(tid, -1), max(ready))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        from mlflow.entities import RunTag

        run_id = self.run_id(trial)
        result = trial.last_result or {}
        self._accept(trial.trial_id, _step(result), result)
        value = result.get(self.metric)
        tags = []
        if _finite_number(value) and self._best.get(trial.trial_id) == float(value):
            tags += [RunTag("best_checkpoint", checkpoint_uri(checkpoint)),
                     RunTag("best_epoch", str(result.get("epoch", "")))]
        if result.get("completed"):
            tags.append(RunTag("last_checkpoint", checkpoint_uri(checkpoint)))
        if tags:
            # synchronously: promote selects trials by these tags, and a queued write still pending
            # when the driver exits was seen lost (promote then registered the other trial)
            self.client.log_batch(run_id, tags=tags)
        if result.get("completed"):
            if self.log_figures:
                with checkpoint.as_directory() as d:
                    eval_dir = Path(d) / "eval"
                    if eval_dir.is_dir():
                        self.client.log_artifacts(run_id, str(eval_dir), artifact_path="eval")

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        result = trial.last_result or {}
        self._end(trial)
        final = getattr(trial, "checkpoint", None)
        if final is not None and result.get("completed"):
            # the final checkpoint's tag whatever the order Tune called back in (promote selects by it)
            self.client.set_tag(run_id, "last_checkpoint", checkpoint_uri(final))
        if not result.get("completed"):
            self.client.set_tag(run_id, "stopped_by_scheduler", "true")
        self.client.set_terminated(run_id, status="FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        self._end(trial)
        self.client.set_tag(run_id, "error", trial_error(trial)[:5000])
        self.client.set_terminated(run_id, status="FAILED")


    def _end(self, trial) -> None:
        """The trial is over: nothing runs again, every epoch it reported is kept; write them."""
        tid = trial.trial_id
        for step in sorted(self._reported.get(tid, {})):
            self._accept(tid, step)
        self._write(tid)
        self._flush(trial)

    def on_experiment_end(self, trials, **info):
        for tid in list(self._ready):
            self._write(tid)
        for tid in list(self._pending):  # queued asynchronous writes finish before the driver moves on
            for ops in self._pending.pop(tid, []):
                ops.wait()


def _step(result: dict) -> int:
    return int(result.get("epoch", result.get("training_iteration", 0)))


def checkpoint_uri(checkpoint) -> str:
    """A location of a Tune checkpoint that ``promote`` can open: a local path, or ``<scheme>://path``."""
    fs = checkpoint.filesystem
    kind = getattr(fs, "type_name", "local")
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


def trial_error(trial) -> str:
    """The last line of a failed trial's error (e.g. ``FloatingPointError: loss is NaN ...``)."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    if not text:
        try:
            text = str(trial.get_error())
        except Exception:
            text = "unknown error"
    return reason_from_traceback(text)


def reason_from_traceback(text: str) -> str:
    """The most specific ``Type: message`` line of a (Ray-wrapped) traceback."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and "ray." not in head.lower():
            return ln
    return lines[-1] if lines else text
