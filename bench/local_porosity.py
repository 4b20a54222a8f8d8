"""Is a design's solid spread like the material's, or gathered into clumps with an open band?
The local porosity spread (local porosity theory, Hilfer 1991): the standard deviation over all
positions of the porosity in a periodic w x w (x w) window, per structure. Specific surface,
radial S2 and the anisotropy check are blind to solid that gathers into one or two clumps beside
an open band (bench/RESULTS.md "Smoothed texture noise", "Delivery to the voxel"); this number is
not. Prints its spread over a dataset's structures (the reference), and for each candidate of
design runs its ratio to the median of the reference structures within +-``--dphi`` of the
candidate's porosity, and whether it lies above every one of them.

    python bench/local_porosity.py --dataset runs/lc2d/data120 --window 16 \
        --designs runs/exp20/des_new_s0 runs/exp20/desbox_s0 ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, before bench/inverse.py
from data_pipeline.io import read_volume  # noqa: E402
from data_pipeline.morphology import local_porosity_spread  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="dataset folder (volumes/*.tif: the reference)")
    ap.add_argument("--window", type=int, default=None,
                    help="window edge, voxels (default: a quarter of the smallest edge, as the design check)")
    ap.add_argument("--designs", nargs="*", default=[], help="design output folders (candidates/*/*.tif, results.csv)")
    ap.add_argument("--dphi", type=float, default=0.05, help="porosity half-width of a candidate's reference set")
    a = ap.parse_args(argv)
    ims = [read_volume(p) for p in sorted(Path(a.dataset, "volumes").glob("*.tif"))]
    phi = np.array([im.mean() for im in ims])
    ref = np.array([local_porosity_spread(im, a.window) for im in ims])
    print(f"{a.dataset}: {len(ref)} structures, local porosity std ({f'{a.window}-voxel' if a.window else 'quarter-edge'} window) median "
          f"{np.median(ref):.4f}, 5-95% {np.quantile(ref, 0.05):.4f}-{np.quantile(ref, 0.95):.4f}, max {ref.max():.4f}")
    import pandas as pd
    for d in a.designs:
        res = pd.read_csv(Path(d, "results.csv"))
        cells = []
        for _, row in res.iterrows():
            im = read_volume(Path(d, row["tif"]))
            s, near = local_porosity_spread(im, a.window), ref[np.abs(phi - im.mean()) <= a.dphi]
            k = next((row[c] for c in res.columns if c.startswith("verified_k_")), float("nan"))
            cells.append(f"#{row['candidate']} phi {im.mean():.3f} k {k:.3f} {'HIT' if row['hit'] else 'miss'} {s:.4f} "
                         f"({s / np.median(near):.2f}x the median of {len(near)}; above all: {'yes' if s > near.max() else 'no'})")
        print(f"{d}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
