"""The checkpoint folder format both models share, and what kind of model a folder holds.

A checkpoint is a folder, written atomically (built beside the target, then renamed onto it)::

    model.safetensors   model weights (state_dict; safetensors, no pickle)
    config.json         {"kind": "pvae" | "surrogate", ...the full flat config of that model}
    norm.json           normalization statistics (so predictions come back in real units)
    metrics.json        epoch, best_val, history (per-epoch metrics), bad_epochs, ...
    train_state.pt      optimizer, scheduler and RNG state (tensors, numbers, strings, lists and
                        dicts only: loadable with torch.load(..., weights_only=True))

``kind`` is written explicitly; a folder written before it existed is recognised by its config
(a ``latent_dim`` field means a pVAE).
"""
from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
NORM = "norm.json"
METRICS = "metrics.json"
TRAIN_STATE = "train_state.pt"
#: The files a model needs at inference (what a promoted model or a download must hold).
INFERENCE_FILES = (CONFIG, WEIGHTS, NORM)
KINDS = ("pvae", "surrogate")
_NAMES = {"pvae": "pVAE", "surrogate": "surrogate"}
_LONG = {"pvae": "pVAE", "surrogate": "permeability surrogate"}


def config_record(kind: str, cfg_dict: dict) -> dict:
    """What config.json holds: the kind first, then the config's fields."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    return {"kind": kind, **cfg_dict}


def kind_of(record: dict) -> str:
    """The kind of a config.json record (explicit, or for older folders: pVAE iff it has latent_dim)."""
    return record.get("kind") or ("pvae" if "latent_dim" in record else "surrogate")


def read_config_dict(folder, kind: str) -> dict:
    """The config fields of the checkpoint in ``folder`` (without ``kind``), checked to be ``kind``.

    Raises FileNotFoundError when config.json is missing, ValueError when the folder holds the
    other kind of model.
    """
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {folder} is not a {_NAMES[kind]} checkpoint folder")
    record = json.loads(path.read_text())
    found = kind_of(record)
    if found != kind:
        raise ValueError(f"{folder} is a {_NAMES.get(found, found)} checkpoint, not a {_LONG[kind]}")
    return {k: v for k, v in record.items() if k != "kind"}


def read_metrics(folder) -> dict:
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def require_files(folder, names=(WEIGHTS, NORM), what: str = "checkpoint") -> None:
    """FileNotFoundError naming the first missing file of a checkpoint folder."""
    for name in names:
        if not (Path(folder) / name).is_file():
            raise FileNotFoundError(f"{Path(folder) / name}: missing; incomplete {what}")
