"""Fixtures of the tuning tests: a tiny labeled dataset written directly (no solver), a local Ray.

The labels are synthetic but physically shaped (porosity measured on the volume; a Kozeny-Carman
permeability k = phi^3 / (180 (1 - phi)^2) d^2 in lattice units): the tuning stage only needs a
dataset in the DESIGN.md layout, and the solver is tested in tests/data_pipeline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_pipeline.io import write_properties, write_volume, write_yaml

SIZE = 16
N_SAMPLES = 16
#: Fixed training settings of a tiny, fast pVAE (seconds per epoch on one core).
TINY_TRAIN = {"channels": [4, 8], "regressor_width": 16, "batch_size": 4, "epochs": 2, "patience": 0,
              "scheduler": "none", "eval_batch_size": 16, "n_generate": 4, "latent_dim": 4}


def make_dataset(root: Path, n: int = N_SAMPLES, size: int = SIZE, seed: int = 0) -> Path:
    """Write ``n`` smoothed-noise volumes (porosity 0.4-0.8) and their labels to ``root``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        phi_target = rng.uniform(0.4, 0.8)
        field = gaussian_filter(rng.standard_normal((size,) * 3), sigma=1.5, mode="wrap")
        im = field < np.quantile(field, phi_target)  # (Z, Y, X) bool, True = pore
        phi = float(im.mean())
        k = phi**3 / (180 * (1 - phi) ** 2) * 4.0**2  # Kozeny-Carman, grain size 4 voxels
        sid = f"s{i:03d}"
        write_volume(root / "volumes" / f"{sid}.tif", im)
        rows.append({"sample_id": sid, "porosity": phi, "k_xx": k, "k_yy": k * 1.05, "k_zz": k * 0.95,
                     "k_xy": 0.0, "k_xz": 0.0, "k_yz": 0.0, "steps": 0, "converged": True, "residual": 0.0,
                     "max_mach": 0.0, "labeler": "kozeny-carman-test", "status": "ok", "error": ""})
    write_properties(root, pd.DataFrame(rows))
    write_yaml(root / "dataset.yaml", {"name": "tuning-test", "dims": 3, "shape": [size] * 3,
                                       "pore": 1, "generator": "gaussian-filtered noise", "seed": seed})
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the in-process studies of one test module (started once, stopped after)."""
    from tuning.study import ray_session

    with ray_session(None, num_cpus=2):
        yield


@pytest.fixture()
def clean_tracking_env(monkeypatch):
    """Tests choose their tracking URI explicitly: an inherited MLFLOW_TRACKING_URI must not leak in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield

#: The five hyperparameters users tune, as a small search space (tiny values).
CORE_SPACE = {"latent_dim": {"choice": [2, 4]}, "beta": {"loguniform": [0.1, 1.0]},
              "lr": {"loguniform": [1e-3, 3e-3]}, "dataset_size": {"choice": [6, 12]},
              "regressor_depth": {"randint": [1, 3]}}


def tiny_study(dataset: Path, storage: Path, name: str, **kw):
    """A StudyConfig of tiny trials on ``dataset`` (1 CPU per trial, 2 at once)."""
    from tuning.config import StudyConfig

    train = dict(TINY_TRAIN, **kw.pop("train", {}))
    kw.setdefault("search_space", dict(CORE_SPACE))
    return StudyConfig(name=name, dataset=str(dataset), storage_path=str(storage), train=train,
                       num_samples=kw.pop("num_samples", 2), max_concurrent=kw.pop("max_concurrent", 2),
                       cpu=1, **kw)


@pytest.fixture(scope="session")
def tiny():
    """Helpers of the tuning tests: ``tiny.study(...)``, ``tiny.TRAIN``, ``tiny.CORE_SPACE``, ``tiny.make_dataset``."""
    import types

    return types.SimpleNamespace(study=tiny_study, TRAIN=TINY_TRAIN, CORE_SPACE=CORE_SPACE, make_dataset=make_dataset)
