"""Labeling tolerance: k and solver time at tol 1e-5 (the bench labels), 1e-4 and 3e-4 on the first N
volumes of a dataset, one process. Prints the total solve time per tolerance and the largest relative
change of any k_ii against tol 1e-5 (the figures behind configs/data_demo.yaml's tol 1e-4).

    python bench/label_tol.py runs/demo/data 24
"""
import glob
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_pipeline.permeability import permeability  # noqa: E402

TOLS = (1e-5, 1e-4, 3e-4)


def main(dataset: str, n: int) -> None:
    files = sorted(glob.glob(f"{dataset}/volumes/*.tif"))[:n]
    total, worst = dict.fromkeys(TOLS, 0.0), dict.fromkeys(TOLS, 0.0)
    for f in files:
        im = tifffile.imread(f).astype(bool)
        ref = None
        for tol in TOLS:
            t = time.perf_counter()
            k = np.diag(permeability(im, tol=tol).k)
            total[tol] += time.perf_counter() - t
            ref = k if ref is None else ref
            rel = np.where(ref > 0, np.abs(k - ref) / np.where(ref > 0, ref, 1), 0)
            worst[tol] = max(worst[tol], float(np.nanmax(rel)))
    for tol in TOLS:
        print(f"tol {tol:g}: {total[tol]:.1f} s over {len(files)} volumes, max |dk|/k vs 1e-5 {100 * worst[tol]:.3f}%")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 24)
