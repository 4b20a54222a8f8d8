"""``python -m data_pipeline permeability FILE.tif --json``: LBM permeability tensor of one volume.

Prints one JSON object: ``porosity``, ``permeability`` (D x D list, lattice units =
voxel^2, symmetric, indices (x, y[, z]) with x the last array axis), ``converged``, ``steps``,
``residual``, ``max_mach``, ``reynolds``; with ``--voxel-size`` (m) also ``permeability_m2`` and
``permeability_mD``. Errors (bad file, all solid, divergence) go to stderr naming the file; exit 1.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from core.properties import AXES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline permeability",
        description="Permeability tensor of a binary TIFF volume by the lattice Boltzmann method "
                    "(D3Q19/D2Q9, TRT, periodic box, body force; Darcy in lattice units).")
    p.add_argument("file", help="binary TIFF: 2D image or 3D (Z, Y, X) page stack")
    p.add_argument("--json", action="store_true", help="print one JSON object (else a short table)")
    p.add_argument("--pore-value", type=int, default=None,
                   help="voxel value that is pore (default: nonzero = pore; 0 flips it)")
    p.add_argument("--voxel-size", type=float, default=None,
                   help="voxel edge in metres: adds permeability_m2 and permeability_mD")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--tol", type=float, default=1e-5,
                   help="relative change of the mean velocity over 100 steps (default 1e-5)")
    p.add_argument("--max-steps", type=int, default=None, help="step cap (default 100000 in 2D, 20000 in 3D)")
    p.add_argument("--tau", type=float, default=1.0,
                   help="relaxation time (with TRT k does not depend on it; default 1.0)")
    p.add_argument("--collision", default="trt", choices=["trt", "bgk"])
    p.add_argument("--axes", default=None, help="driven axes, e.g. 'x' or 'xz' (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from data_pipeline.io import DataError, read_volume
    from data_pipeline.permeability import SolverError, permeability

    try:
        im = read_volume(args.file, pore_value=args.pore_value)
        if args.voxel_size is not None and not args.voxel_size > 0:
            raise ValueError(f"--voxel-size must be positive (metres), got {args.voxel_size}")
        axes = None
        if args.axes:
            bad = set(args.axes) - set(AXES[:im.ndim])
            if bad:
                raise ValueError(f"--axes: unknown axis {sorted(bad)} for a {im.ndim}D image")
            axes = [AXES.index(a) for a in args.axes]
        tau = args.tau
        res = permeability(im, collision=args.collision, tau=tau, tol=args.tol,
                           max_steps=args.max_steps, dtype=args.dtype, device=args.device, axes=axes)
    except (DataError, SolverError, ValueError, OSError) as exc:
        msg = str(exc)
        if str(args.file) not in msg:
            msg = f"{args.file}: {msg}"
        print(f"permeability: error: {msg}", file=sys.stderr)
        return 1
    out = {"file": str(args.file), "shape": list(im.shape), **res.to_dict(voxel_size=args.voxel_size)}
    if args.json:
        print(json.dumps(out, allow_nan=False))  # strict JSON: null, never NaN
    else:
        names = AXES[:im.ndim]
        print(f"{args.file}: shape {tuple(im.shape)}, porosity {res.porosity:.4f}, "
              f"converged {res.converged} after {res.steps} steps (residual {res.residual:.2e}, "
              f"max Mach {res.max_mach:.3g}, Re {res.reynolds:.3g})")
        k = np.asarray(out["permeability_mD"] if args.voxel_size else out["permeability"], dtype=float)
        unit = "mD" if args.voxel_size else "voxel^2"
        for i, a in enumerate(names):
            print(f"  k_{a}* [{unit}]: " + "  ".join(f"{v:12.5g}" for v in k[i]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
