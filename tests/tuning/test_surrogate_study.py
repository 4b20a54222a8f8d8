"""The permeability surrogate tuned by the same Ray Tune driver (``model: surrogate``, a second search space).

Real local Ray + real SQLite MLflow store, tiny trials (the fixtures of conftest.py): both trials get an
MLflow run with the whole SurrogateConfig as params and val_loss per epoch; a search-space key that is
not a SurrogateConfig field fails before Ray starts; promote refuses a surrogate study.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from tuning.config import MODELS, StudyConfig, load_study_config

#: Fixed settings of a tiny, fast surrogate (well under a second per epoch on one core).
SURROGATE_TRAIN = {"components": ["porosity", "k_xx", "k_yy", "k_zz"], "scales": 2, "channels": [4, 8],
                   "head_width": 16, "batch_size": 4, "epochs": 2, "patience": 0, "scheduler": "none",
                   "eval_batch_size": 16}
SURROGATE_SPACE = {"lr": {"loguniform": [1e-3, 3e-3]}, "head_depth": {"randint": [0, 3]},
                   "dropout": {"uniform": [0.0, 0.2]}, "dataset_size": {"choice": [6, 12]}}


def surrogate_study(dataset: Path, storage: Path, name: str, **kw) -> StudyConfig:
    return StudyConfig(name=name, model="surrogate", dataset=str(dataset), storage_path=str(storage),
                       train=dict(SURROGATE_TRAIN), search_space=dict(SURROGATE_SPACE), num_samples=2,
                       max_concurrent=2, cpu=1, **kw)


# --- no Ray: config validation ---------------------------------------------------------------------
def test_smoke_config_parses_as_a_surrogate_study():
    cfg = load_study_config("configs/tune_surrogate_smoke.yaml")
    assert cfg.model == "surrogate" and cfg.num_samples == 2
    assert cfg.build_config == "configs/data_smoke.yaml"
    assert set(cfg.search_space) <= MODELS["surrogate"].field_names()
    assert load_study_config("configs/tune_smoke.yaml").model == "pvae"  # the default


def test_unknown_surrogate_key_fails_before_ray_starts(tmp_path, monkeypatch, capsys):
    """latent_dim is a pVAE field, not a SurrogateConfig one: the error names the key, the model and the
    file, and `python -m tuning run` exits 2 without starting Ray or touching the dataset."""
    import tuning.study

    path = tmp_path / "bad_surrogate.yaml"
    path.write_text(yaml.safe_dump({"model": "surrogate", "dataset": str(tmp_path / "missing"),
                                    "search_space": {"latent_dim": {"choice": [4, 8]}}}))
    with pytest.raises(ValueError, match=r"bad_surrogate\.yaml.*search_space: unknown training config key "
                                         r"'latent_dim' for model 'surrogate' \(SurrogateConfig\).*head_depth"):
        load_study_config(path)

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for an invalid study config")

    monkeypatch.setattr(tuning.study, "ensure_ray", no_ray)
    monkeypatch.setattr(tuning.study, "ensure_dataset", no_ray)
    assert tuning.study.main_run(["--config", str(path)]) == 2
    assert "unknown training config key 'latent_dim'" in capsys.readouterr().err
    # the same key is fine for the pVAE, and a surrogate key is unknown there
    StudyConfig(search_space={"latent_dim": {"choice": [4, 8]}})
    with pytest.raises(ValueError, match=r"train: unknown training config key 'head_width' for model 'pvae'"):
        StudyConfig(train={"head_width": 16})
    with pytest.raises(ValueError, match=r"field 'model' = 'cnn': must be one of \('pvae', 'surrogate'\)"):
        StudyConfig(model="cnn")


# --- real Ray + MLflow ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-surrogate")
    return folder, f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def study(tiny_dataset, store, local_ray):
    """A 2-trial HyperOpt study of the surrogate, 2 epochs each (FIFO, so both trials finish)."""
    from tuning.study import run_study

    cfg = surrogate_study(tiny_dataset, store[0] / "tune", "surrogate", scheduler="fifo")
    return run_study(cfg, tracking_uri=store[1])


@pytest.mark.usefixtures("local_ray", "clean_tracking_env")
def test_two_trial_surrogate_study_logs_params_and_per_epoch_val_loss(study, store, tiny_dataset):
    from models.surrogate import SurrogateConfig, load_surrogate

    c = MlflowClient(store[1])
    parent = c.get_run(study.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == 2
    assert parent.data.params["model"] == "surrogate"
    runs = c.search_runs([study.experiment_id], f"tags.`mlflow.parentRunId` = '{study.parent_run_id}'")
    assert len(runs) == 2
    assert {r.data.tags["ray.trial_id"] for r in runs} == set(study.summary["trial_id"])
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["model"] == "surrogate"
        assert run.info.run_name.startswith("train_surrogate_")
        params = run.data.params
        assert set(params) == set(SurrogateConfig.field_names())  # the whole config, no pVAE params
        assert 1e-3 <= float(params["lr"]) <= 3e-3 and int(params["head_depth"]) in (0, 1, 2)
        assert 0.0 <= float(params["dropout"]) <= 0.2 and int(params["dataset_size"]) in (6, 12)
        assert params["channels"] == "[4, 8]" and params["input_size"] == "16" and params["device"] == "cpu"
        history = c.get_metric_history(run.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == [1, 2]  # one value per epoch, step = epoch
        assert all(np.isfinite(m.value) for m in history)
        assert run.data.metrics["best_val_loss"] == pytest.approx(min(m.value for m in history))
        assert len(c.get_metric_history(run.info.run_id, "val_mse_k_xx")) == 2
        assert "test_r2_mean" in run.data.metrics and "test_mse_norm" in run.data.metrics
        assert "parity.png" in {Path(a.path).name for a in c.list_artifacts(run.info.run_id, "eval")}
        best = Path(run.data.tags["best_checkpoint"]) / "best"  # the same best/ last/ eval/ layout
        assert load_surrogate(best).predict(np.ones((16,) * 3, bool))[0]["k_xx"] > 0
    summary = study.summary
    assert list(summary["status"]) == ["TERMINATED"] * 2 and list(summary["epochs"]) == [2, 2]
    assert {"lr", "dataset_size", "head_depth", "dropout"} <= set(summary.columns)
    assert "latent_dim" not in summary.columns


@pytest.mark.usefixtures("local_ray", "clean_tracking_env")
def test_promote_refuses_a_surrogate_study(study, store, capsys):
    from tuning.promote import NotPromotable, main, promote

    runs = MlflowClient(store[1]).search_runs([study.experiment_id],
                                              f"tags.`mlflow.parentRunId` = '{study.parent_run_id}'")
    with pytest.raises(NotPromotable, match="'surrogate' study is not promoted.*load_surrogate"):
        promote(store[1], runs[0].info.run_id)
    assert main(["--study", study.experiment_path]) == 2
    assert "not promoted to the MLflow Model Registry" in capsys.readouterr().err
    # explicit registry: an earlier promote in this process set another store as mlflow's registry URI
    assert not MlflowClient(store[1], registry_uri=store[1]).search_registered_models()
