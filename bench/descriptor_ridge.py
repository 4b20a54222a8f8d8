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


def descriptor_ridge():
    """The yardstick's regression: standardized features -> ridge, alpha by inner CV."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


def percolating_xy(dataset, split: str, k: str, fractions=None, split_seed: int = 0):
    """Features (porosity + LEARNABLE descriptors, measured on the volumes) (N, F) and log10 k (N,)
    of the samples of ``split`` that percolate along k's axis (k = 0 left out, as in evaluation)."""
    from data_pipeline.dataset import VoxelDataset
    from data_pipeline.morphology import LEARNABLE

    names = ["porosity", *LEARNABLE]
    kw = {} if fractions is None else {"fractions": tuple(fractions), "split_seed": split_seed}
    ds = VoxelDataset(dataset, split, names + [k], **kw)
    x = ds.targets[:, : len(names)].astype(np.float64)
    y = ds.targets[:, len(names)].astype(np.float64)
    keep = y > 0  # percolating along this axis
    return x[keep], np.log10(y[keep])


def main(argv=None) -> int:
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    from core.properties import diagonal_columns
    from data_pipeline.io import read_dataset_meta
    from data_pipeline.morphology import LEARNABLE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    ks = diagonal_columns(int(read_dataset_meta(args.dataset)["dims"]))
    print(f"{args.dataset}: features porosity, {', '.join(LEARNABLE)}")
    for k in ks:
        x, y = percolating_xy(args.dataset, "all", k)
        scores = []
        for seed in range(args.repeats):
            folds = KFold(args.folds, shuffle=True, random_state=seed)
            scores.append(r2_score(y, cross_val_predict(descriptor_ridge(), x, y, cv=folds)))
        print(f"  log10 {k}: {len(y)} percolating, {args.folds}-fold CV R^2 {np.mean(scores):.3f} "
              f"(min {np.min(scores):.3f}, max {np.max(scores):.3f} over {args.repeats} shuffles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
