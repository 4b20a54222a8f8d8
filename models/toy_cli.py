"""The `toy` verb: python -m models toy OUT [--n N --size S --dims D --seed SEED]."""
from __future__ import annotations

import argparse

from models.toy import make_toy_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models toy", description=(
        "Write a toy dataset (smoothed-noise volumes; porosity exact, diagonal k from a "
        "Kozeny-Carman proxy, NOT lattice Boltzmann) for smoke runs and benchmarks."))
    p.add_argument("out", help="dataset folder to write")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--size", type=int, default=16, help="edge length, voxels")
    p.add_argument("--dims", type=int, default=3, choices=[2, 3])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    root = make_toy_dataset(args.out, n=args.n, size=args.size, dims=args.dims, seed=args.seed)
    print(f"wrote {args.n} toy samples ({args.size}^{args.dims}) to {root}")
    return 0
