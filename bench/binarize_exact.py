"""How far from its porosity goal does a delivered structure end, with and without the topology-
preserving flips of :func:`inverse.postprocess.flip_to_count` (bench/RESULTS.md "Delivery to the
voxel")?

Fields: smooth random pore-probability maps (white noise, periodic Gaussian of ``sigma`` cells),
one per seed, each binarized and cleaned at the goal porosity by
:func:`inverse.postprocess.binarize_clean` with ``exact=False`` (the threshold bisection alone) and
with ``exact=True`` (the default: then the flips). Per case it prints how many fields end off the
goal's pore count, the largest miss in voxels, the most voxels flipped, whether every result is
clean (``clean`` leaves it unchanged) and the time per field of each variant.

    python bench/binarize_exact.py --seeds 60
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, before bench/inverse.py
from inverse.postprocess import binarize_clean, clean  # noqa: E402

# (shape, goal porosity, max_island): a 2D maximize design's setting (max_island 0) and the
# default cleaning (64) in 2D and 3D
CASES = [((32, 32), 0.74, 0), ((64, 64), 0.5, 64), ((64, 64), 0.7, 64), ((16, 16, 16), 0.5, 64),
         ((32, 32, 32), 0.3, 64)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=60, help="fields per case (seeds 0..N-1)")
    ap.add_argument("--sigma", type=float, default=1.0, help="Gaussian filter width, cells")
    a = ap.parse_args(argv)
    binarize_clean(np.random.default_rng(0).random((8, 8)), "target", 0.5)  # imports and first-call costs, untimed
    print("| field | goal | max_island | off the count: bisection / + flips | largest miss (voxels) | most flipped | all clean | s per field |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for shape, phi, max_island in CASES:
        miss = {False: [], True: []}
        secs = {False: 0.0, True: 0.0}
        flipped, all_clean = 0, True
        n_pore = round(phi * np.prod(shape))
        for seed in range(a.seeds):
            prob = gaussian_filter(np.random.default_rng(seed).random(shape), a.sigma, mode="wrap")
            for exact in (False, True):
                t0 = time.perf_counter()
                im, _, info = binarize_clean(prob, "target", phi, 0.5, True, max_island, exact=exact)
                secs[exact] += time.perf_counter() - t0
                miss[exact].append(abs(int(im.sum()) - n_pore))
                all_clean &= bool(np.array_equal(clean(im, max_island)[0], im))
            flipped = max(flipped, info["flipped"])
        off = {k: int(np.count_nonzero(v)) for k, v in miss.items()}
        print(f"| {'x'.join(map(str, shape))} | {phi} | {max_island} | {off[False]} / {off[True]} of {a.seeds} "
              f"| {max(miss[False])} / {max(miss[True])} | {flipped} | {'yes' if all_clean else 'no'} "
              f"| {secs[False] / a.seeds:.3f} / {secs[True] / a.seeds:.3f} |")


if __name__ == "__main__":
    main()
