"""A dataset folder as one in-memory object, to ship it to processes on nodes that cannot see it.

On a Ray cluster without shared storage a dataset written by the driver (e.g. inside a job's
working directory, which Ray unpacks separately on every node) exists on the driver's node only.
The study driver packs it (:func:`pack_dataset`) and puts it into Ray's object store once; a trial on
another node unpacks it into a node-local folder (:func:`unpack_dataset`) and trains from there.
Pure file handling, no Ray: the tuning stage does the shipping.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from data_pipeline.io import DATASET_YAML, DataError

#: Folders of a dataset that are derived on every node, never shipped (the volume cache of VoxelDataset).
DERIVED = ("cache",)


def dataset_files(root: str | os.PathLike) -> list[Path]:
    """The files of a dataset folder that make it (relative paths, sorted): everything but DERIVED."""
    root = Path(root)
    if not (root / DATASET_YAML).is_file():
        raise DataError(f"{root}: not a dataset folder (no {DATASET_YAML})")
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).parts[0] not in DERIVED)


def dataset_size(root: str | os.PathLike) -> int:
    """Bytes of the files :func:`pack_dataset` would ship."""
    return sum((Path(root) / rel).stat().st_size for rel in dataset_files(root))


def pack_dataset(root: str | os.PathLike) -> dict:
    """The dataset folder ``root`` as ``{"key": content hash, "files": {relative path: bytes}}``.

    ``key`` (16 hex digits) changes when any shipped file changes; it names the unpacked copy.
    """
    root = Path(root)
    files, h = {}, hashlib.sha256()
    for rel in dataset_files(root):
        data = (root / rel).read_bytes()
        files[rel.as_posix()] = data
        h.update(rel.as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    return {"key": h.hexdigest()[:16], "files": files}


def unpack_dataset(packed: dict, parent: str | os.PathLike) -> Path:
    """Write a packed dataset to ``parent/<key>`` (once: an existing complete copy is reused) and
    return that folder. Atomic: the folder appears complete or not at all, also with several
    processes unpacking the same dataset at once."""
    dest = Path(parent) / packed["key"]
    if (dest / DATASET_YAML).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{packed['key']}-", dir=dest.parent))
    try:
        for rel, data in packed["files"].items():
            path = tmp / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise DataError(f"packed dataset: unsafe path {rel!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process put its complete copy there first
            if not (dest / DATASET_YAML).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
