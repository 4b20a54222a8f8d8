"""A study whose driver process is killed mid-way resumes with `python -m tuning resume PATH` and
finishes with every trial exactly once (real Ray, real SQLite MLflow store, separate processes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3
N_TRIALS = 3


def _runs(uri: str, name: str):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return c, []
    return c, c.search_runs([exp.experiment_id], "tags.`ray.trial_id` != ''")


def _session_processes(sid: int) -> list[int]:
    """Processes still alive in the session the killed driver led (what it started)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout.split("\n")
    return [int(p) for p, s in (line.split() for line in out if line.strip()) if int(s) == sid]


def trial_reports(experiment: Path) -> dict[str, list[dict]]:
    """Trial id -> the results it reported in order (Tune's result.json: appended across restores from a
    checkpoint, replaced when a trial restarts from scratch in a new driver)."""
    import json

    out = {}
    for path in experiment.glob("*/result.json"):
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if lines:
            out[lines[0]["trial_id"]] = lines
    return out


def check_kept_lineage(lines: list[dict], history, run, written_before: set[int] = frozenset(),
                       done_before: bool = False) -> None:
    """A trial restored from a checkpoint continues at (that checkpoint's epoch + 1), never from
    scratch; MLflow holds each epoch once with the value of the kept lineage (the last report of the
    epoch; where an earlier report was already written, the re-run reproduced it: training resumes
    exactly); ``repeated_epochs`` counts the epochs reported again: at least those result.json shows
    twice and those MLflow held before the resume (``written_before``) that the resumed driver ran again."""
    epochs_seen: list[int] = []
    for i, x in enumerate(lines):
        if i > 0 and x["iterations_since_restore"] == 1:  # first report after a restore
            e = x["epoch"]
            assert e >= 2, f"resumed trial restarted from scratch: {[y['epoch'] for y in lines]}"
            assert e - 1 in epochs_seen and lines[i - 1]["epoch"] >= e - 1, \
                f"resumed at epoch {e}, not after a checkpointed epoch: {[y['epoch'] for y in lines]}"
        epochs_seen.append(x["epoch"])
    kept = {x["epoch"]: x["val_loss"] for x in lines}  # the last report of each epoch wins
    logged = {m.step: m.value for m in history}
    assert logged == pytest.approx(kept), (logged, kept)
    # result.json is a lower bound on what was reported: a trial that restarts from scratch after the
    # kill (Tune's last synced state held no checkpoint of it) logs into a fresh local file that
    # replaces the storage copy, so the killed driver's lines of that trial can be gone; the callback
    # saw every report in both drivers. An unfinished trial had reported at most EPOCHS - 1 epochs.
    restarts = [i for i, x in enumerate(lines) if i > 0 and x["iterations_since_restore"] == 1]
    if restarts:  # restored from a checkpoint: the reports after the last restore are the resumed driver's
        after = lines[restarts[-1]:]
    else:  # restarted from scratch (its file replaced: every line is the resumed driver's), or never resumed
        after = [] if done_before or not written_before else lines
    again = written_before & {x["epoch"] for x in after}
    repeats = max(len(epochs_seen) - len(set(epochs_seen)), len(again))
    tag = run.data.tags.get("repeated_epochs")
    assert repeats <= (int(tag) if tag else 0) <= EPOCHS - 1, (tag, repeats, [y["epoch"] for y in lines], written_before)


@pytest.mark.usefixtures("clean_tracking_env")
def test_killed_driver_resumes_without_losing_or_repeating_trials(tiny_dataset, tmp_path, tiny):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {"name": "killed", "dataset": str(tiny_dataset), "storage_path": str(tmp_path / "tune"),
           "train": dict(tiny.TRAIN, epochs=EPOCHS), "search_space": tiny.CORE_SPACE, "search": "hyperopt",
           "scheduler": "fifo", "num_samples": N_TRIALS, "max_concurrent": 1, "cpu": 1, "max_failures": 0}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    MlflowClient(uri).search_experiments()  # create the store's tables now: two processes migrating a new
    # SQLite file at once race (alembic "expected to match one row"), and this test polls it meanwhile
    log = open(tmp_path / "run.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "tuning", "run", "--config", str(path), "--tracking-uri", uri],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # wait until one trial has finished and the next one has reported an epoch, then kill the driver
        deadline = time.time() + 400
        while True:
            time.sleep(2)
            c, runs = _runs(uri, "killed")
            finished = [r for r in runs if r.info.status == "FINISHED"]
            running = [r for r in runs if r.info.status == "RUNNING" and "val_loss" in r.data.metrics]
            if finished and running:
                break
            assert driver.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial finished in time"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and what it started in its process group
        except ProcessLookupError:
            pass
        driver.wait()
        log.close()
    for pid in _session_processes(driver.pid):  # Ray helpers that outlived the driver: ours, stop them
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done_before = {r.data.tags["ray.trial_id"] for r in finished}
    assert len(done_before) < N_TRIALS
    c, runs = _runs(uri, "killed")  # the epochs the killed driver wrote to MLflow
    written_before = {r.data.tags["ray.trial_id"]: {m.step for m in c.get_metric_history(r.info.run_id, "val_loss")}
                      for r in runs}

    experiment = tmp_path / "tune" / "killed"
    out = subprocess.run([sys.executable, "-m", "tuning", "resume", str(experiment)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    c, runs = _runs(uri, "killed")
    ids = [r.data.tags["ray.trial_id"] for r in runs]
    assert len(ids) == N_TRIALS and len(set(ids)) == N_TRIALS  # every trial once, one MLflow run each
    assert all(r.info.status == "FINISHED" for r in runs)
    reports = trial_reports(experiment)  # every result each trial reported, before and after the kill
    resumed = 0
    for r in runs:
        tid = r.data.tags["ray.trial_id"]
        lines = reports[tid]
        history = c.get_metric_history(r.info.run_id, "val_loss")
        steps = [m.step for m in history]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), f"epochs repeated or missing: {sorted(steps)}"
        check_kept_lineage(lines, history, r, written_before.get(tid, set()), tid in done_before)
        restarts = [i for i, x in enumerate(lines) if i > 0 and x["iterations_since_restore"] == 1]
        if tid in done_before:  # finished before the kill: not trained again
            assert not restarts and len(lines) == EPOCHS
        resumed += len(restarts)
    assert resumed >= 1, "no trial was resumed from a checkpoint: the test proves nothing"
    summary = pd.read_csv(experiment / "summary.csv")
    assert len(summary) == N_TRIALS and (summary["status"] == "TERMINATED").all()
    assert (summary["epochs"] == EPOCHS).all()
    parent = c.get_run(c.search_runs([runs[0].info.experiment_id], "tags.`tune.experiment_path` != ''")[0].info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == N_TRIALS
