"""The MLflow trial callback across a driver restart, replayed hook by hook on a real SQLite store.

Tune calls the callback as it does in a study (``on_trial_result``, ``on_checkpoint``, ``get_state``
when it saves its experiment state); the restart is the one Tune makes after a killed driver: a new
callback from the pickled one, given the last state that reached storage.
"""
from __future__ import annotations

import copy
import pickle

import pytest
from mlflow import MlflowClient
from ray import tune
from ray.tune.experiment import Trial

from tuning.tracking import MLflowTrialCallback, start_study_run


def _epoch(cb: MLflowTrialCallback, trial: Trial, checkpoint: tune.Checkpoint, epoch: int, val_loss: float) -> None:
    """One epoch as Tune reports it: the result, then its registered checkpoint."""
    trial.update_last_result({"epoch": epoch, "val_loss": val_loss, "completed": False})
    cb.on_trial_result(0, [trial], trial, trial.last_result)
    cb.on_checkpoint(0, [trial], trial, checkpoint)


@pytest.mark.usefixtures("clean_tracking_env")
def test_epoch_written_after_the_last_synced_state_is_logged_once_after_restore(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(uri)
    exp = c.create_experiment("replay")
    parent = start_study_run(uri, exp, str(tmp_path / "study"), "study", params={}, tags={})
    cb = MLflowTrialCallback(uri, exp, parent, base={}, metric="val_loss", mode="min", tags={},
                             log_figures=False)
    (tmp_path / "ckpt").mkdir()
    ckpt = tune.Checkpoint.from_directory(str(tmp_path / "ckpt"))
    trial = Trial("train", config={"lr": 1e-3}, trial_id="t_00000", stub=True)
    losses = {1: 0.9, 2: 0.7, 3: 0.6, 4: 0.5}

    cb.on_trial_start(0, [trial], trial)
    pickled = pickle.dumps(cb)  # what tuner.pkl holds: the callback at the study's start
    for e in (1, 2):
        _epoch(cb, trial, ckpt, e, losses[e])
    synced = copy.deepcopy(cb.get_state())  # a save that reached storage: epochs 1, 2 written
    _epoch(cb, trial, ckpt, 3, losses[3])
    cb.get_state()  # the next save writes epoch 3; the driver dies before it reaches storage

    restored = pickle.loads(pickled)  # Tuner.restore: the pickled callback, then the synced state
    restored.set_state(synced)
    for e in (3, 4):  # the trial resumes from epoch 2's checkpoint: epoch 3 runs again
        _epoch(restored, trial, ckpt, e, losses[e])
    trial.update_last_result({"epoch": 4, "val_loss": losses[4], "completed": True})
    restored.on_trial_complete(0, [trial], trial)

    run = c.get_run(restored._runs[trial.trial_id])
    history = c.get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4], [m.step for m in history]
    assert {m.step: m.value for m in history} == pytest.approx(losses)
    assert run.data.tags.get("repeated_epochs") == "1"  # epoch 3 reported twice
    assert run.data.metrics["best_val_loss"] == pytest.approx(0.5)
    assert run.info.status == "FINISHED"
