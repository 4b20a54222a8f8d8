"""Morphology of inverse-design candidates against the held-out samples their targets came from.

Reads a ``bench/inverse.py`` output (``--out``, variant folder ``design/<variant>``) and the dataset,
and prints, per method, the median ratio candidate / target sample of the specific surface and of
the two-point correlation length (S2 normalized, first lag below 1/e), for candidate #0 of every
target. The targets are matched to samples in the order ``bench/inverse.py`` takes them (test split,
then val, skipping samples with k = 0 on a targeted axis).

    python bench/inverse_morphology.py --design runs/bench_inverse/design/solver --dataset runs/bench32/data

With today's bench (target sets, issue 14) the samples are named by its ``targets_<set>_kinds.csv``
(target_id -> sample_id; for ood targets the sample whose porosity was taken), read from the
dataset they came from (dev: the model's dataset; eval: the evaluation dataset):

    python bench/inverse_morphology.py --design runs/bench_inverse_eval/design/eval/seed0 \
        --targets runs/bench_inverse_eval/targets_eval_kinds.csv --dataset runs/eval32/data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.properties import is_k_component  # noqa: E402


def correlation_length(im: np.ndarray) -> float:
    """First lag (voxels) where the normalized two-point correlation drops below 1/e."""
    from data_pipeline.descriptors import two_point_correlation

    r, s2 = two_point_correlation(im)
    phi = im.mean()
    s = (s2 - phi ** 2) / max(phi - phi ** 2, 1e-12)
    i = int(np.argmax(s < np.exp(-1)))
    return float(r[i]) if i > 0 else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--design", required=True, help="a design folder written by bench/inverse.py")
    p.add_argument("--dataset", required=True)
    p.add_argument("--components", default="porosity,k_xx")
    p.add_argument("--targets", help="targets_<set>_kinds.csv of bench/inverse.py: target_id -> sample_id of --dataset")
    args = p.parse_args(argv)

    import tifffile

    from data_pipeline.dataset import VoxelDataset
    from data_pipeline.descriptors import specific_surface

    comps = args.components.split(",")
    samples = {}
    if args.targets:
        from data_pipeline.io import read_volume, volume_path

        t = pd.read_csv(args.targets, dtype={"sample_id": str})
        for tid, sid in zip(t["target_id"], t["sample_id"]):
            samples[tid] = read_volume(volume_path(args.dataset, sid)).astype(bool)
    else:
        for split in ("test", "val"):
            ds = VoxelDataset(args.dataset, split, properties=comps)
            for im, y in zip(ds.volumes(), ds.targets):
                if all(float(v) > 0 for c, v in zip(comps, y) if is_k_component(c)):
                    samples[f"t{len(samples)}"] = im
    design = Path(args.design)
    res = pd.read_csv(design / "results.csv")
    rows = []
    for (tid, method), _ in res[res["candidate"] == 0].groupby(["target_id", "method"]):
        target = samples[tid]
        cand = tifffile.imread(design / "candidates" / tid / f"{method}_0.tif").astype(bool)
        rows.append({"method": method, "Sv": specific_surface(cand) / specific_surface(target),
                     "L": correlation_length(cand) / correlation_length(target)})
    d = pd.DataFrame(rows).groupby("method").median()
    print("median candidate/target ratio over targets (candidate #0):")
    print(d.rename(columns={"Sv": "specific surface", "L": "correlation length"}).to_string(float_format="%.2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
