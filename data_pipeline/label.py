"""``python -m data_pipeline label DATASET``: label an imported dataset (or any dataset folder) in place.

The route after ``python -m data_pipeline import``: the imported folder holds volumes and a
``dataset.yaml`` (``label: none``); this verb runs the build with ``source: DATASET`` and
``out: DATASET`` (or ``--out OTHER`` to leave the import untouched), so it writes ``properties.csv``
with porosity and the permeability tensor of every sample (2D: D2Q9; 3D: D3Q19), solver
diagnostics, and a failed row (status, error) for a sample the solver could not label.
Resumable like the build: a rerun labels only what is missing.

Equivalent build config (what this verb makes; ``python -m data_pipeline build --config FILE``)::

    source: runs/img2d/imported      # the imported dataset folder (or a folder of .tif)
    out: runs/img2d/imported         # the same folder = label in place
    label: lbm
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import failed
from core.config import parse_override
from data_pipeline.build import LABELS, BuildConfig, build_dataset
from data_pipeline.io import DATASET_YAML, DataError
from data_pipeline.label_surrogate import installed_labeler_loader


def label_config(dataset, out=None, **fields) -> BuildConfig:
    """The BuildConfig that labels ``dataset`` into ``out`` (default: in place); ``fields``
    (None values skipped) are further BuildConfig fields (label, num_cpus, solver, ...)."""
    dataset = Path(dataset)
    if not (dataset / DATASET_YAML).is_file() and not any(dataset.glob("*.tif")):
        raise DataError(f"{dataset}: not a dataset folder (no {DATASET_YAML}) nor a folder of .tif volumes; "
                        "import images first: python -m data_pipeline import --kind images2d FOLDER --otsu --out DATASET")
    data = {"source": str(dataset), "out": str(out if out is not None else dataset)}
    data.update({k: v for k, v in fields.items() if v is not None})
    return BuildConfig.from_dict(data, source="python -m data_pipeline label")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline label",
        description="Label the volumes of a dataset folder (e.g. one written by `python -m data_pipeline import`) "
                    "with the LBM solver (2D D2Q9, 3D D3Q19): porosity and the permeability tensor in "
                    "properties.csv, a failed row with the reason for a sample that could not be labeled. "
                    "In place unless --out; resumable.",
        epilog="example:\n  python -m data_pipeline import --kind images2d tifs/ --otsu --out data/img2d\n"
               "  python -m data_pipeline label data/img2d --num-cpus 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="dataset folder (dataset.yaml + volumes/) or a folder of .tif volumes")
    p.add_argument("--out", help="write the labeled dataset here instead (the volumes are copied)")
    p.add_argument("--label", choices=LABELS, help="lbm (default), surrogate (needs --surrogate), mixed, none")
    p.add_argument("--surrogate", metavar="PATH", help="checkpoint folder of a trained surrogate")
    p.add_argument("--num-cpus", type=int, help="local Ray CPUs (default all)")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://head:10001)")
    p.add_argument("--serial", action="store_true", help="label in this process, without Ray")
    p.add_argument("--solver", action="append", default=[], metavar="KEY=VALUE",
                   help="solver option, e.g. --solver tol=1e-5 (repeatable; see data_pipeline.permeability)")
    p.add_argument("--voxel-size", type=float, help="voxel edge in metres (recorded in dataset.yaml)")
    p.add_argument("--retry-failed", action="store_true", help="relabel samples whose row is failed")
    p.add_argument("--recheck-percolation", action="store_true",
                   help="relabel solver rows whose k = 0 axes the topology test contradicts (labeled before 2026-12-02)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        solver = dict(parse_override(s) for s in args.solver) if args.solver else None
        cfg = label_config(args.dataset, args.out, label=args.label, surrogate=args.surrogate, num_cpus=args.num_cpus,
                           address=args.address, parallel="serial" if args.serial else None, solver=solver,
                           voxel_size=args.voxel_size, retry_failed=True if args.retry_failed else None,
                           recheck_percolation=True if args.recheck_percolation else None)
        load = installed_labeler_loader("surrogate") if cfg.label in ("surrogate", "mixed") else None
        out = build_dataset(cfg, progress=not args.no_progress, load_labeler=load)
    except (DataError, ValueError) as exc:
        return failed("python -m data_pipeline label", exc)
    print(f"dataset: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
