"""core.tracking: the store an MLflow fluent call uses is set for a block only."""
import os

import mlflow

from core.tracking import using_store


def test_using_store_sets_tracking_and_registry_for_the_block_only(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    with using_store(uri):
        assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
        assert os.environ["MLFLOW_REGISTRY_URI"] == uri  # what a child started inside would inherit
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert "MLFLOW_REGISTRY_URI" not in os.environ and "MLFLOW_TRACKING_URI" not in os.environ


def test_using_store_restores_after_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a.db'}")
    before = mlflow.get_registry_uri()
    try:
        with using_store(f"sqlite:///{tmp_path / 'b.db'}"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert mlflow.get_registry_uri() == before
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'a.db'}"
