"""``python -m data_pipeline describe DATASET``: descriptors of every volume and a summary figure.

Writes into ``<DATASET>/describe/`` (or ``--out``):
- ``descriptors.csv``: one row per sample: porosity, specific_surface (1/voxel, marching cubes),
  pore_diameter_mean / _median (voxels, local thickness), percolates_x/y/z;
- ``descriptors.json``: the same plus the S2(r) curves and pore-size histograms;
- ``summary.png``: slices, histograms of porosity and log10 k, S2 curves.
The pure functions live in :mod:`data_pipeline.descriptors`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.cli import failed
from core.properties import diagonal_columns
from data_pipeline.descriptors import (describe_volume, local_thickness, percolates, porosity,  # noqa: F401
                                       pore_size_distribution, specific_surface, two_point_correlation)
from data_pipeline.io import (VOLUMES_DIR, DataError, atomic_path, read_dataset_meta, read_properties,
                              read_volume)

SCALAR_COLUMNS = ["sample_id", "porosity", "specific_surface", "anisotropy", "pore_diameter_mean", "pore_diameter_median"]


def describe_dataset(root: str | Path, out: str | Path | None = None, max_samples: int | None = None,
                     progress: bool = True) -> Path:
    """Describe every volume of dataset ``root``; returns the output folder (default root/describe)."""
    from tqdm import tqdm

    root = Path(root)
    meta = read_dataset_meta(root)
    out = Path(out) if out is not None else root / "describe"
    paths = sorted((root / VOLUMES_DIR).glob("*.tif"))
    if not paths:
        raise DataError(f"{root / VOLUMES_DIR}: no .tif volumes")
    if max_samples is not None:
        paths = paths[:max_samples]
    records = []
    for p in tqdm(paths, desc="describe", unit="sample", disable=not progress):
        d = describe_volume(read_volume(p))
        d["sample_id"] = p.stem
        records.append(d)
    scalars = pd.DataFrame([{k: v for k, v in d.items() if k not in ("s2_r", "s2", "psd")} for d in records])
    scalars = scalars[SCALAR_COLUMNS + [c for c in scalars.columns if c not in SCALAR_COLUMNS]]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "descriptors.csv") as tmp:
        scalars.to_csv(tmp, index=False)
    with atomic_path(out / "descriptors.json") as tmp:
        tmp.write_text(json.dumps({"dataset": str(root), "dims": meta["dims"], "shape": meta["shape"],
                                   "voxel_size": meta.get("voxel_size"),
                                   "units": {"specific_surface": "1/voxel", "anisotropy": "-", "pore_diameter": "voxel",
                                             "s2_r": "voxel"},
                                   "specific_surface_method": "marching_cubes", "samples": records}))
    summary_figure(root, records, out / "summary.png")
    return out


def summary_figure(root: Path, records: list[dict], path: Path) -> None:
    """Slices of three samples, histograms of porosity and log10 k, normalized S2 curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = read_dataset_meta(root)
    dims = int(meta["dims"])
    props = read_properties(root)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    for ax, d in zip(axes[0], records[:3]):
        im = read_volume(Path(root) / VOLUMES_DIR / f"{d['sample_id']}.tif")
        sl = im[im.shape[0] // 2] if im.ndim == 3 else im  # (Y, X)
        ax.imshow(sl, cmap="gray", interpolation="nearest")
        ax.set_title(f"{d['sample_id']}  phi={d['porosity']:.3f}" + ("  (mid z slice)" if im.ndim == 3 else ""))
        ax.axis("off")
    for ax in axes[0][len(records[:3]):]:
        ax.axis("off")
    phi = [d["porosity"] for d in records]
    axes[1, 0].hist(phi, bins=min(20, max(5, len(phi) // 3)), color="tab:blue")
    axes[1, 0].set_xlabel("porosity")
    axes[1, 0].set_ylabel("samples")
    ax = axes[1, 1]
    kcols = [c for c in diagonal_columns(dims) if c in props.columns]
    ok = props
    if "status" in props.columns:
        ok = props[props["status"].fillna("ok") == "ok"]
    plotted = False
    for c in kcols:
        k = pd.to_numeric(ok[c], errors="coerce").to_numpy(float)
        k = k[np.isfinite(k) & (k > 0)]
        if k.size:
            ax.hist(np.log10(k), bins=15, alpha=0.5, label=c)
            plotted = True
    if plotted:
        ax.set_xlabel("log10 k (lattice units, voxel$^2$)")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no permeability labels", ha="center", va="center", transform=ax.transAxes)
    ax = axes[1, 2]
    for d in records[:30]:
        r, s2, p = np.asarray(d["s2_r"]), np.asarray(d["s2"]), d["porosity"]
        if 0 < p < 1:
            ax.plot(r, (s2 - p * p) / (p - p * p), lw=0.8, alpha=0.7)
    ax.set_xlabel("r (voxels)")
    ax.set_ylabel("(S2 - phi^2) / (phi - phi^2)")
    ax.set_title("two-point correlation (periodic)")
    fig.suptitle(f"{root}  ({len(records)} samples, {dims}D {tuple(meta['shape'])})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline describe",
        description="Descriptors (porosity, S2, specific surface, pore sizes, percolation) of a dataset "
                    "folder, or of one .tif volume (printed as JSON), and a summary PNG.")
    p.add_argument("target", help="dataset folder (dataset.yaml + volumes/) or a single .tif volume")
    p.add_argument("--out", help="output folder (default <DATASET>/describe)")
    p.add_argument("--max-samples", type=int, help="describe only the first N samples (sorted ids)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    target = Path(args.target)
    try:
        if target.is_file():
            d = describe_volume(read_volume(target))
            print(json.dumps({k: v for k, v in d.items() if k not in ("s2_r", "s2", "psd")}))
            return 0
        out = describe_dataset(target, args.out, args.max_samples, progress=not args.no_progress)
    except DataError as exc:
        return failed("describe", exc)
    df = pd.read_csv(out / "descriptors.csv")
    print(f"described {len(df)} samples: porosity {df.porosity.min():.3f}-{df.porosity.max():.3f}, "
          f"specific surface {df.specific_surface.mean():.3f} 1/voxel (mean)")
    print(f"outputs: {out / 'descriptors.csv'}, {out / 'descriptors.json'}, {out / 'summary.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
