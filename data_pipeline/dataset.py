"""The torch ``Dataset`` over an on-disk dataset, with seeded train/val/test splits.

Volumes are decoded from TIFF once into a uint8 cache file (``<root>/cache/volumes-<key>.npy``,
memory-mapped afterwards), so a training epoch is bound by the model, not by TIFF decoding. The key
covers the ids, the shape and each TIFF's size, mtime and inode: a volume replaced under the same
id gets a new cache, never the stale one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from core.properties import diagonal_columns
from data_pipeline.io import (K_COLUMNS, DataError, atomic_path, read_dataset_meta,
                              read_properties, read_volume, volume_path)
from data_pipeline.morphology import LEARNABLE, learnable_descriptors

SPLITS = ("train", "val", "test")


def labeled_table(root: str | os.PathLike, labelers: Sequence[str] | None = None,
                  columns: Sequence[str] | None = None, exclude_labelers: Sequence[str] = ()):
    """Rows of properties.csv whose labels are usable (status ok, no NaN in the properties).

    Parameters
    ----------
    labelers : keep only rows of these labelers ("lbm", "surrogate", "none"; a labeler written as
        "surrogate:<checkpoint>" counts as "surrogate"); None = rows of any labeler
    exclude_labelers : drop rows of these labelers (e.g. ("surrogate",): ground truth only)
    columns : the property columns that must not be NaN; None = porosity and every k column present
        (a surrogate that predicts only the diagonal leaves the off-diagonals of its rows empty)
    """
    meta = read_dataset_meta(root)
    df = read_properties(root)
    if df.empty:
        raise DataError(f"{Path(root) / 'properties.csv'}: no labeled samples")
    if "status" in df.columns:
        df = df[df["status"].fillna("ok") == "ok"]
    if labelers is not None:
        kind = df["labeler"].astype(str).str.split(":").str[0] if "labeler" in df.columns else None
        if kind is None:
            raise DataError(f"{Path(root) / 'properties.csv'}: no labeler column to filter on {list(labelers)}")
        df = df[kind.isin(list(labelers))]
    if exclude_labelers and "labeler" in df.columns:
        df = df[~df["labeler"].astype(str).str.split(":").str[0].isin(list(exclude_labelers))]
    if columns is None:
        cols = ["porosity"] + [c for c in K_COLUMNS[int(meta["dims"])] if c in df.columns]
    else:
        cols = [c for c in columns if c in df.columns]
    df = df.dropna(subset=cols)
    return df.sort_values("sample_id").reset_index(drop=True)


def split_ids(ids: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
    """Deterministic split of sample ids into train/val/test.

    The result depends only on the set of ids, the fractions and the seed (not on their order).
    Every split of a dataset with at least 3 samples gets at least one sample.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids = sorted(ids)
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 and fractions[1] > 0 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 and fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    parts = np.split(order, [n_train, n_train + n_val])
    return {name: [ids[i] for i in sorted(p)] for name, p in zip(SPLITS, parts)}


def subset_ids(ids: Sequence[str], size: int | None, seed: int = 0) -> list[str]:
    """A seeded subset of ``size`` ids (all of them when size is None or >= len(ids)).

    Nested: for one seed, the subset of size n is contained in the subset of size m > n,
    so dataset-size ablations compare like with like.
    """
    ids = sorted(ids)
    if size is None or size >= len(ids):
        return ids
    if size < 1:
        raise ValueError(f"dataset_size must be >= 1, got {size}")
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:size])


def dataset_hash(root: str | os.PathLike) -> str:
    """Short content hash of dataset.yaml + properties.csv (identifies a labeled dataset)."""
    h = hashlib.sha256()
    for name in ("dataset.yaml", "properties.csv"):
        p = Path(root) / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _file_stamp(path: Path) -> list[int]:
    """(size, mtime_ns, inode) of a volume file: changes when the file is rewritten (write_volume
    replaces it atomically: new inode), so a cache key built from it follows the content."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (its sample is in properties.csv)") from None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _volume_cache(root: Path, ids: list[str], shape: tuple[int, ...]) -> np.memmap:
    """uint8 memmap (N, *shape) of the volumes of ``ids``, built once and reused."""
    cache_dir = root / "cache"
    key = hashlib.sha256(json.dumps([ids, list(shape), [_file_stamp(volume_path(root, sid)) for sid in ids]])
                         .encode()).hexdigest()[:16]
    path = cache_dir / f"volumes-{key}.npy"
    full = (len(ids), *shape)
    if not path.is_file():
        with atomic_path(path) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=full)
            for i, sid in enumerate(ids):
                im = read_volume(volume_path(root, sid))
                if im.shape != tuple(shape):
                    raise DataError(f"{volume_path(root, sid)}: shape {im.shape}, dataset.yaml says {tuple(shape)}")
                mm[i] = im
            mm.flush()
            del mm
    mm = np.load(path, mmap_mode="r")
    if mm.shape != full:
        raise DataError(f"{path}: stale cache (shape {mm.shape}, expected {full}); delete it")
    return mm


class VoxelDataset(Dataset):
    """Labeled volumes of one split of a dataset folder.

    Parameters
    ----------
    root : dataset folder (README.md, "On-disk dataset")
    split : "train", "val", "test" or "all"
    properties : property columns returned as targets; default porosity and the diagonal k. A
        morphology descriptor of :data:`data_pipeline.morphology.LEARNABLE` that properties.csv
        lacks is measured on the volumes of the split
    fractions, split_seed : the split (fixed per dataset so val/test never move)
    dataset_size, subset_seed : train on a seeded nested subset of the split (None = all)
    labelers : use only rows of these labelers (e.g. ["lbm"] to train a surrogate on solver labels
        of a mixed dataset); None = all. The split is drawn among the rows kept.

    Items are ``(x, y)``: x (1, *shape) float32 in {0, 1} (1 = pore), y (P,) float32 raw
    values (porosity, permeability in lattice units); normalization belongs to the model.
    """

    def __init__(self, root, split: str = "train", properties: Sequence[str] | None = None,
                 fractions=(0.8, 0.1, 0.1), split_seed: int = 0,
                 dataset_size: int | None = None, subset_seed: int = 0, labelers: Sequence[str] | None = None,
                 exclude_labelers: Sequence[str] = ()):
        self.root = Path(root)
        self.meta = read_dataset_meta(self.root)
        self.dims = int(self.meta["dims"])
        self.shape = tuple(int(s) for s in self.meta["shape"])
        if properties is None:
            properties = ["porosity"] + diagonal_columns(self.dims)
        table = labeled_table(self.root, labelers=labelers, columns=properties,
                              exclude_labelers=exclude_labelers)
        computed = [p for p in properties if p not in table.columns and p in LEARNABLE]
        missing = [p for p in properties if p not in table.columns and p not in LEARNABLE]
        if missing:
            raise DataError(f"{self.root / 'properties.csv'}: no column(s) {missing}")
        self.properties = list(properties)
        all_ids = table["sample_id"].tolist()
        if split == "all":
            ids = sorted(all_ids)
        elif split in SPLITS:
            ids = split_ids(all_ids, fractions, split_seed)[split]
        else:
            raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
        self.ids = subset_ids(ids, dataset_size, subset_seed)
        table = table.set_index("sample_id").loc[self.ids].copy()
        self._volumes = _volume_cache(self.root, self.ids, self.shape) if self.ids else None
        if computed:  # morphology descriptors that properties.csv does not store: measured on the volumes
            values = learnable_descriptors(self.volumes(), computed) if self.ids else np.zeros((0, len(computed)))
            for j, name in enumerate(computed):
                table[name] = values[:, j]
        self.targets = np.array(table[self.properties].to_numpy(np.float32), copy=True)  # (N, P), writable

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        x = torch.from_numpy(np.asarray(self._volumes[i], dtype=np.float32))[None]  # (1, *shape)
        y = torch.from_numpy(self.targets[i])  # (P,)
        return x, y

    def volumes(self) -> np.ndarray:
        """All volumes of this split as a bool array (N, *shape)."""
        return np.asarray(self._volumes, dtype=bool)
