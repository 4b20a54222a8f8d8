"""MLflow basics every stage shares: the tracking URI (one resolver, one default), a client, an experiment.

Tracking URI, first match wins: an explicit one (``--tracking-uri``, a design config's
``tracking_uri``), ``MLFLOW_TRACKING_URI`` (MLflow's own convention), a study config's
``tracking_uri``, else the embedded store ``sqlite:///<storage_path>/mlflow.db`` with artifacts in
``<storage_path>/mlartifacts``; ``storage_path`` defaults to ``runs/tune`` (the tuning stage's
folder), so the tuning stage writes and the inverse stage reads the same store without any
environment variable. mlflow is imported only when a client is made.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

#: Where the embedded store lives when nothing else is said (relative to the working directory,
#: the repository root where every command runs).
DEFAULT_STORAGE = "runs/tune"
#: Experiment tag that makes the MLflow UI open in its model-training view.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def resolve_tracking_uri(config_uri: str | None = None, storage_path: str | os.PathLike = DEFAULT_STORAGE,
                         explicit: str | None = None) -> str:
    """The tracking URI a command uses (see the module doc for the order)."""
    for uri in (explicit, os.environ.get("MLFLOW_TRACKING_URI"), config_uri):
        if uri:
            return uri
    if "://" in str(storage_path):  # s3:// storage: no local folder to put the store in
        storage_path = "runs"
    folder = Path(storage_path).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def artifact_root(tracking_uri: str) -> str | None:
    """Artifact location for new experiments of a SQLite store (``<db folder>/mlartifacts``);
    None for a tracking server, which chooses its own (``--artifacts-destination``)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def client(tracking_uri: str):
    """A client of this store for runs AND the model registry (never the process-wide registry URI,
    which an earlier call in the same process may have pointed elsewhere)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextmanager
def using_store(tracking_uri: str):
    """Point MLflow's fluent API (``mlflow.pyfunc.log_model``, ``models:/`` downloads) at one store for
    the duration of a block, tracking AND registry, then restore what was set before.

    ``mlflow.set_registry_uri`` is process-wide and also exports ``MLFLOW_REGISTRY_URI`` to every
    child process started later; left set, a long-lived process that promotes into one store would
    read registered models of another store from the first one.
    """
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    saved = {"tracking": tracking_utils._tracking_uri, "registry": registry_utils._registry_uri,
             "env": {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["tracking"])  # None: back to MLflow's default resolution
        registry_utils._registry_uri = saved["registry"]
        for k, v in saved["env"].items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def get_or_create_experiment(tracking_uri: str, name: str) -> str:
    """Experiment id of ``name`` (created with the model-training view tag when missing)."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment {name!r} is deleted in {tracking_uri}; restore it "
                             "(mlflow experiments restore) or choose another name (experiment:)")
        if exp.tags.get("mlflow.experimentKind") is None:
            c.set_experiment_tag(exp.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=artifact_root(tracking_uri), tags=dict(EXPERIMENT_KIND))
    except Exception:  # created meanwhile by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
