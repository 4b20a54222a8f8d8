"""Recount the distinct hits of finished bench/inverse.py runs with translations searched.

`distinct_hits` compares two hits by their minority-phase IoU as they lie in the box; a periodic
translation of a structure is the same material with the same k, and the plain IoU scores it like
an unrelated structure. Runs made before `distinct_hits_shift` existed are recounted here from their
verified candidates (results.csv and candidates/*.tif), nothing solved again:

    python bench/distinct_recount.py runs/exp13/eval50_s0/design/eval/seed0 \
        runs/exp13/eval50_s1/design/eval/seed1 runs/exp13/eval50_s2/design/eval/seed2 --methods bo
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="design folders of a bench run (results.csv, candidates/)")
    p.add_argument("--methods", default="bo", help="comma-separated methods to recount")
    p.add_argument("--max-iou", type=float, default=0.5)
    p.add_argument("--min-distinct", type=int, default=3)
    args = p.parse_args(argv)

    import pandas as pd

    from data_pipeline.io import read_volume
    from inverse.evaluation import distinct_hits, phase_iou

    rows = []
    for run in args.runs:
        res = pd.read_csv(Path(run) / "results.csv")
        res = res[res["method"].isin(args.methods.split(","))]
        for (tid, method), g in res.groupby(["target_id", "method"]):
            hits = g[g["hit"].astype(bool)].sort_values("candidate")
            ims = [read_volume(Path(run) / t).astype(bool) for t in hits["tif"]]
            gain = [phase_iou(a, b, shifts=True) - phase_iou(a, b) for i, a in enumerate(ims) for b in ims[i + 1:]]
            rows.append({"run": run, "target_id": tid, "kind": tid.split("_")[1] if "_" in tid else "",
                         "method": method, "n_hits": len(ims),
                         "distinct": len(distinct_hits(ims, 5, args.max_iou)),
                         "distinct_shift": len(distinct_hits(ims, 5, args.max_iou, shifts=True)),
                         "iou_gain_max": max(gain, default=0.0)})
    df = pd.DataFrame(rows)
    k = args.min_distinct
    by = df.groupby(["method", "kind"]).agg(rows=("n_hits", "size"), hits=("n_hits", "mean"),
                                            distinct=("distinct", "mean"), distinct_shift=("distinct_shift", "mean"))
    print(by.round(3).to_string())
    for method, g in df.groupby("method"):
        print(f"{method}: >= {k} distinct hits on {100 * (g['distinct'] >= k).mean():.1f}% of target x seed rows, "
              f"{100 * (g['distinct_shift'] >= k).mean():.1f}% with translations searched; "
              f"{int((g['distinct_shift'] < g['distinct']).sum())} of {len(g)} rows lose a distinct hit; "
              f"the best translation raises a pair's IoU by {np.median(g['iou_gain_max']):.3f} (median of the "
              f"rows' largest) to {g['iou_gain_max'].max():.3f} (max)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
