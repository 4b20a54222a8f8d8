"""Resolve a model reference (MLflow URI or checkpoint folder) into what the search needs.

``resolve_model("models:/pvae@champion")`` downloads the registered model's artifacts with
``mlflow.artifacts.download_artifacts`` (tracking URI: the config's, else ``MLFLOW_TRACKING_URI``,
else the shared default ``sqlite:///runs/tune/mlflow.db``: core.tracking) and finds the pVAE checkpoint
folder inside (the folder holding ``config.json`` + ``model.safetensors``, see
``models/checkpoint.py``); a local path is used directly. Then the training latents are computed
on the exact training subset the model was trained on (dataset from the config, else the
``dataset_dir`` recorded in the checkpoint's metrics.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.checkpoint import INFERENCE_FILES
from core.tracking import client, resolve_tracking_uri

CHECKPOINT_FILES = INFERENCE_FILES


class ModelSourceError(ValueError):
    """A model reference that cannot be resolved or loaded; the message names it and the cause."""


def is_uri(ref: str) -> bool:
    return "://" in ref or ref.startswith(("models:/", "runs:/"))


def find_checkpoint(root: Path) -> Path:
    """The folder under ``root`` (itself included) holding a complete pVAE checkpoint."""
    root = Path(root)
    hits = sorted({p.parent for p in root.rglob("config.json")
                   if all((p.parent / f).is_file() for f in CHECKPOINT_FILES)} |
                  ({root} if all((root / f).is_file() for f in CHECKPOINT_FILES) else set()),
                  key=lambda p: (len(p.parts), str(p)))
    if not hits:
        present = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())[:12]
        raise ModelSourceError(f"{root}: no pVAE checkpoint (a folder with {', '.join(CHECKPOINT_FILES)}); "
                               f"found: {present or 'nothing'}")
    return hits[0]


def checkpoint_folder(ref: str, tracking_uri: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Local checkpoint folder of ``ref`` (an MLflow URI is downloaded to ``cache_dir``)."""
    if not ref:
        raise ModelSourceError("no model given: pass --model models:/pvae@champion or a checkpoint folder")
    if not is_uri(ref):
        path = Path(ref)
        if not path.exists():
            raise ModelSourceError(f"model {ref!r}: no such checkpoint folder (and not an MLflow URI "
                                   "such as models:/pvae@champion)")
        return find_checkpoint(path)
    import mlflow

    from core.tracking import using_store

    uri = resolve_tracking_uri(explicit=tracking_uri)
    dst = None
    if cache_dir is not None:
        dst = Path(cache_dir)
        dst.mkdir(parents=True, exist_ok=True)
    try:
        with using_store(uri):  # models:/ URIs resolve in this store's registry
            local = mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=str(dst) if dst else None)
    except Exception as exc:  # MlflowException, OSError, ...: all mean "this reference is unusable"
        raise ModelSourceError(f"model {ref!r} (tracking URI {uri}): cannot download its artifacts: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return find_checkpoint(Path(local))


def registry_dataset(ref: str, tracking_uri: str | None = None) -> str | None:
    """The ``dataset`` tag of the run behind a registered model (``models:/name@alias`` or
    ``models:/name/version``), as the tuning stage records it; None when unknown."""
    if not ref.startswith("models:/"):
        return None
    try:
        c = client(resolve_tracking_uri(explicit=tracking_uri))
        name, _, rest = ref[len("models:/"):].partition("@")
        if rest:
            mv = c.get_model_version_by_alias(name, rest)
        else:
            name, _, version = name.partition("/")
            mv = c.get_model_version(name, version)
        run_id = mv.run_id or mv.tags.get("source_run_id")
        return c.get_run(run_id).data.tags.get("dataset") if run_id else None
    except Exception:  # a best-effort hint only; the caller says what is missing
        return None


@dataclass
class ModelBundle:
    """A loaded model and the training data statistics the inverse design needs.

    mu_train (N, L): latent means of the training subset; y_train (N, P): its raw labels (columns
    ``cfg.properties``); voxel_size: metres (None when the dataset does not state it).
    """

    model: object
    cfg: object
    norm: object
    folder: Path
    dataset: Path
    ids_train: list[str]
    mu_train: np.ndarray
    y_train: np.ndarray
    voxel_size: float | None
    meta: dict = field(default_factory=dict)

    @property
    def properties(self) -> list[str]:
        return list(self.cfg.properties)


def load_bundle(ref: str, dataset: str | None = None, tracking_uri: str | None = None,
                device: str = "cpu", cache_dir: str | Path | None = None) -> ModelBundle:
    """Load the model behind ``ref`` and encode its training subset (see module doc)."""
    from data_pipeline.dataset import VoxelDataset
    from data_pipeline.io import DataError, read_dataset_meta
    from models.checkpoint import load_model, read_metrics
    from models.latent import latent_means

    folder = checkpoint_folder(ref, tracking_uri, cache_dir)
    try:
        model, cfg, norm = load_model(folder, device=device)
    except Exception as exc:
        raise ModelSourceError(f"model {ref!r} ({folder}): cannot load the checkpoint: "
                               f"{type(exc).__name__}: {exc}") from None
    data_dir = dataset
    if not data_dir:
        recorded = read_metrics(folder).get("dataset_dir")
        tagged = registry_dataset(ref, tracking_uri)
        data_dir = next((d for d in (recorded, tagged) if d and (Path(d) / "dataset.yaml").is_file()),
                        recorded or tagged)
    if not data_dir:
        raise ModelSourceError(f"model {ref!r}: the checkpoint does not record its dataset; pass --dataset")
    data_dir = Path(data_dir)
    try:
        meta = read_dataset_meta(data_dir)
    except DataError as exc:
        raise ModelSourceError(f"model {ref!r}: dataset {data_dir}: {exc} (pass --dataset)") from None
    if int(meta["dims"]) != cfg.dims:
        raise ModelSourceError(f"model {ref!r} is {cfg.dims}D but dataset {data_dir} is {meta['dims']}D")
    train = VoxelDataset(data_dir, "train", properties=cfg.properties, fractions=tuple(cfg.split_fractions),
                         split_seed=cfg.split_seed, dataset_size=cfg.dataset_size, subset_seed=cfg.seed)
    ids, mu = latent_means(model, train, device=device)
    vs = meta.get("voxel_size")
    return ModelBundle(model, cfg, norm, folder, data_dir, ids, np.asarray(mu, np.float64),
                       np.asarray(train.targets, np.float64), float(vs) if vs else None, meta)
