"""The cluster recipes parse and carry what Ray, KubeRay and shellcheck require."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_launcher_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config
    cfg = yaml.safe_load((CLUSTER / "ray-cluster-aws.yaml").read_text())
    validate_config(cfg)                             # Ray's own JSON schema for `ray up`
    validate_config(prepare_config(copy.deepcopy(cfg)))  # and after Ray fills in its defaults
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must not run trials"
    workers = [t for n, t in cfg["available_node_types"].items() if n != cfg["head_node_type"]]
    assert workers and all(t["max_workers"] >= 1 and t["min_workers"] == 0 for t in workers)
    # token auth on every node, the token file shipped, dashboard on loopback
    starts = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token ray start") == 2
    assert any("auth_token" in k for k in cfg["file_mounts"])
    assert "--dashboard-host=127.0.0.1" in starts
    ray_version = requirement_pins()["ray"]
    assert cfg["docker"]["image"].startswith(f"rayproject/ray:{ray_version}-py311-gpu")
    assert any("torch==2.13.0" in c for c in cfg["setup_commands"])


def test_rayjob_has_the_keys_kuberay_requires():
    doc = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["entrypoint"].startswith("python -m tuning run --config configs/")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == requirement_pins()["ray"]
    head = cluster["headGroupSpec"]
    assert "rayStartParams" in head and head["template"]["spec"]["containers"]
    for group in cluster["workerGroupSpecs"]:
        for key in ("groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"):
            assert key in group, f"workerGroupSpecs entry lacks {key}"
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1"
    for c in [head["template"]["spec"]["containers"][0]] + [
            g["template"]["spec"]["containers"][0] for g in cluster["workerGroupSpecs"]]:
        assert c["image"].startswith(f"rayproject/ray:{cluster['rayVersion']}-")
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-auth-token"
    # the runtime environment installs exactly the pinned requirements
    renv = yaml.safe_load(spec["runtimeEnvYAML"])
    pins = requirement_pins()
    for pkg in renv["pip"]["packages"]:
        name, version = pkg.split("==")
        assert pins[re.sub(r"\[.*\]", "", name).lower()] == version, pkg


@pytest.mark.parametrize("script", sorted(str(p.relative_to(ROOT)) for p in CLUSTER.rglob("*.sbatch")))
def test_shell_scripts_pass_bash_n_and_shellcheck(script):
    subprocess.run(["bash", "-n", script], cwd=ROOT, check=True)
    shellcheck = Path(sys.executable).with_name("shellcheck")
    res = subprocess.run([str(shellcheck), script], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_submit_runtime_env_excludes_heavy_folders(monkeypatch):
    from cluster.submit import runtime_env
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.1:5000")
    renv = runtime_env()
    assert renv["working_dir"] == str(ROOT)
    assert {".venv", "runs", ".git"} <= set(renv["excludes"])
    assert renv["env_vars"]["MLFLOW_TRACKING_URI"] == "http://10.0.0.1:5000"
