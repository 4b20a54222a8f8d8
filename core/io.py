"""Atomic writes: a file appears complete under its name or not at all."""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def json_safe(obj):
    """Replace non-finite floats by None (and numpy scalars by Python ones) so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    return obj


def write_json(path: str | os.PathLike, data, safe: bool = False) -> None:
    """Write ``data`` as indented JSON atomically (``safe``: non-finite floats -> null)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(data) if safe else data, indent=2))


def write_yaml(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as YAML (key order kept) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
