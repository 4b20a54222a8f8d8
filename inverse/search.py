"""Latent-space search under one evaluation budget: BO (scikit-optimize), TPE (hyperopt), random, gradient.

Every method gets the same budget of ``n_calls`` objective evaluations (one evaluation = the
objective of one latent vector: the regressor's, or a decoder-aware one of
:mod:`inverse.delivered`, which bo / tpe / random treat as a black box) and the same ``seeds``: training latents whose *labels* (not
predictions, so no evaluation is spent choosing them) are closest to the target. All methods stay
inside the box ``[space.lo, space.hi]``:

* ``bo`` with ``bo_engine="composite"`` (default): composite Bayesian optimization
  (:func:`run_bo_composite`): one scikit-optimize GP per targeted property, expected improvement
  of the known objective by Monte Carlo over their posteriors; x0 = seeds, then
  ``n_initial - len(seeds)`` random points.
* ``bo`` with ``bo_engine="gp_minimize"``: ``skopt.gp_minimize`` (one GP on the objective itself,
  EI/LCB/PI hedge), the same x0 and random points, then the GP's proposals. The GP sees
  sign(f) * log(1 + |f|) (a monotone squash: far-away points do not dominate its fit).
* ``tpe``: ``hyperopt.fmin`` with TPE, ``points_to_evaluate`` = seeds, ``n_startup_jobs``.
* ``random``: the seeds, then uniform points in the box.
* ``gradient``: the original project's method: Adam on z through the regressor (always the
  regressor objective: the decoder-aware ones are not differentiable), one run per seed
  (in one batch), ``n_calls // len(seeds)`` steps each, projected back onto the box after every step.
  With a ``screen`` objective (:func:`run_gradient_screened`, what the design does when the search
  uses a decoder-aware property model) the trajectories are longer (``gradient_steps`` regressor
  steps per start: those cost no solver work) and ``n_calls`` of their points, spread evenly along
  each trajectory, are evaluated by the screen objective: the same number of counted evaluations
  (solver calls, with the solver objective) as bo / random, so gradient is judged by what is
  delivered, like them.
* ``lookup``: no search: the ``n_calls`` training samples whose *labels* are closest to the target
  under the objective's distance (:func:`run_lookup`); the design delivers those training
  structures themselves (the database-lookup baseline). No model or solver call.

Each returns a :class:`SearchResult` with every evaluated latent and its objective, in order.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from inverse.objective import Objective


@dataclass
class SearchResult:
    """Evaluated latents ``z`` (n, L), their objective ``f`` (n,), wall time (s)."""

    method: str
    z: np.ndarray
    f: np.ndarray
    time_s: float
    n_seeds: int = 0
    info: dict = field(default_factory=dict)

    @property
    def n_evals(self) -> int:
        return int(self.f.shape[0])

    def best_so_far(self) -> np.ndarray:
        return np.minimum.accumulate(self.f)

    @property
    def best(self) -> tuple[np.ndarray, float]:
        i = int(np.argmin(self.f))
        return self.z[i], float(self.f[i])


def seed_latents(objective: Objective, y_train: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` training latents whose labels ``y_train`` (N, P raw) best match the target (n, L).

    Uses the labels through the same distance as the objective (no regressor call), clipped to
    the box.
    """
    space = objective.space
    y_norm = torch.as_tensor(objective.norm.transform(y_train))  # (N, P)
    d = objective.distance(y_norm).numpy()  # (N,)
    order = np.argsort(d, kind="stable")[: max(1, min(n, len(d)))]
    return space.clip(space.mu[order])


def _squash(f: float) -> float:
    return float(math.copysign(math.log1p(abs(f)), f))


def run_bo(objective: Objective, n_calls: int, n_initial: int, seeds: np.ndarray, seed: int = 0,
           acq_optimizer: str = "sampling") -> SearchResult:
    from skopt import gp_minimize

    space = objective.space
    zs, fs = [], []

    def func(x):
        z = np.asarray(x, dtype=np.float64)[None]  # (1, L)
        f = float(objective.values(z)[0])
        zs.append(z[0])
        fs.append(f)
        return _squash(f)

    t0 = time.perf_counter()
    dims = [(float(a), float(b)) for a, b in zip(space.lo, space.hi)]
    x0 = [[float(v) for v in row] for row in seeds]
    gp_minimize(func, dims, n_calls=n_calls, n_initial_points=max(0, n_initial - len(x0)),
                x0=x0 or None, random_state=int(seed), acq_optimizer=acq_optimizer,
                n_points=2000, n_restarts_optimizer=2)
    return SearchResult("bo", np.array(zs), np.array(fs), time.perf_counter() - t0, len(x0), {"bo": "gp_minimize"})


def unit_box_gp(dim: int, restarts: int = 0, seed: int = 0):
    """scikit-optimize's GP for ``dim`` dimensions on the unit box (``cook_estimator("GP")``: constant
    x Matern 5/2 with one length scale per dimension + white noise, normalized y), its kernel fitted
    by one L-BFGS run from the initial kernel plus ``restarts`` random starts (run_bo_composite's GPs;
    bench/gp_fit.py measures the choice of ``restarts``)."""
    from skopt.utils import cook_estimator

    gp = cook_estimator("GP", space=[(0.0, 1.0)] * dim, random_state=seed)
    gp.set_params(n_restarts_optimizer=restarts)
    return gp


def run_bo_composite(objective: Objective, n_calls: int, n_initial: int, seeds: np.ndarray, seed: int = 0,
                     n_points: int = 2000, n_samples: int = 64, gp_restarts: int = 0,
                     distinct: tuple[int, float] | None = None, screen_max: int = 64,
                     pool: np.ndarray | None = None) -> SearchResult:
    """Composite Bayesian optimization: Gaussian processes on the properties, not on the objective.

    The objective is a known function (distance to the target in tolerance units, plus the
    manifold penalty) of the few properties the target reads; those are smooth functions of z
    while the objective is a V-shaped valley around the target's level set, which one GP on the
    objective models badly. Here each targeted property (normalized: log10 k standardized) gets
    its own GP (scikit-optimize's, as in ``gp_minimize``: Matern 5/2 with one length scale per
    latent dimension, on the box scaled to [0, 1]); the next point maximizes the expected
    improvement of the *objective*, estimated by Monte Carlo over ``n_samples`` joint draws of
    the properties' posteriors at ``n_points`` candidates (half uniform in the box, half around the
    five best points so far). Astudillo & Frazier, "Bayesian optimization of composite
    functions", ICML 2019. x0 = seeds, then ``n_initial - len(seeds)`` uniform points.

    A morphology penalty of the objective (a maximize / minimize target held to the material's
    specific surface and anisotropy, :meth:`inverse.delivered.DeliveredObjective.set_morphology`) is
    one more known function of smooth quantities of z: ln of each morphology ratio of the delivered
    structure gets its own GP and each joint draw adds ``objective.morphology_penalty_of`` of its
    ln-ratio draws, so the acquisition sees the penalty that the recorded objective holds (without
    it, EI of a maximize target chases k into structures the penalty then rejects).

    Each GP's kernel hyperparameters are fitted by one L-BFGS run on the marginal likelihood from
    skopt's initial kernel, plus ``gp_restarts`` random starts. skopt's default is 2; three runs per
    fit were 43% of BO's wall time at 24^3, and the single run's likelihood came within 1 nat of
    theirs in 119 of 120 fits of synthetic 16-d problems (bench/gp_fit.py; bench/RESULTS.md
    "Composite BO: one GP start per fit": the same hits on the demo model's dev targets, 1.8x faster).

    Diversity (``distinct = (n, max_iou)``; an objective that delivers structures, a target of exact
    conditions): plain expected improvement keeps refining the first hit, and its next points
    deliver near copies of it. Once the evaluations hold an estimated hit but fewer than ``n``
    pairwise distinct ones (minority-phase IoU <= ``max_iou``, :func:`inverse.evaluation.distinct_hits`),
    the next point is the one most likely to be another hit and a different structure: the
    acquisition is the expected improvement below the hit level f = 1 (a single term at the edge of
    its tolerance; f <= 1 implies every condition holds), E[max(1 - f, 0)], its local candidates
    are drawn around the best evaluations distinct from the hits, ``pool`` (latents (m, L), e.g. the
    training latents whose labels are next closest to the target after the seeds: other real
    structures near the target) joins the candidates, and the ``screen_max`` best
    candidates are delivered (decoded and binarized, no solver call) best first until one is distinct
    from every hit (none: the least similar). With ``n`` distinct hits the search goes back to
    plain EI. ``info["diversity_steps"]`` counts the steps taken this way, ``info["diversity_iou"]``
    holds each one's largest IoU with a hit.
    """
    from sklearn.exceptions import ConvergenceWarning

    space = objective.space
    rng = np.random.default_rng(seed)
    cols = objective.target_columns
    # one GP per morphology measure too (ln of the specific-surface ratio, of the anisotropy ratio)
    n_morph = int(getattr(objective, "n_morphology", 0)) if getattr(objective, "has_morphology", False) else 0
    morph = n_morph > 0
    lo, width = space.lo, space.hi - space.lo
    t0 = time.perf_counter()
    z0 = np.concatenate([seeds.reshape(-1, space.dim),
                         lo + rng.random((max(0, n_initial - len(seeds)), space.dim)) * width])[:n_calls]
    f0, p0 = objective.evaluate(z0)  # (n0,), (n0, P)
    zs, fs, ps = list(z0), list(f0), list(p0)
    eps = rng.standard_normal((n_samples, n_points, len(cols) + n_morph))  # common random numbers for every step
    diverse = distinct is not None and distinct[0] > 1 and _delivers_exact(objective)
    div_iou: list[float] = []  # per diversity step: the chosen structure's largest IoU with a hit
    while len(fs) < n_calls:
        u = (np.array(zs) - lo) / width  # (n, L) in [0, 1]
        best = int(np.argmin(fs))
        order = np.argsort(fs, kind="stable")[:5]
        hits = _distinct_hit_structures(objective, np.array(zs), np.array(fs), *distinct) if diverse else []
        seeking = 1 <= len(hits) < (distinct[0] if diverse else 0)
        if seeking:  # local candidates around the best evaluations that are not near copies of a hit
            ims = [d.im for d in objective.delivery(np.array(zs))]  # cached: evaluated structures
            far = [i for i in np.argsort(fs, kind="stable") if _max_iou(ims[i], hits) <= distinct[1]]
            order = np.array(far[:5], dtype=int)
        n_local = n_points // 2 if len(order) else 0
        cand = np.concatenate([rng.random((n_points - n_local, space.dim)),
                               u[rng.choice(order, n_local)] if n_local else np.empty((0, space.dim))])
        cand[n_points - n_local:] += 0.05 * rng.standard_normal((n_local, space.dim))
        if seeking and pool is not None and len(pool):  # in place of the first uniform points
            m = min(len(pool), n_points - n_local)
            cand[:m] = (pool[:m] - lo) / width
        cand = np.clip(cand, 0.0, 1.0)  # (C, L)
        y = np.array(ps)  # (n, P) normalized properties seen so far
        draws = np.zeros((n_samples, n_points, y.shape[1]))  # (S, C, P): only the targeted columns are read
        series = [(k, y[:, j]) for k, j in enumerate(cols)]
        if morph:  # ln ratios of every evaluated structure (cached by the objective: no new decode)
            lr_seen = objective.morphology_log_ratios(np.array(zs))  # (n, M)
            series += [(len(cols) + m, lr_seen[:, m]) for m in range(n_morph)]
            log_ratio = np.zeros((n_samples, n_points, n_morph))  # (S, C, M) draws
        for k, obs in series:
            gp = unit_box_gp(space.dim, gp_restarts, int(rng.integers(2**31)))
            with warnings.catch_warnings():  # a length scale at its bound = a latent dimension k ignores
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(u, obs)
            mu, sd = gp.predict(cand, return_std=True)  # (C,), (C,)
            if k < len(cols):
                draws[:, :, cols[k]] = mu + sd * eps[:, :, k]
            else:
                log_ratio[:, :, k - len(cols)] = mu + sd * eps[:, :, k]
        zc = lo + cand * width  # (C, L)
        f_draw = objective.objective_of(draws.reshape(-1, draws.shape[-1]), np.tile(zc, (n_samples, 1)))
        f_draw = f_draw.reshape(n_samples, n_points)  # (S, C)
        if morph:
            f_draw = f_draw + objective.morphology_penalty_of(log_ratio)
        if seeking:
            ei = np.maximum(HIT_LEVEL - f_draw, 0.0).mean(axis=0)  # (C,) expected improvement below the hit level
            rank = np.lexsort((f_draw.mean(axis=0), -ei))  # most promising first, ties by the mean objective
            i, iou = _first_distinct(objective, zc, rank[:screen_max], hits, distinct[1])
            div_iou.append(round(iou, 3))
        else:
            ei = np.maximum(fs[best] - f_draw, 0.0).mean(axis=0)  # (C,)
            i = int(np.argmax(ei)) if ei.max() > 0 else int(np.argmin(f_draw.mean(axis=0)))
        f1, p1 = objective.evaluate(zc[i:i + 1])
        zs.append(zc[i])
        fs.append(float(f1[0]))
        ps.append(p1[0])
    return SearchResult("bo", np.array(zs), np.array(fs), time.perf_counter() - t0, min(len(seeds), n_calls),
                        {"bo": "composite", "acquisition_morphology": morph, "diversity": diverse,
                         "diversity_steps": len(div_iou), "diversity_iou": div_iou})


POOL_PER_SEED = 8  # label-nearest training latents offered to the diversity phase, per seed
HIT_LEVEL = 1.0  # objective value of one term at the edge of its tolerance: f <= 1 => every condition holds


def _delivers_exact(objective: Objective) -> bool:
    """The objective judges delivered structures and its target is exact conditions only (where a
    hit is a tolerance met and "another hit" is defined)."""
    return hasattr(objective, "delivery") and all(c.kind == "exact" for c in objective.target.conditions)


def _max_iou(im: np.ndarray, others: list[np.ndarray]) -> float:
    """Largest minority-phase IoU of ``im`` with any of ``others`` (0 when there are none)."""
    from inverse.evaluation import phase_iou

    return max((phase_iou(im, o) for o in others), default=0.0)


def _distinct_hit_structures(objective, z: np.ndarray, f: np.ndarray, n: int, max_iou: float) -> list[np.ndarray]:
    """Delivered structures of the estimated hits among evaluated latents z (B, L), best objective
    first, greedily pairwise distinct, at most ``n`` (no new decode or solve: both are cached)."""
    from inverse.evaluation import distinct_hits

    hit = objective.predicted_hit(z)  # (B,)
    idx = [i for i in np.argsort(f, kind="stable") if hit[i]]
    ims = [d.im for d in objective.delivery(z[idx])] if idx else []
    return [ims[j] for j in distinct_hits(ims, n, max_iou)]


def _first_distinct(objective, zc: np.ndarray, rank: np.ndarray, hits: list[np.ndarray], max_iou: float,
                    batch: int = 16) -> tuple[int, float]:
    """Index into zc (C, L) of the first candidate in ``rank`` whose delivered structure is distinct
    from every structure of ``hits`` (IoU <= max_iou), none: the least similar of those looked at;
    and its largest IoU with a hit."""
    best, best_iou = int(rank[0]), np.inf
    for s in range(0, len(rank), batch):
        part = rank[s:s + batch]
        for j, d in zip(part, objective.delivery(zc[part], store=False)):
            iou = _max_iou(d.im, hits)
            if iou <= max_iou:
                return int(j), iou
            if iou < best_iou:
                best, best_iou = int(j), iou
    return best, best_iou


def run_tpe(objective: Objective, n_calls: int, n_initial: int, seeds: np.ndarray, seed: int = 0) -> SearchResult:
    from hyperopt import Trials, fmin, hp, tpe

    space = objective.space
    names = [f"z{i}" for i in range(space.dim)]
    hp_space = {n: hp.uniform(n, float(a), float(b)) for n, a, b in zip(names, space.lo, space.hi)}
    zs, fs = [], []

    def func(params):
        z = np.array([params[n] for n in names], dtype=np.float64)[None]  # (1, L)
        f = float(objective.values(z)[0])
        zs.append(z[0])
        fs.append(f)
        return f

    t0 = time.perf_counter()
    points = [{n: float(v) for n, v in zip(names, row)} for row in seeds]
    fmin(func, hp_space, algo=partial(tpe.suggest, n_startup_jobs=max(1, n_initial - len(points))),
         max_evals=n_calls, trials=Trials(), rstate=np.random.default_rng(seed),
         points_to_evaluate=points or None, show_progressbar=False)
    return SearchResult("tpe", np.array(zs), np.array(fs), time.perf_counter() - t0, len(points))


def run_random(objective: Objective, n_calls: int, seeds: np.ndarray, seed: int = 0) -> SearchResult:
    space = objective.space
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n_rand = max(0, n_calls - len(seeds))
    z = np.concatenate([seeds.reshape(-1, space.dim),
                        space.lo + rng.random((n_rand, space.dim)) * (space.hi - space.lo)])  # (n_calls, L)
    f = objective.values(z)
    return SearchResult("random", z, f, time.perf_counter() - t0, len(seeds))


def run_gradient(objective: Objective, n_calls: int, seeds: np.ndarray, lr: float = 0.05,
                 seed: int = 0) -> SearchResult:
    space = objective.space
    torch.manual_seed(seed)
    starts = seeds.reshape(-1, space.dim)
    steps = max(1, n_calls // len(starts))
    lo = torch.as_tensor(space.lo)
    hi = torch.as_tensor(space.hi)
    t0 = time.perf_counter()
    z = torch.tensor(starts, dtype=torch.float64, requires_grad=True)  # (S, L)
    opt = torch.optim.Adam([z], lr=lr)
    zs, fs = [], []
    for _ in range(steps):
        opt.zero_grad()
        f = objective.torch_values(z.float())  # (S,)
        zs.append(z.detach().numpy().copy())
        fs.append(f.detach().numpy().copy())
        f.sum().backward()
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, hi), lo))
    z_all = np.stack(zs, axis=1).reshape(-1, space.dim)  # (S * steps, L), start-major
    f_all = np.stack(fs, axis=1).reshape(-1)
    return SearchResult("gradient", z_all, f_all, time.perf_counter() - t0, len(starts), {"steps": steps})


def trajectory_points(n_starts: int, steps: int, n: int) -> np.ndarray:
    """Indices into a start-major trajectory array (``n_starts * steps`` points) of ``n`` points
    spread evenly along the trajectories: ``n // n_starts`` per start (the first ``n % n_starts``
    starts one more), always including the start and the end of each trajectory when it gets
    two or more; fewer when the trajectories are shorter (all their points).

    Parameters
    ----------
    n_starts : number of trajectories (gradient starts)
    steps : points per trajectory
    n : points wanted in total

    Returns
    -------
    (m,) int array, m <= n, sorted, no duplicates
    """
    out = []
    for s in range(n_starts):
        k = n // n_starts + (1 if s < n % n_starts else 0)
        if k <= 0:
            continue
        pos = np.unique(np.round(np.linspace(0, steps - 1, min(k, steps))).astype(int))
        out.append(s * steps + pos)
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def run_gradient_screened(objective: Objective, screen: Objective, n_calls: int, seeds: np.ndarray,
                          steps: int = 100, lr: float = 0.05, seed: int = 0) -> SearchResult:
    """Gradient descent on z through the regressor, its trajectory judged by another objective.

    Adam runs ``steps`` steps from every seed on ``objective`` (the regressor's, differentiable;
    regressor evaluations are not counted against the budget), then ``n_calls`` trajectory points
    (:func:`trajectory_points`) are evaluated by ``screen`` (e.g. the solver objective of
    :mod:`inverse.delivered`): the same number of counted evaluations as bo / random. The
    candidates are then selected from those points by the screen objective, exactly as for bo /
    random.

    Parameters
    ----------
    objective : differentiable objective (regressor on z), drives the trajectories
    screen : objective that judges the chosen trajectory points (counted evaluations)
    n_calls : evaluations of ``screen``
    seeds : (S, L) starting latents (the label-nearest training latents, shared with bo / random)
    steps : Adam steps per start (latent units per step ~ ``lr``)
    lr : Adam step size (latent units)
    seed : torch seed

    Returns
    -------
    SearchResult of the screened points, in trajectory order (``f`` = screen objective); ``info``
    holds ``gradient_steps``, ``trajectory_points`` (regressor evaluations) and the trajectory's
    own regressor objective of the screened points (``regressor_f``).
    """
    steps = max(1, int(steps))
    starts = seeds.reshape(-1, objective.space.dim)
    traj = run_gradient(objective, steps * len(starts), starts, lr, seed)
    t0 = time.perf_counter()
    idx = trajectory_points(len(starts), traj.info["steps"], n_calls)
    z = traj.z[idx]  # (n, L)
    screen.n_evals = 0
    f = screen.values(z)  # (n,)
    info = {"gradient_steps": traj.info["steps"], "trajectory_points": traj.n_evals,
            "regressor_f": traj.f[idx].tolist(), "screen_evals": screen.n_evals}
    return SearchResult("gradient", z, f, traj.time_s + time.perf_counter() - t0, len(starts), info)


def run_lookup(objective: Objective, y_train: np.ndarray, n: int) -> SearchResult:
    """Database lookup: the ``n`` training samples whose labels are closest to the target.

    The distance is the objective's target distance (tolerance units, no manifold penalty) of the
    normalized labels ``y_train`` (N, P raw, lattice units), ties broken by index. No model or
    solver call; ``z`` is the training latent of each sample (for the record), ``f`` its label
    distance, ``info["train_index"]`` the rows of ``y_train`` (the design reads those samples'
    structures from the dataset).

    Parameters
    ----------
    objective : the target's objective (its ``distance`` and training latents ``space.mu``)
    y_train : (N, P) raw training labels, rows aligned with ``objective.space.mu``
    n : number of samples returned (at most N)

    Returns
    -------
    SearchResult, best first
    """
    t0 = time.perf_counter()
    y_norm = torch.as_tensor(objective.norm.transform(np.asarray(y_train, dtype=np.float64)))  # (N, P)
    d = objective.distance(y_norm).numpy()  # (N,)
    order = np.argsort(d, kind="stable")[: max(1, min(int(n), len(d)))]
    return SearchResult("lookup", np.asarray(objective.space.mu[order], dtype=np.float64), d[order],
                        time.perf_counter() - t0, 0, {"train_index": [int(i) for i in order]})


def run_search(method: str, objective: Objective, y_train: np.ndarray, n_calls: int, n_initial: int,
               seed: int = 0, gradient_lr: float = 0.05, bo_acq_optimizer: str = "sampling",
               bo_engine: str = "composite", screen: Objective | None = None,
               gradient_steps: int = 100, distinct: tuple[int, float] | None = None) -> SearchResult:
    """Run one method with the shared budget and seeds (``ceil(n_initial / 2)`` label-nearest latents).

    ``screen`` (gradient only): the objective that judges ``n_calls`` points of the gradient's
    trajectories (:func:`run_gradient_screened`, ``gradient_steps`` Adam steps per start);
    without it gradient runs ``n_calls // len(seeds)`` steps per start on ``objective`` alone.
    ``distinct`` (composite bo only): (n, max IoU) of the diversity phase of :func:`run_bo_composite`.
    """
    from threadpoolctl import threadpool_limits

    seeds = seed_latents(objective, y_train, math.ceil(n_initial / 2))
    objective.n_evals = 0
    with threadpool_limits(limits=1):  # tiny BLAS problems: threads only oversubscribe (12x slower here)
        if method == "gradient" and screen is not None:
            res = run_gradient_screened(objective, screen, n_calls, seeds, gradient_steps, gradient_lr, seed)
            res.info["objective_evals"] = screen.n_evals
            return res
        return _run(method, objective, y_train, seeds, n_calls, n_initial, seed, gradient_lr, bo_acq_optimizer,
                    bo_engine, distinct)


def _run(method, objective, y_train, seeds, n_calls, n_initial, seed, gradient_lr, bo_acq_optimizer, bo_engine,
         distinct=None):
    if method == "bo" and bo_engine == "composite":
        pool = seed_latents(objective, y_train, POOL_PER_SEED * len(seeds))[len(seeds):] if distinct else None
        res = run_bo_composite(objective, n_calls, n_initial, seeds, seed, distinct=distinct, pool=pool)
    elif method == "bo" and bo_engine == "gp_minimize":
        res = run_bo(objective, n_calls, n_initial, seeds, seed, bo_acq_optimizer)
    elif method == "bo":
        raise ValueError(f"unknown bo_engine {bo_engine!r}; choose composite or gp_minimize")
    elif method == "tpe":
        res = run_tpe(objective, n_calls, n_initial, seeds, seed)
    elif method == "random":
        res = run_random(objective, n_calls, seeds, seed)
    elif method == "gradient":
        res = run_gradient(objective, n_calls, seeds, gradient_lr, seed)
    elif method == "lookup":
        res = run_lookup(objective, y_train, n_calls)
    else:
        raise ValueError(f"unknown search method {method!r}; choose from bo, tpe, random, gradient, lookup")
    res.info["objective_evals"] = objective.n_evals
    return res


def select_candidates(z: np.ndarray, f: np.ndarray, n: int, min_dist: float) -> list[int]:
    """Indices of up to ``n`` best evaluations whose pairwise latent distance is >= ``min_dist``."""
    chosen: list[int] = []
    for i in np.argsort(f, kind="stable"):
        if not np.isfinite(f[i]):
            continue
        if all(np.linalg.norm(z[i] - z[j]) >= min_dist for j in chosen):
            chosen.append(int(i))
        if len(chosen) == n:
            break
    return chosen
