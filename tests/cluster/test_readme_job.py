"""The README's job-submission example on a real two-node cluster whose nodes share no working directory.

The worker node has its own Ray temp dir, so the job's working directory is unpacked at another path
there than on the head, as on a separate machine: whatever the driver writes under a relative path
(the smoke dataset built from configs/tune_smoke.yaml: runs/smoke/data) exists on the head only.

1. The example exactly as written (relative dataset and storage_path): the study stops at once, before
   building anything, naming storage_path and shared storage (Ray Tune keeps trial checkpoints there).
2. The same command with --storage-path on storage both nodes see: it succeeds. The build labels on
   both nodes (tasks take volumes, not paths), the dataset stays in the head's working directory, and
   the trial on the worker trains on the copy shipped through Ray's object store.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from local_cluster import LocalCluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
README_CMD = "python -m tuning run --config configs/tune_smoke.yaml"


@pytest.fixture(scope="module")
def cluster():
    # the README's `python` is the environment's on every node, as in a cluster image: nodes start
    # with this environment's bin first on PATH, and the job inherits it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        c = LocalCluster(head_cpus=1)
    try:
        c.add_worker("worker", num_cpus=1, own_temp_dir=True)
        yield c
    finally:
        c.stop()


def submit_and_follow(cluster, cmd: str, timeout: float = 900):
    """`python -m cluster submit --address URL -- CMD` from the repository root, as the README writes it
    (the job's `python` is this environment's, as a cluster image would have it)."""
    env = {k: v for k, v in cluster.env.items() if not k.startswith(("MLFLOW_", "PVAE_"))}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "cluster", "submit", "--address", cluster.dashboard_url, "--",
                          *cmd.split()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr, time.monotonic() - t0


def task_nodes(cluster, name: str) -> dict[str, list[str]]:
    """Node id -> states of the finished or failed tasks named ``name`` (Ray's state API)."""
    code = ("import json, sys; from ray.util.state import list_tasks;"
            "ts = list_tasks(address=sys.argv[1], filters=[('name', '=', sys.argv[2])], limit=1000, detail=True);"
            "print(json.dumps([[t.node_id, t.state] for t in ts]))")
    out = subprocess.run([sys.executable, "-c", code, cluster.dashboard_url, name], env=cluster.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    nodes: dict[str, list[str]] = {}
    for node, state in json.loads(out.stdout.strip().splitlines()[-1]):
        nodes.setdefault(node, []).append(state)
    return nodes


def working_dirs(cluster, node: str) -> list[Path]:
    temp = cluster.temp_dir / node if node != "head" else cluster.temp_dir
    return list(temp.glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*"))


def test_readme_example_stops_at_once_naming_storage_path(cluster):
    rc, out, wall = submit_and_follow(cluster, README_CMD, timeout=300)
    assert rc == 1, out[-4000:]
    assert "storage_path 'runs/tune_smoke'" in out and "shared storage" in out and "--storage-path" in out, \
        out[-4000:]
    assert "building the dataset" not in out, "the study built its dataset before stopping"
    assert wall < 120, f"stopping took {wall:.0f} s"


def test_readme_example_with_shared_storage_path_runs_on_both_nodes(cluster):
    import mlflow

    shared = Path(tempfile.mkdtemp(prefix="pvae-shared-"))
    key = None
    try:
        rc, out, _ = submit_and_follow(cluster, f"{README_CMD} --storage-path {shared}/runs")
        assert rc == 0, out[-8000:]
        match = re.search(r"shipped to trials on other nodes .*key (\w+)\)", out)
        assert match, out[-6000:]
        key = match.group(1)

        nodes = cluster.node_ids()
        # labeling: tasks on both nodes, all finished (the worker never had the volumes on disk)
        labeled = task_nodes(cluster, "label_sample")
        assert set(labeled) == {nodes["head"], nodes["worker"]}, labeled
        assert all(s == "FINISHED" for states in labeled.values() for s in states), labeled
        assert sum(map(len, labeled.values())) == 16
        # the dataset lives in the head's working directory only
        head_data = [d / "runs/smoke/data" for d in working_dirs(cluster, "head") if (d / "runs/smoke/data").is_dir()]
        assert head_data and (head_data[0] / "properties.csv").is_file()
        worker_dirs = working_dirs(cluster, "worker")
        assert worker_dirs and not any((d / "runs" / "smoke").exists() for d in worker_dirs)

        # trials: both nodes, every trial in MLflow; the worker's trial trained on the shipped copy
        client = mlflow.MlflowClient(f"sqlite:///{shared}/runs/mlflow.db")
        exp = client.get_experiment_by_name("smoke")
        trials = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
        assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
        sources = {n: r.data.tags.get(f"dataset_source.{n}") for r in trials
                   for n in r.data.tags["ray.node_ids"].split(",")}
        assert sources == {nodes["head"]: "path", nodes["worker"]: "object_store"}, sources
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        if key:  # the node-local copy the worker's trial unpacked (this machine's temp dir)
            shutil.rmtree(Path(tempfile.gettempdir()) / "pvae-datasets" / key, ignore_errors=True)
