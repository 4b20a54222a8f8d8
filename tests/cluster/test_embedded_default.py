"""The embedded default after a killed `ray start` head (issue 15, item 2).

A head killed hard (SIGKILL, not `ray stop`) leaves Ray's ``ray_current_cluster`` marker behind; a
plain ``ray.init()`` follows it to the dead cluster, and ``ray.init(num_cpus=...)`` raises "When
connecting to an existing cluster, num_cpus and num_gpus must not be provided". Without
``--address`` / ``ray_address`` / ``RAY_ADDRESS`` the commands must start their own local Ray.

The head is this test's own (own temp dir, RAY_TMPDIR pointing there, so the marker is seen only by
the commands run here); it is killed by its process group and the local Rays the commands start
are shut down by the commands themselves.
"""
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from local_cluster import LocalCluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture(scope="module")
def dead_head():
    c = LocalCluster(head_cpus=1, own_tmpdir=True)
    try:
        deadline = time.monotonic() + 60  # written once the head is up, after its dashboard
        while not c.marker.is_file():
            assert time.monotonic() < deadline, f"ray start --head wrote no marker {c.marker}"
            time.sleep(0.5)
        c.kill_node("head")
        assert c.marker.is_file(), "the killed head's marker is gone: nothing to test"
        env = {k: v for k, v in c.env.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "PYTHONPATH")}
        env["PYTHONPATH"] = str(ROOT)
        yield c, env
    finally:
        c.stop()


def run(cmd: list[str], env: dict, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_build_starts_its_own_ray_despite_a_dead_heads_marker(dead_head, tmp_path):
    cluster, env = dead_head
    out = tmp_path / "data"
    res = run(["-m", "data_pipeline", "build", "--config", "configs/data_smoke.yaml", "--out", str(out),
               "--n-samples", "2", "--no-progress"], env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "num_cpus and num_gpus must not be provided" not in res.stderr
    props = pd.read_csv(out / "properties.csv")
    assert len(props) == 2 and (props["labeler"] == "lbm").all()
    assert cluster.marker.is_file()  # the user's marker is left as it was


def tiny_dataset(root: Path, n: int = 16, size: int = 16) -> Path:
    """A labeled 16^3 dataset written directly (porosity measured, Kozeny-Carman k): no solver needed."""
    import numpy as np

    from data_pipeline.io import write_properties, write_volume, write_yaml

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        im = rng.random((size,) * 3) < rng.uniform(0.4, 0.8)
        phi = float(im.mean())
        k = phi**3 / (180 * (1 - phi) ** 2) * 16.0
        write_volume(root / "volumes" / f"s{i:03d}.tif", im)
        rows.append({"sample_id": f"s{i:03d}", "porosity": phi, "k_xx": k, "k_yy": k, "k_zz": k, "status": "ok"})
    write_properties(root, pd.DataFrame(rows))
    write_yaml(root / "dataset.yaml", {"dims": 3, "shape": [size] * 3})
    return root


TINY_TRAIN = {"channels": [4, 8], "regressor_width": 16, "batch_size": 4, "epochs": 1, "patience": 0,
              "scheduler": "none", "eval_batch_size": 16, "n_generate": 2, "latent_dim": 4}


def test_study_starts_its_own_ray_despite_a_dead_heads_marker(dead_head, tmp_path):
    _, env = dead_head
    data = tiny_dataset(tmp_path / "data")
    cfg = {"name": "embedded", "dataset": str(data), "storage_path": str(tmp_path / "tune"),
           "train": TINY_TRAIN, "search_space": {"beta": {"choice": [0.5, 1.0]}},
           "search": "random", "scheduler": "fifo", "num_samples": 1, "max_concurrent": 1, "cpu": 1}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = run(["-m", "tuning", "run", "--config", str(path)], env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "tune" / "embedded" / "summary.csv")
    assert list(summary["status"]) == ["TERMINATED"]
