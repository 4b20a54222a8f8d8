"""Study config and search-space parsing: unknown keys fail before anything starts."""
from __future__ import annotations

import os

import pytest
from ray import tune

from tuning.config import CORE_PARAMS, StudyConfig, load_study_config, to_tune
from tuning.tracking import artifact_root, reason_from_traceback, resolve_tracking_uri


def test_smoke_and_demo_configs_parse_and_cover_the_core_params():
    for path in ("configs/tune_smoke.yaml", "configs/tune_demo.yaml"):
        cfg = load_study_config(path)
        assert set(CORE_PARAMS) <= set(cfg.search_space), path
        space = cfg.param_space()
        assert all(isinstance(space[k], tune.search.sample.Domain) for k in CORE_PARAMS)
    assert load_study_config("configs/tune_smoke.yaml").num_samples == 2
    abl = load_study_config("configs/ablate_smoke.yaml")
    assert len(abl.sizes) == 2


def test_unknown_search_space_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("search_space:\n  latent_dims: {choice: [4, 8]}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*unknown training config key 'latent_dims'.*valid keys:.*latent_dim"):
        load_study_config(path)


def test_unknown_train_key_and_unknown_study_key_fail(tmp_path):
    with pytest.raises(ValueError, match="train: unknown training config key 'learning_rate'"):
        StudyConfig(train={"learning_rate": 1e-3})
    path = tmp_path / "bad.yaml"
    path.write_text("nmae: x\n")
    with pytest.raises(ValueError, match="unknown study config key 'nmae'"):
        load_study_config(path)


@pytest.mark.parametrize("spec, error", [
    ({"logunifrom": [1, 2]}, "unknown distribution 'logunifrom'"),
    ({"loguniform": [0, 1]}, "positive lower bound"),
    ({"uniform": [2, 1]}, "lower < upper"),
    ({"uniform": [1]}, "takes 2 numbers"),
    ({"choice": []}, "at least one value"),
    ({"choice": [1], "uniform": [1, 2]}, "one distribution per key"),
])
def test_malformed_distributions_fail_with_a_clear_message(spec, error):
    with pytest.raises(ValueError, match=error):
        StudyConfig(search_space={"beta": spec})


def test_grid_needs_a_grid_capable_searcher():
    with pytest.raises(ValueError, match="grid values need search: grid or random"):
        StudyConfig(search="hyperopt", search_space={"beta": {"grid": [0.5, 1.0]}})
    cfg = StudyConfig(search="grid", search_space={"beta": {"grid": [0.5, 1.0]}, "latent_dim": {"choice": [2, 4]}})
    space = cfg.param_space()
    assert space["beta"] == {"grid_search": [0.5, 1.0]}
    assert space["latent_dim"] == {"grid_search": [2, 4]}  # choice is enumerated under search: grid


def test_distributions_map_to_ray_domains_with_rays_semantics():
    # YAML 1.1 reads 1e-4 (no dot) as a string: it must still become a number
    lr = to_tune("lr", {"loguniform": ["1e-4", "1e-2"]})
    samples = [lr.sample() for _ in range(200)]
    assert 1e-4 <= min(samples) and max(samples) <= 1e-2
    depth = to_tune("regressor_depth", {"randint": [1, 3]})
    assert {depth.sample() for _ in range(200)} == {1, 2}  # Ray's randint: upper bound exclusive
    assert to_tune("batch_size", 8) == 8  # a plain value is held fixed


def test_tracking_uri_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve_tracking_uri(None, tmp_path / "store")
    assert default == f"sqlite:///{(tmp_path / 'store' / 'mlflow.db').resolve()}"
    assert artifact_root(default) == (tmp_path / "store" / "mlartifacts").resolve().as_uri()
    assert resolve_tracking_uri("http://config:5000", tmp_path) == "http://config:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri("http://config:5000", tmp_path) == "http://env:5000"  # MLflow's convention
    assert resolve_tracking_uri("http://config:5000", tmp_path, explicit="http://cli:1") == "http://cli:1"
    assert artifact_root("http://env:5000") is None


def test_error_reason_is_the_innermost_exception_line():
    tb = ("Traceback (most recent call last):\n  File x\nray.exceptions.RayTaskError(FloatingPointError): "
          "ray::f()\n  File y\nFloatingPointError: loss is NaN at epoch 1, batch 2\n")
    assert reason_from_traceback(tb) == "FloatingPointError: loss is NaN at epoch 1, batch 2"


def test_cli_help_of_every_verb():
    import subprocess
    import sys

    for verb in ("run", "resume", "ablate", "promote"):
        out = subprocess.run([sys.executable, "-m", "tuning", verb, "--help"], capture_output=True, text=True,
                             cwd=os.getcwd(), timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"python -m tuning {verb}" in out.stdout
