"""Benchmark of the GP hyperparameter fit inside composite BO (inverse/search.py run_bo_composite).

    python bench/gp_fit.py --problems 6 --dim 16

On synthetic problems shaped like a latent search (``--dim`` dimensions, a few of them relevant,
``--start`` to ``--stop`` points added one at a time as BO does), fits scikit-optimize's GP (the
kernel of ``cook_estimator("GP")``) three ways at every size and prints the log marginal likelihood
(higher is better) and the fit time of each:

    restarts2   skopt's default: L-BFGS from the initial kernel + 2 random restarts
    restarts0   one L-BFGS run from the initial kernel (the composite BO's default)
    warm        one L-BFGS run from the previous size's optimum (noise level floored at 1e-5),
                with the 2 restarts every 5th size

"worse" counts fits more than 1 nat below restarts2's at the same data. Run it alone.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

# bench/ holds inverse.py too: the repository root goes first so that `inverse` is the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from inverse.search import unit_box_gp  # noqa: E402


def fit(u: np.ndarray, y: np.ndarray, kernel, restarts: int, seed: int):
    """The composite BO's GP (inverse.search.unit_box_gp), from ``kernel`` when given; (gp, fit s)."""
    gp = unit_box_gp(u.shape[1], restarts, seed)
    if kernel is not None:
        gp.set_params(kernel=kernel)
    t0 = time.perf_counter()
    gp.fit(u, y)
    return gp, time.perf_counter() - t0


def main(argv=None) -> int:
    from sklearn.exceptions import ConvergenceWarning
    from skopt.learning.gaussian_process.kernels import WhiteKernel

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=6)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--start", type=int, default=10)
    p.add_argument("--stop", type=int, default=30)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    restarts = {"restarts2": 2, "restarts0": 0}
    names = [*restarts, "warm"]
    lml = {k: [] for k in names}
    secs = {k: 0.0 for k in names}
    for problem in range(args.problems):
        rng = np.random.default_rng(problem)
        w = rng.standard_normal(args.dim) * (rng.random(args.dim) < 0.3)  # (D,) a few relevant directions

        def f(u):  # (n, D) -> (n,)
            return np.tanh(u @ w) + 0.3 * np.sin(4 * u[:, 0])

        u = rng.random((args.start, args.dim))
        y = f(u)
        prev = None
        for n in range(args.start, args.stop):
            for name in names:
                if name == "warm":
                    kernel = None if prev is None else prev.kernel_.k1 + WhiteKernel(noise_level=max(prev.noise_, 1e-5))
                    gp, t = fit(u, y, kernel, 2 if prev is None or n % 5 == 0 else 0, n)
                    prev = gp
                else:
                    gp, t = fit(u, y, None, restarts[name], n)
                lml[name].append(gp.log_marginal_likelihood_value_)
                secs[name] += t
            x = rng.random((1, args.dim))
            u, y = np.vstack([u, x]), np.append(y, f(x))
    ref = np.array(lml["restarts2"])
    print(f"{args.problems} problems x {args.stop - args.start} sizes ({args.start}-{args.stop - 1} points), {args.dim}-d")
    for name in names:
        v = np.array(lml[name])
        print(f"{name:>10}: mean log marginal likelihood {v.mean():8.2f}, worse by > 1 nat {int((v < ref - 1).sum()):3d} "
              f"of {len(v)}, fit time {secs[name]:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
