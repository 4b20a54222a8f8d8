"""How much of log10 k do the learnable morphology descriptors carry? (issue 16)

A ridge regression (alpha chosen by inner CV) on porosity and the descriptors of
:data:`data_pipeline.morphology.LEARNABLE` (what ``PVAEConfig.descriptors`` asks the global code to
carry), scored by 5-fold cross-validation over every percolating sample of a dataset (k = 0 left
out, as in evaluation), repeated over 5 shuffles; prints the mean R^2 of log10 k per diagonal axis.
A yardstick for the pVAE's test R^2, not a model of the project.

    python bench/descriptor_ridge.py runs/img2d/data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    from core.properties import diagonal_columns
    from data_pipeline.dataset import VoxelDataset
    from data_pipeline.io import read_dataset_meta
    from data_pipeline.morphology import LEARNABLE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    ks = diagonal_columns(int(read_dataset_meta(args.dataset)["dims"]))
    names = ["porosity", *LEARNABLE]
    ds = VoxelDataset(args.dataset, "all", names + ks)  # the descriptors measured on the volumes
    x = ds.targets[:, : len(names)].astype(np.float64)  # (N, F)
    print(f"{args.dataset}: {len(ds)} samples; features {', '.join(names)}")
    for j, k in enumerate(ks):
        y = ds.targets[:, len(names) + j].astype(np.float64)
        keep = y > 0  # percolating along this axis
        f = (x[keep] - x[keep].mean(0)) / x[keep].std(0)
        scores = []
        for seed in range(args.repeats):
            folds = KFold(args.folds, shuffle=True, random_state=seed)
            pred = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 13)), f, np.log10(y[keep]), cv=folds)
            scores.append(r2_score(np.log10(y[keep]), pred))
        print(f"  log10 {k}: {keep.sum()} percolating, {args.folds}-fold CV R^2 {np.mean(scores):.3f} "
              f"(min {np.min(scores):.3f}, max {np.max(scores):.3f} over {args.repeats} shuffles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
