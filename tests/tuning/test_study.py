"""Real local Ray + real SQLite MLflow store, tiny trials: study, ASHA, NaN trial, promote, ablation.

One Ray session for the module (ray.init costs ~7 s here); each study is a few tiny trials.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from tuning.config import CORE_PARAMS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("local_ray", "clean_tracking_env")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    return folder, f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def study(tiny_dataset, store, local_ray, tiny):
    """A 2-trial HyperOpt study over the five core hyperparameters, 2 epochs each (FIFO here, so both
    trials finish; ASHA has its own test)."""
    from tuning.study import run_study

    cfg = tiny.study(tiny_dataset, store[0] / "tune", "core", scheduler="fifo")
    return run_study(cfg, tracking_uri=store[1])


def test_two_trial_study_logs_every_trial_with_the_five_params_and_per_epoch_metrics(study, store, tiny_dataset, tiny):
    c = MlflowClient(store[1])
    exp = c.get_experiment(study.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # UI opens in the training view
    parent = c.get_run(study.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == 2
    runs = c.search_runs([study.experiment_id], f"tags.`mlflow.parentRunId` = '{study.parent_run_id}'")
    assert len(runs) == 2
    assert {r.data.tags["ray.trial_id"] for r in runs} == set(study.summary["trial_id"])
    from data_pipeline.dataset import dataset_hash
    for run in runs:
        assert run.info.status == "FINISHED"
        params = run.data.params
        assert set(CORE_PARAMS) <= set(params)
        assert int(params["latent_dim"]) in (2, 4) and int(params["dataset_size"]) in (6, 12)
        assert 0.1 <= float(params["beta"]) <= 1.0 and 1e-3 <= float(params["lr"]) <= 3e-3
        assert int(params["regressor_depth"]) in (1, 2)
        assert params["channels"] == str(tiny.TRAIN["channels"])  # the whole trial config, not only the space
        history = c.get_metric_history(run.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == [1, 2]  # one value per epoch, step = epoch
        assert all(np.isfinite(m.value) for m in history)
        assert run.data.metrics["best_val_loss"] == pytest.approx(min(m.value for m in history))
        tags = run.data.tags
        assert tags["dataset_hash"] == dataset_hash(tiny_dataset) and tags["dataset_id"] == "tuning-test"
        assert tags["git_commit"] and Path(tags["best_checkpoint"]).is_dir()
        figures = {Path(a.path).name for a in c.list_artifacts(run.info.run_id, "eval")}
        assert {"reconstruction.png", "parity.png", "metrics.json"} <= figures
        assert "test_recon_bce" in run.data.metrics and "test_r2_mean" in run.data.metrics
    # the trial that trained on dataset_size samples really used that many (train split has 12)
    for _, row in study.summary.iterrows():
        assert row["status"] == "TERMINATED" and row["epochs"] == 2
    state = json.loads((Path(study.experiment_path) / "tuning_study.json").read_text())
    assert state["parent_run_id"] == study.parent_run_id
    assert (Path(study.experiment_path) / "summary.csv").is_file()


def test_rerunning_a_finished_study_name_is_refused(study, store, tiny_dataset, tiny):
    from tuning.study import run_study

    cfg = tiny.study(tiny_dataset, store[0] / "tune", "core")
    with pytest.raises(FileExistsError, match="python -m tuning resume"):
        run_study(cfg, tracking_uri=store[1])


def test_a_study_run_again_after_its_folder_was_deleted_gets_a_new_parent_run(tiny_dataset, store, tiny):
    """`make demo` deletes its study folders and runs them again under the same names: the new study
    must not join the old parent run, whose trials' checkpoints are gone (promote would pick them)."""
    import shutil

    from tuning.promote import best_trial_run
    from tuning.study import run_study

    cfg = tiny.study(tiny_dataset, store[0] / "tune", "again", search="grid", scheduler="fifo", num_samples=1,
                     max_concurrent=1, search_space={"lr": {"grid": [2.0e-3]}}, train={"epochs": 1})
    first = run_study(cfg, tracking_uri=store[1])
    shutil.rmtree(first.experiment_path)
    second = run_study(cfg, tracking_uri=store[1])
    assert second.parent_run_id != first.parent_run_id
    c = MlflowClient(store[1])
    children = c.search_runs([second.experiment_id], f"tags.`mlflow.parentRunId` = '{second.parent_run_id}'")
    assert {r.data.tags["ray.trial_id"] for r in children} == set(second.summary["trial_id"])
    best = best_trial_run(store[1], second.experiment_id, second.parent_run_id, "val_loss", "min")
    assert Path(best.data.tags["best_checkpoint"]).is_dir()


def test_asha_stops_a_bad_trial_early(tiny_dataset, store, tiny):
    """Trials run one after the other; the one with alpha = 100 has a far worse val_loss at the first
    rung (epoch 1) than the finished one, so ASHA stops it there; the good one trains all 4 epochs."""
    from tuning.study import run_study

    cfg = tiny.study(tiny_dataset, store[0] / "tune", "asha", search="grid", scheduler="asha", num_samples=1,
                     max_concurrent=1, grace_period=1, reduction_factor=2,
                     search_space={"alpha": {"grid": [1.0, 100.0]}}, train={"epochs": 4})
    handle = run_study(cfg, tracking_uri=store[1])
    rows = {float(r.config["alpha"]): r for r in handle.results}
    assert rows[1.0].metrics["epoch"] == 4 and rows[1.0].metrics.get("completed") == 1
    assert rows[100.0].metrics["epoch"] == 1 and not rows[100.0].metrics.get("completed")
    assert rows[100.0].error is None  # stopped, not failed
    c = MlflowClient(store[1])
    runs = {float(r.data.params["alpha"]): r for r in
            c.search_runs([handle.experiment_id], f"tags.`mlflow.parentRunId` = '{handle.parent_run_id}'")}
    assert runs[100.0].data.tags.get("stopped_by_scheduler") == "true"
    assert "stopped_by_scheduler" not in runs[1.0].data.tags
    assert len(c.get_metric_history(runs[100.0].info.run_id, "val_loss")) == 1


def test_nan_trial_ends_errored_with_the_reason_and_the_study_goes_on(tiny_dataset, store, tmp_path, capsys, tiny):
    """lr = 1e6 makes the loss non-finite in the first epoch: that trial errors with the trainer's message,
    the other one finishes, and `python -m tuning run` exits 0 with a summary listing the errored trial."""
    from tuning.study import main_run

    cfg = {"name": "nan", "dataset": str(tiny_dataset), "storage_path": str(store[0] / "tune"),
           "train": dict(tiny.TRAIN, epochs=1), "search": "grid", "scheduler": "fifo", "num_samples": 1,
           "search_space": {"lr": {"grid": [1.0e-3, 1.0e6]}}, "cpu": 1, "max_failures": 0}
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main_run(["--config", str(path), "--tracking-uri", store[1]]) == 0
    out = capsys.readouterr().out
    assert "1 errored" in out and "FloatingPointError: loss is NaN" in out
    c = MlflowClient(store[1])
    exp = c.get_experiment_by_name("nan")
    runs = {float(r.data.params["lr"]): r for r in c.search_runs([exp.experiment_id], "tags.`ray.trial_id` != ''")}
    assert runs[1e6].info.status == "FAILED"
    assert runs[1e6].data.tags["error"].startswith("FloatingPointError: loss is NaN at epoch 1")
    assert runs[1e-3].info.status == "FINISHED"


def test_promote_registers_version_1_with_alias_champion_loadable_elsewhere(study, store, tiny_dataset, tmp_path):
    from models.checkpoint import load_model
    from tuning.promote import best_trial_run, promote

    uri = store[1]
    best = best_trial_run(uri, study.experiment_id, study.parent_run_id, "val_loss", "min")
    assert best.data.metrics["best_val_loss"] == pytest.approx(study.summary["best_val_loss"].min())
    env_before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    result = promote(uri, best.info.run_id)
    assert result["version"] == "1" and result["max_abs_diff"] < 1e-5
    # promote points MLflow at this store only while it works: nothing leaks to later calls or children
    assert {k: os.environ.get(k) for k in env_before} == env_before
    c = MlflowClient(uri)
    assert str(c.get_model_version_by_alias("pvae", "champion").version) == "1"

    # another process, another working directory, no repository on the path
    from data_pipeline.dataset import VoxelDataset
    test = VoxelDataset(tiny_dataset, "test")
    x = test.volumes().astype(np.float32)[:, None]  # (N, 1, 16, 16, 16)
    np.save(tmp_path / "x.npy", x)
    script = ("import mlflow, numpy as np; mlflow.set_tracking_uri(%r); "
              "m = mlflow.pyfunc.load_model('models:/pvae@champion'); "
              "m.predict(np.load('x.npy')).to_csv('pred.csv', index=False)" % uri)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import pandas as pd
    got = pd.read_csv(tmp_path / "pred.csv")

    import torch
    model, cfg, norm = load_model(Path(best.data.tags["best_checkpoint"]) / "best")
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(x))
        want = norm.inverse(model.predict_properties(mu).numpy())
    np.testing.assert_allclose(got[cfg.properties].to_numpy(), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[[f"z_{i}" for i in range(cfg.latent_dim)]].to_numpy(), mu.numpy(), atol=1e-6)


def test_ablation_over_two_sizes_writes_table_and_figure(tiny_dataset, store, tiny):
    from tuning.ablation import run_ablation

    cfg = tiny.study(tiny_dataset, store[0] / "tune", "ablation", search_space={}, sizes=[4, 8], seeds=[0],
                     train={"epochs": 1})
    out = run_ablation(cfg, tracking_uri=store[1])
    table = out["table"]
    assert list(table["dataset_size"]) == [4, 8] and list(table["n_train"]) == [4, 8]
    assert (table["status"] == "OK").all()
    assert {"test_recon_bce", "test_r2_mean", "test_r2_porosity"} <= set(table.columns)
    assert np.isfinite(table["test_recon_bce"]).all()
    assert list(out["summary"]["n_seeds"]) == [1, 1]
    png = Path(out["figure"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import pandas as pd
    assert pd.read_csv(out["table_csv"]).shape[0] == 2
    c = MlflowClient(store[1])
    logged = {Path(a.path).name for a in c.list_artifacts(out["handle"].parent_run_id, "ablation")}
    assert {"ablation.csv", "ablation_summary.csv", "ablation.png"} <= logged


def test_ablation_refuses_a_varying_hyperparameter(tiny_dataset, store, tiny):
    from tuning.ablation import ablation_space

    cfg = tiny.study(tiny_dataset, store[0] / "tune", "abl-bad", search="random", sizes=[4, 8],
                     search_space={"beta": {"uniform": [0.1, 1.0]}})
    with pytest.raises(ValueError, match="holds the other hyperparameters fixed"):
        ablation_space(cfg)


def test_core_space_is_the_documented_one(tiny):
    assert set(tiny.CORE_SPACE) == set(CORE_PARAMS)


@pytest.fixture()
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (free port), SQLite backend, proxied artifacts; stopped by
    its process group (it starts worker processes of its own)."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", (tmp_path / "artifacts").as_uri(), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).read().strip() == b"OK":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_study_against_an_mlflow_tracking_server_over_http(tiny_dataset, tmp_path, mlflow_server, tiny,
                                                           monkeypatch):
    """MLFLOW_TRACKING_URI (MLflow's convention) points the study at the server; runs are read back
    through the REST API; then `python -m tuning promote` (twice: the alias moves to version 2) and
    `models:/pvae@champion` resolved and loaded in fresh processes, all through the server."""
    import urllib.request

    from tuning.study import run_study

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = tiny.study(tiny_dataset, tmp_path / "tune", "http", scheduler="fifo", train={"epochs": 1})
    handle = run_study(cfg)
    assert handle.tracking_uri == mlflow_server
    assert not (tmp_path / "tune" / "mlflow.db").exists()  # nothing went to the embedded store

    # the REST client; registry named too: an earlier promote in this process set MLflow's global
    # registry URI to its own store, and a client without one reads that registry instead
    c = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    runs = c.search_runs([handle.experiment_id], f"tags.`mlflow.parentRunId` = '{handle.parent_run_id}'")
    assert len(runs) == 2
    for run in runs:
        assert set(CORE_PARAMS) <= set(run.data.params)
        assert [m.step for m in c.get_metric_history(run.info.run_id, "val_loss")] == [1]
        assert run.info.status == "FINISHED"
        assert "parity.png" in {Path(a.path).name for a in c.list_artifacts(run.info.run_id, "eval")}
    # the same through the raw REST endpoint
    body = json.dumps({"experiment_ids": [handle.experiment_id], "max_results": 10}).encode()
    req = urllib.request.Request(mlflow_server + "/api/2.0/mlflow/runs/search", data=body,
                                 headers={"Content-Type": "application/json"})
    listed = json.loads(urllib.request.urlopen(req, timeout=30).read())["runs"]
    assert len(listed) == 3  # parent + 2 trials

    # promotion, the registry alias and models:/pvae@champion through the server, each in a fresh
    # process as a cluster user runs them (issue 15, item 7)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    repo_env = {**env, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": mlflow_server}
    had_mlruns = (ROOT / "mlruns").exists()
    out = subprocess.run([sys.executable, "-m", "tuning", "promote", "--study", handle.experiment_path],
                         cwd=ROOT, env=repo_env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    best = min(runs, key=lambda r: r.data.metrics["best_val_loss"])
    v1 = c.get_model_version_by_alias("pvae", "champion")
    assert (str(v1.version), v1.run_id) == ("1", best.info.run_id), out.stdout[-1500:]
    assert v1.tags["source_run_id"] == best.info.run_id
    assert had_mlruns or not (ROOT / "mlruns").exists()  # nothing went to a local file store
    # a second promotion (the other trial, by run id) moves the alias to version 2
    other = next(r for r in runs if r.info.run_id != best.info.run_id)
    out = subprocess.run([sys.executable, "-m", "tuning", "promote", "--run-id", other.info.run_id,
                          "--tracking-uri", mlflow_server], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    v2 = c.get_model_version_by_alias("pvae", "champion")
    assert (str(v2.version), v2.run_id) == ("2", other.info.run_id)
    assert [str(v.version) for v in c.search_model_versions("name = 'pvae'", order_by=["version_number"])] == ["1", "2"]
    # models:/pvae@champion resolves through the server in another process and directory, without the
    # repository on the path; the artifacts come from the server's store (proxied), not a local folder
    from data_pipeline.dataset import VoxelDataset
    x = VoxelDataset(tiny_dataset, "test").volumes().astype(np.float32)[:, None]  # (N, 1, 16, 16, 16)
    np.save(tmp_path / "x.npy", x)
    script = ("import json, mlflow, numpy as np; "
              "m = mlflow.pyfunc.load_model('models:/pvae@champion'); "
              "m.predict(np.load('x.npy')).to_csv('pred.csv', index=False); "
              "print(json.dumps({'run_id': m.metadata.run_id, 'source': m.metadata.metadata['source_checkpoint']}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": mlflow_server},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    meta = json.loads(out.stdout.strip().splitlines()[-1])
    assert meta["run_id"] == other.info.run_id
    assert any((tmp_path / "artifacts").rglob("model.safetensors"))  # stored by the server
    import pandas as pd
    import torch

    from models.checkpoint import load_model
    model, mcfg, norm = load_model(Path(meta["source"]) / "best")
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(x))
        want = norm.inverse(model.predict_properties(mu).numpy())
    got = pd.read_csv(tmp_path / "pred.csv")
    np.testing.assert_allclose(got[mcfg.properties].to_numpy(), want, rtol=1e-5, atol=1e-7)
