"""Read throughput of the training Dataset (volumes/s at 64^3), by hand: python bench/dataset_read.py.

Builds (once, under --root) a porosity-labeled dataset of N blob volumes at SIZE^3, then times:
- tiff: decoding every volume with tifffile (what an uncached Dataset would pay per epoch);
- first epoch: VoxelDataset construction (TIFF -> uint8 memmap cache, done once) + one pass;
- cached epoch: a pass over a DataLoader (batch 8, shuffled, 0 workers) from the memmap cache.
Prints one JSON record; --json prints only that.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from data_pipeline.build import BuildConfig, build_dataset  # noqa: E402
from data_pipeline.dataset import VoxelDataset  # noqa: E402
from data_pipeline.io import read_volume, volume_path  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--root", default="runs/bench/dataset_read")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.root) / f"n{args.n}_s{args.size}"
    if not (root / "properties.csv").is_file():
        cfg = BuildConfig(out=str(root), size=args.size, n_samples=args.n, label="none",
                          generators={"blobs": {"porosity": {"uniform": [0.4, 0.8]}}})
        build_dataset(cfg, progress=not args.json)
    shutil.rmtree(root / "cache", ignore_errors=True)
    ids = sorted(p.stem for p in (root / "volumes").glob("*.tif"))

    t = time.perf_counter()
    for sid in ids:
        read_volume(volume_path(root, sid))
    tiff_rate = len(ids) / (time.perf_counter() - t)

    t = time.perf_counter()
    ds = VoxelDataset(root, split="all", properties=["porosity"])
    for i in range(len(ds)):
        ds[i]
    first_rate = len(ds) / (time.perf_counter() - t)

    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    rates = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        n = 0
        for x, y in loader:  # x (B, 1, S, S, S)
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t))
    rec = {"bench": "dataset_read", "size": args.size, "n": len(ds), "batch": args.batch,
           "tiff_decode_volumes_per_s": round(tiff_rate, 1),
           "first_epoch_with_cache_build_volumes_per_s": round(first_rate, 1),
           "cached_epoch_volumes_per_s": round(float(np.median(rates)), 1),
           "cached_epoch_MB_per_s": round(float(np.median(rates)) * args.size ** 3 * 4 / 1e6, 1),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
