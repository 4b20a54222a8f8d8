"""Benchmark of synthesis: the foam family's Voronoi edges (PoreSpy's loop against ours, same run,
alternating, identical voxels checked) and the serial synthesis of a build config's samples.

    python bench/synth.py --config configs/data_demo.yaml --repeats 3

Prints min / median seconds per volume of each edge rasterization and their ratio, then the time
to synthesize every sample of the config in one process (what `data_pipeline build` does before
it labels), by family. Run it alone: on 2 shared cores another job changes the numbers.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def edges(size: int, dims: int, cell_size: float, n: int, repeats: int) -> dict:
    import porespy as ps

    from data_pipeline.synth import foam_cells, voronoi_edges

    shape = (size,) * dims
    ncells = foam_cells(shape, cell_size)
    draw = {"porespy": lambda s: ps.generators.voronoi_edges(list(shape), ncells=ncells, r=0, flat_faces=True, seed=s),
            "ours": lambda s: voronoi_edges(shape, ncells, s)}
    times = {name: [] for name in draw}
    for _ in range(repeats):
        for name, fn in draw.items():  # alternating, so a slow spell of the machine hits both
            t0 = time.perf_counter()
            for s in range(n):
                fn(s)
            times[name].append((time.perf_counter() - t0) / n)
    for s in range(n):
        assert np.array_equal(draw["ours"](s), draw["porespy"](s)), f"seed {s}: voxels differ"
    out = {k: (min(v), float(np.median(v))) for k, v in times.items()}
    print(f"voronoi edges {shape}, {ncells} cells, {n} volumes x {repeats} repeats (s per volume, min / median):")
    for k, (lo, med) in out.items():
        print(f"  {k:8s} {lo:.3f} / {med:.3f}")
    print(f"  ratio of medians {out['porespy'][1] / out['ours'][1]:.1f}x; identical voxels on all {n} seeds")
    return out


def synthesize_config(path: str) -> None:
    from data_pipeline.build import load_build_config, plan_sample, synthesize

    cfg = load_build_config(path)
    per = defaultdict(lambda: [0, 0.0])
    t0 = time.perf_counter()
    for i in range(cfg.n_samples):
        plan = plan_sample(cfg, i)
        t = time.perf_counter()
        synthesize(cfg, plan)
        per[plan["family"]][0] += 1
        per[plan["family"]][1] += time.perf_counter() - t
    total = time.perf_counter() - t0
    print(f"synthesize {path}: {cfg.n_samples} samples at {cfg.size}^{cfg.dims} in {total:.1f} s")
    for fam, (k, s) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"  {fam:24s} {k:4d} samples {s:6.1f} s ({s / k:.3f} s each)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/data_demo.yaml", help="build config whose samples are synthesized")
    p.add_argument("--sizes", type=int, nargs="+", default=[24, 32], help="edge lengths of the edge benchmark")
    p.add_argument("--cell-size", type=float, default=7.0, help="foam cell size in voxels (ncells = (size / cell)^3)")
    p.add_argument("--n", type=int, default=5, help="volumes per timing")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    import porespy  # noqa: F401  (imported once, before any timing)

    for size in args.sizes:
        edges(size, 3, args.cell_size, args.n, args.repeats)
    synthesize_config(args.config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
