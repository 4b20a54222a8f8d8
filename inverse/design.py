"""Inverse design: targets -> latent search -> decoded, cleaned candidates -> LBM verification.

``design(cfg)`` is the whole flow behind ``python -m inverse design``:

1. resolve the model (MLflow URI or checkpoint folder) and encode its training subset;
2. parse the targets (lattice or physical units) and flag extrapolation: a condition outside the
   range of the training labels (by more than its tolerance) is reported with the nearest
   achievable values (the clipped value, the closest training sample's labels and the range the
   regressor predicts over the search box) and is not searched unless ``allow_extrapolation``;
3. search each target with every method of ``cfg.methods`` under the same budget (each method
   with its own objective and delivery cache, so that its wall time and solver calls are its own);
4. decode the best distinct candidates, binarize (stated threshold rule) and clean them (``lookup``:
   the training structures with the closest labels, delivered as they are);
5. verify porosity and permeability with the solver, one batch per target and method; a hit
   needs a converged verification;
6. write ``results.csv`` (one row per verified candidate), ``targets.csv`` (one row per target),
   ``timing.csv``, the candidates as .tif, figures and an MLflow run (:mod:`inverse.report`).

``results.csv`` holds no wall times so that the same seed gives a byte-identical file.
"""
from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.cli import failed
from core.properties import is_k_component
from inverse.config import PROPERTY_MODELS, DesignConfig, load_design_config
from inverse.objective import LatentSpace, Objective, latent_space
from inverse.delivered import (Delivery, DeliveredObjective, decode_probabilities, has_noise,  # noqa: F401
                               make_objective, porosity_shift_for, screen_scores, screen_variants)
from inverse.evaluation import distinct_hits
from inverse.search import SearchResult, run_search, select_candidates
from inverse.targets import Target, TargetError, build_targets, check_targets_for_model, with_training_bars
from inverse.verify import verified_values, verify_batch


# --- the record of one candidate ----------------------------------------------------------------
# DesignConfig.texture -> the texture of a delivered variant (inverse.delivered.Delivery.variant_texture)
VARIANT_TEXTURE = {"prior": "prior", "variants": "bank", "diffusion": "diffusion"}


@dataclass
class Verification:
    """The solver's measurement of one candidate and the hit it decides.

    values: ``{property: value}`` measured (porosity -, k components voxel^2); d_porosity: measured
    minus predicted porosity (nan when porosity is not predicted); errors: ``{property: error}`` of
    each condition against its exact value or the prediction (absolute for porosity, relative for
    k); converged, steps, error: the solver's record ("" when solved); hit: every condition within
    its tolerance (a max / min condition: beyond the best training label), the solve converged
    (an unconverged k is not a measurement) and no solver error, and
    for a maximize / minimize target also ``morph_ok``: the specific-surface ratio to the training
    median within DesignConfig.morphology_band, the anisotropy within the training structures'
    range (``anisotropy_ok``), the local porosity spread within theirs (``spread_ok``) and, without a porosity condition, the verified
    porosity at most half the porosity tolerance above the candidate's porosity goal (None for
    other targets: not part of their hit).
    """

    values: dict[str, float]
    d_porosity: float
    errors: dict[str, float]
    converged: bool
    steps: int
    error: str
    hit: bool
    morph_ok: bool | None = None


@dataclass
class Candidate:
    """One delivered design of a target: where the search found it, what it is, what the solver says.

    ``to_row()`` is its ``results.csv`` row (column names are the file's contract: ``candidate`` is
    ``rank``, ``pred_<p>`` / ``regz_<p>`` / ``sur_<p>`` / ``verified_<p>`` / ``err_<p>`` the dicts,
    ``z<d>`` the latent); ``im`` (bool, True = pore) is written as its .tif, not into the row.
    """

    target_id: str
    target: str  # the target's description
    method: str
    rank: int  # 0 = the best of its method
    property_model: str  # the estimate the search used: "regressor" | "reencode" | "surrogate" | "solver" | "labels"
    eval_index: int  # which evaluation of the search (lookup: the rank by label distance)
    objective: float
    distance: float  # target distance of the search's estimate
    mahalanobis: float
    inside_box: bool
    pred: dict[str, float]  # the search's estimate, raw units
    regz: dict[str, float]  # the regressor on z (diagnostic)
    z: np.ndarray  # (L,)
    im: np.ndarray = field(repr=False)  # the delivered structure (*shape)
    threshold_rule: str = "target"
    threshold: float = float("nan")
    porosity_goal: float = float("nan")
    decoded_porosity: float = float("nan")
    solid_removed: int = 0
    pores_removed: int = 0
    flipped: int = 0  # voxels flipped after cleaning to meet the porosity goal (inverse.postprocess.flip_to_count)
    screen_from: int | None = None  # rank among the screened latents (surrogate screening only)
    screen_distance: float | None = None
    sur: dict[str, float] = field(default_factory=dict)  # the surrogate's k estimates (latent or variant screening)
    morphology: dict = field(default_factory=dict)  # inverse.morphology_check columns
    verification: Verification | None = None
    source_id: str | None = None  # lookup: the training sample delivered as it is
    noise_seed: int = 0  # the spatial latent's noise field: 0 = decode(z), else a texture variant of z
    porosity_shift: float = 0.0  # the porosity goal's shift from the target's (variants: k brought to the target)
    texture: str = "prior"  # "prior": noise field noise_seed; "bank": the noise_seed-th nearest stored texture; "" lookup

    @property
    def binary_porosity(self) -> float:
        return float(self.im.mean())

    @property
    def hit(self):
        """True / False once verified, nan without verification."""
        return self.verification.hit if self.verification is not None else np.nan

    def to_row(self) -> dict:
        """The ``results.csv`` row (plain Python values, the columns in their historical order)."""
        row = {"target_id": self.target_id, "target": self.target, "method": self.method, "candidate": self.rank,
               "property_model": self.property_model, "eval_index": self.eval_index, "objective": self.objective,
               "distance": self.distance, "mahalanobis": self.mahalanobis, "inside_box": self.inside_box}
        row.update({f"pred_{p}": v for p, v in self.pred.items()})
        row.update({f"regz_{p}": v for p, v in self.regz.items()})
        if self.source_id is not None:
            row["source_id"] = self.source_id
        if self.screen_from is not None:
            row.update(screen_from=self.screen_from, screen_distance=self.screen_distance)
        row.update({f"sur_{p}": v for p, v in self.sur.items()})  # latent or variant screening
        row.update({"threshold_rule": self.threshold_rule, "threshold": self.threshold,
                    "porosity_goal": self.porosity_goal, "decoded_porosity": self.decoded_porosity,
                    "binary_porosity": self.binary_porosity, "solid_removed": self.solid_removed,
                    "pores_removed": self.pores_removed, "flipped": self.flipped, "noise_seed": self.noise_seed, "texture": self.texture,
                    "porosity_shift": self.porosity_shift})
        row.update(self.morphology)
        row.update({f"z{d}": float(v) for d, v in enumerate(self.z)})
        v = self.verification
        if v is not None:
            row.update({f"verified_{p}": x for p, x in v.values.items()})
            row["d_porosity"] = v.d_porosity
            row.update({f"err_{p}": x for p, x in v.errors.items()})
            row.update(converged=v.converged, solver_steps=v.steps, solver_error=v.error)
            if v.morph_ok is not None:
                row["morph_ok"] = v.morph_ok
        row["hit"] = self.hit
        return {k: _fmt(x) for k, x in row.items()}


@dataclass
class TargetOutcome:
    """Everything about one target: its status, searches, candidates and verification."""

    target: Target
    status: str = "ok"  # "ok" | "extrapolation" | "extrapolation-searched"
    notes: list[str] = field(default_factory=list)
    nearest: dict = field(default_factory=dict)
    searches: dict[str, SearchResult] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    verify_time_s: float = 0.0  # all methods' verifications (s)
    decode_time_s: float = 0.0  # all methods' candidate steps: decoding, screening, morphology (s)
    reference: np.ndarray | None = None  # the structure of the target's ref=<sample_id>, when named

    def of_method(self, method: str) -> list[Candidate]:
        return [c for c in self.candidates if c.method == method]


@dataclass
class DesignOutcome:
    cfg: DesignConfig
    targets: list[TargetOutcome]
    results: pd.DataFrame
    summary: pd.DataFrame
    timing: pd.DataFrame
    out: Path
    run_id: str | None = None


# --- extrapolation ------------------------------------------------------------------------------
def label_ranges(y_train: np.ndarray, properties: list[str]) -> dict[str, tuple[float, float]]:
    return {p: (float(np.min(y_train[:, j])), float(np.max(y_train[:, j]))) for j, p in enumerate(properties)}


def predicted_ranges(objective: Objective, space: LatentSpace, n: int = 2048, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Range of the regressor's predictions over the training latents and ``n`` box points."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([space.mu, space.lo + rng.random((n, space.dim)) * (space.hi - space.lo)])
    pred = objective.predict(z)  # (n + N, P)
    return {p: (float(pred[:, j].min()), float(pred[:, j].max())) for j, p in enumerate(objective.names)}


def check_extrapolation(target: Target, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """Messages, one per condition that asks for values outside the training label range."""
    notes = []
    for c in target.conditions:
        lo, hi = ranges[c.prop]
        slack = c.tol if c.prop == "porosity" else 0.0
        if c.kind == "exact":
            if c.prop == "porosity":
                out = c.value < lo - slack or c.value > hi + slack
            else:
                out = c.value < lo / (1 + c.tol) or c.value > hi * (1 + c.tol)
        elif c.kind in ("range", "ge", "le"):
            a, b = c.interval()
            out = b < lo - slack or a > hi + slack
        else:
            out = False
        if out:
            notes.append(f"{c.describe()} is outside the training labels {c.prop} in [{lo:.4g}, {hi:.4g}]")
    return notes


def nearest_achievable(target: Target, objective: Objective, y_train: np.ndarray,
                       ranges: dict, pred_ranges: dict) -> dict:
    """Nearest achievable values: clipped per property, closest training sample, regressor range."""
    out: dict = {}
    for c in target.conditions:
        lo, hi = ranges[c.prop]
        want = c.value if c.kind == "exact" else (c.low if c.low is not None else c.high)
        if want is not None:
            out[f"nearest_{c.prop}"] = float(np.clip(want, lo, hi))
        out[f"train_range_{c.prop}"] = f"{lo:.6g}:{hi:.6g}"
        plo, phi_ = pred_ranges[c.prop]
        out[f"pred_range_{c.prop}"] = f"{plo:.6g}:{phi_:.6g}"
    y_norm = torch.as_tensor(objective.norm.transform(y_train))
    i = int(np.argmin(objective.distance(y_norm).numpy()))
    for j, p in enumerate(objective.names):
        out[f"closest_train_{p}"] = float(y_train[i, j])
    return out


# --- the flow: search, selection (screening, delivery), verification ----------------------------
def _fmt(v):
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    return v


def search_step(cfg: DesignConfig, method: str, objective: Objective, aware: Objective | None,
                y_train: np.ndarray) -> tuple[SearchResult, Objective]:
    """Step 1: search the latent space with ``method``; returns the result and the objective that
    judged its points: the decoder-aware one of ``cfg.property_model`` (gradient: when
    ``cfg.gradient_screen``, its trajectory is screened by it, see
    :func:`inverse.search.run_gradient_screened`), else the regressor's. ``lookup`` ranks the
    training labels (:func:`inverse.search.run_lookup`). ``res.info`` gets ``search_solver_calls``
    (structures the LBM solved inside the search) and ``search_solver_errors``."""
    screen = None
    if method == "gradient" and aware is not None and cfg.gradient_screen:
        # the trajectory is driven by the regressor with the manifold weight of the objective that screens it
        grad = Objective(objective.target, objective.model, objective.norm, objective.space,
                         cfg.manifold_weight_for(cfg.property_model))
        res = run_search(method, grad, y_train, cfg.n_calls, cfg.n_initial, seed=cfg.seed,
                         gradient_lr=cfg.gradient_lr, screen=aware, gradient_steps=cfg.gradient_steps)
        obj = screen = aware
    else:
        obj = objective if (aware is None or method in ("gradient", "lookup")) else aware
        res = run_search(method, obj, y_train, cfg.n_calls, cfg.n_initial, seed=cfg.seed,
                         gradient_lr=cfg.gradient_lr, bo_acq_optimizer=cfg.bo_acq_optimizer, bo_engine=cfg.bo_engine,
                         distinct=(cfg.n_candidates, cfg.candidate_max_iou)
                         if cfg.bo_diversity and cfg.candidate_max_iou < 1 else None)
    if method == "lookup":
        res.info["property_model"] = "labels"
    else:
        res.info["property_model"] = "regressor" if obj is objective else cfg.property_model
    res.info["gradient_screened"] = screen is not None
    res.info["search_solver_calls"] = int(getattr(obj, "solver_calls", 0))
    # solver failures inside the search (k counted as 0 for that latent) are recorded, not hidden
    res.info["search_solver_errors"] = len(getattr(obj, "solver_errors", {}))
    return res, obj


def lookup_step(cfg: DesignConfig, target: Target, res: SearchResult, objective: Objective, space: LatentSpace,
                bundle, morph_ref=None) -> list[Candidate]:
    """Step 2 of ``lookup``: the ``n_candidates`` training samples of ``res`` (closest labels first)
    as :class:`Candidate` records, each the sample's own structure read from the dataset (not
    decoded, not thresholded: its porosity is the sample's, not the target's), its labels as the
    estimate (``pred_*``), the regressor on its latent as ``regz_*``."""
    from data_pipeline.io import read_volume, volume_path

    t0 = time.perf_counter()
    rows = res.info["train_index"][: cfg.n_candidates]
    y = np.asarray(bundle.y_train, dtype=float)
    z = np.asarray(bundle.mu_train, dtype=np.float64)[rows]  # (n, L)
    regz = objective.predict(z)  # (n, P)
    maha = space.mahalanobis(z)  # (n,)
    out = []
    for rank, i in enumerate(rows):
        sid = str(bundle.ids_train[i])
        im = read_volume(volume_path(bundle.dataset, sid)).astype(bool)
        c = Candidate(target.target_id, target.describe(), "lookup", rank, "labels", rank, float(res.f[rank]),
                      float(res.f[rank]), float(maha[rank]), bool(space.inside(z[rank])[0]),
                      pred={p: float(v) for p, v in zip(bundle.properties, y[i])},
                      regz={p: float(v) for p, v in zip(bundle.properties, regz[rank])}, z=z[rank], im=im,
                      threshold_rule="none", source_id=sid, texture="")  # a training structure, not decoded
        if morph_ref is not None:
            c.morphology = morph_ref.columns(im, target.reference)
        out.append(c)
    res.info["candidate_s"] = time.perf_counter() - t0
    return out


def variant_entries(cfg: DesignConfig, target: Target, obj: DeliveredObjective, z0: np.ndarray, pos: int,
                    hit_ims: list[np.ndarray], seeds: list[int] | None = None) -> list[tuple[int, int, float, float]]:
    """Variants of the best latent ``z0`` (L,), judged by the search's objective, until the target
    has ``cfg.n_candidates`` distinct structures that its estimate calls hits, or
    ``cfg.noise_variants`` solver calls are spent.

    Noise fields 1, 2, ... in turn; a variant whose k misses but is within reach of a porosity shift
    of at most ``cfg.porosity_shift`` x the porosity tolerance (:func:`inverse.delivered.porosity_shift_for`)
    is re-binarized at the shifted porosity and judged again (one more call). ``hit_ims``: the
    structures already estimated as hits (the search's own; extended here). With ``cfg.texture``
    "variants" variant k wears the k-th nearest stored texture (:class:`inverse.delivered.Delivery`),
    with "diffusion" a texture of the learned texture prior, and then an estimated hit counts only
    inside the morphology bands of the objective. ``seeds``: the noise seeds in the order to try
    (:func:`screened_variant_seeds`); None = 1, 2, ...

    Returns
    -------
    list of (pos, noise seed, porosity shift, objective) entries, in the order evaluated
    """
    out: list[tuple[int, int, float, float]] = []
    cond = target.condition("porosity")
    max_shift = cfg.porosity_shift * cond.tol if cond is not None and cond.kind == "exact" else 0.0
    hit_ims = list(hit_ims)
    calls0, tried = obj.solver_calls, 0
    order = iter(seeds) if seeds is not None else itertools.count(1)
    z0 = np.asarray(z0, dtype=np.float64)[None]  # (1, L)

    def judge(seed: int, shift: float) -> dict[str, float]:
        f = float(obj.evaluate_variants(z0, seed, shift)[0])
        out.append((pos, seed, shift, f))
        raw = obj.predict_variants(z0, seed, shift)[0]  # (P,) cached
        # learned textures (variants, diffusion): hits inside the morphology bands (ranked first in select_step)
        if obj.hits_of(raw)[0] and (cfg.texture == "prior" or obj.morphology_penalty(z0, seed, shift)[0] == 0):
            hit_ims.append(obj.delivery(z0, seed, shift)[0].im)
        return {n: float(v) for n, v in zip(obj.names, raw)}

    while obj.solver_calls - calls0 < cfg.noise_variants:
        if len(distinct_hits(hit_ims, max_count=cfg.n_candidates, max_iou=cfg.candidate_max_iou)) >= cfg.n_candidates:
            break
        seed = next(order, None)
        if seed is None:
            break  # every screened variant tried
        n_hits = len(hit_ims)
        est = judge(seed, 0.0)
        if len(hit_ims) == n_hits and obj.solver_calls - calls0 < cfg.noise_variants:
            shift = porosity_shift_for(target, est, max_shift)
            if shift:
                judge(seed, shift)
        tried += 1
        if obj.solver_calls == calls0 and tried >= cfg.noise_variants:
            break  # an estimate without solver calls (reencode): the noise fields 1..noise_variants
    return out


def screened_variant_seeds(cfg: DesignConfig, obj: DeliveredObjective, objective: Objective, surrogate,
                           delivery: Delivery, z0: np.ndarray) -> tuple[list[int], dict[int, np.ndarray]]:
    """Noise seeds 1..``cfg.variant_screen`` of the best latent z0 (L,), best surrogate estimate
    first: each variant's delivered structure labeled by the surrogate
    (:func:`inverse.delivered.screen_variants`), ranked by its target distance plus the search
    objective's morphology penalty of that structure (no solver call). Returns the ordered seeds
    and the surrogate's raw estimates (P,) by seed."""
    seeds = list(range(1, cfg.variant_screen + 1))
    dist, raw = screen_variants(objective, surrogate, delivery, z0, seeds)  # (S,), (S, P)
    z = np.asarray(z0, dtype=np.float64)[None]  # (1, L)
    score = dist + np.array([float(obj.morphology_penalty(z, s)[0]) for s in seeds])  # (S,)
    return [seeds[i] for i in np.argsort(score, kind="stable")], dict(zip(seeds, raw))


def select_step(cfg: DesignConfig, target: Target, method: str, res: SearchResult, obj: Objective,
                objective: Objective, space: LatentSpace, delivery: Delivery, properties: list[str],
                surrogate=None, morph_ref=None) -> list[Candidate]:
    """Step 2: the best distinct designs of a search, screened by the surrogate (when given and
    ``cfg.screen_top`` > 0: the ``screen_top`` best are ranked by the surrogate's estimate of their
    delivered structure and the best ``n_candidates`` kept), delivered (decoded, binarized, cleaned)
    and described (estimates, morphology) as :class:`Candidate` records, best first.

    A design is a latent and a noise field: besides the search's evaluations (noise 0, what the
    search saw), the best latent's variants (:func:`variant_entries`: other draws of the spatial
    latent, other structures of the same global code, some at a shifted porosity) are judged by the
    search's objective; candidates are then taken best objective first, structures distinct
    (minority-phase IoU <= ``cfg.candidate_max_iou``) before near copies."""
    t0 = time.perf_counter()
    screen = surrogate is not None and cfg.screen_top > 0
    variant_sur: dict[int, np.ndarray] = {}  # noise seed -> the surrogate's raw estimates (variant screening)
    n_pick = max(cfg.screen_top, cfg.n_candidates) if screen else cfg.n_candidates
    distinct = cfg.candidate_max_iou < 1
    pool = max(n_pick, cfg.candidate_pool * cfg.n_candidates) if distinct else n_pick
    idx = select_candidates(res.z, res.f, pool, cfg.min_distance * space.scale)  # best first
    order = list(range(len(idx)))  # positions in idx, best first
    scr_dist, scr_raw = None, None
    if screen and idx:
        screened = idx[:n_pick]
        scr_dist, scr_raw = screen_scores(objective, surrogate, delivery, res.z[screened])
        order = [int(o) for o in np.argsort(scr_dist, kind="stable")]  # best surrogate estimates first
        res.info["screened"] = len(screened)
    # (position in idx, noise seed, porosity shift, objective)
    entries = [(o, 0, 0.0, float(res.f[idx[o]])) for o in order]
    calls0 = int(getattr(obj, "solver_calls", 0))
    own_z = res.z[[idx[o] for o in order]]  # (n, L) the search's own latents, best first
    if distinct and idx:
        own = delivery(own_z)  # delivered structures (decoded, binarized, cleaned) in one batch; cached
    if (distinct and not screen and idx and cfg.noise_variants > 0 and has_noise(obj.model)
            and isinstance(obj, DeliveredObjective)):
        learned = cfg.texture != "prior"
        # with learned textures (bank, diffusion), variants are tried until they alone give n_candidates
        # distinct hits
        own_hits = [] if learned else [d.im for d, hit in zip(own, obj.predicted_hit(own_z)) if hit]
        seeds = None
        if surrogate is not None and cfg.variant_screen > 0:
            seeds, variant_sur = screened_variant_seeds(cfg, obj, objective, surrogate, delivery, own_z[0])
            res.info["variants_screened"] = len(seeds)
        entries += variant_entries(cfg, target, obj, own_z[0], order[0], own_hits, seeds)
        if learned:  # an estimated hit in a learned texture first (inside the morphology
            # bands, if any), then best objective first
            def learned_hit(e) -> bool:
                return (e[1] > 0 and bool(obj.hits_of(obj.predict_variants(own_z[:1], e[1], e[2]))[0])
                        and float(obj.morphology_penalty(own_z[:1], e[1], e[2])[0]) == 0.0)
            entries.sort(key=lambda e: (not learned_hit(e), e[3], e[1] > 0))
        else:
            entries.sort(key=lambda e: (e[3], e[1] > 0))  # best objective first; the search's own on ties
    res.info["variant_solver_calls"] = int(getattr(obj, "solver_calls", 0)) - calls0
    if distinct and len(entries) > cfg.n_candidates:
        ims = [delivery(res.z[idx[o]], s, sh)[0].im for o, s, sh, _ in entries]  # from the cache
        keep = distinct_hits(ims, max_count=cfg.n_candidates, max_iou=cfg.candidate_max_iou)
        keep += [j for j in range(len(entries)) if j not in keep][: cfg.n_candidates - len(keep)]
        entries = [entries[j] for j in sorted(keep)]
    entries = entries[: cfg.n_candidates]
    pos = [o for o, _, _, _ in entries]
    if scr_dist is not None:
        scr_dist, scr_raw = scr_dist[pos], scr_raw[pos]
    res.info["screen_s"] = time.perf_counter() - t0
    out = []
    for rank, (o, seed, shift, f) in enumerate(entries):
        i = idx[o]
        zi = res.z[i][None]  # (1, L)
        dv = delivery(zi, seed, shift)[0]
        pred = obj.predict_variants(zi, seed, shift) if seed else obj.predict(zi)  # (1, P): the search's estimate
        dist = obj.distance(torch.as_tensor(obj.norm.transform(pred), dtype=torch.float64)).numpy()
        regz = objective.predict(zi)[0]  # (P,): the regressor on z (diagnostic)
        c = Candidate(target.target_id, target.describe(), method, rank, res.info["property_model"], int(i),
                      f, float(dist[0]), float(space.mahalanobis(zi)[0]), bool(space.inside(zi)[0]),
                      pred={p: float(v) for p, v in zip(properties, pred[0])},
                      regz={p: float(v) for p, v in zip(properties, regz)}, z=res.z[i], im=dv.im,
                      threshold_rule=cfg.threshold, threshold=dv.threshold, porosity_goal=dv.goal,
                      decoded_porosity=dv.decoded_porosity, solid_removed=int(dv.info.get("solid_removed", 0)),
                      pores_removed=int(dv.info.get("pores_removed", 0)), flipped=int(dv.info.get("flipped", 0)),
                      noise_seed=int(seed),
                      porosity_shift=float(shift),
                      texture=delivery.variant_texture if seed else "prior")
        if scr_raw is not None:
            c.screen_from, c.screen_distance = int(o), float(scr_dist[rank])
            c.sur = {p: float(v) for p, v in zip(properties, scr_raw[rank]) if p != "porosity"}
        elif seed in variant_sur and shift == 0:
            c.sur = {p: float(v) for p, v in zip(properties, variant_sur[seed]) if p != "porosity"}
        if morph_ref is not None:
            c.morphology = morph_ref.columns(dv.im, target.reference)
        out.append(c)
    res.info["candidate_s"] = time.perf_counter() - t0
    return out


def verify_step(cfg: DesignConfig, target: Target, candidates: list[Candidate], properties: list[str]) -> float:
    """Step 3: solve every candidate of a target in one batch and record its :class:`Verification`
    (porosity, the predicted k components and the targeted ones; the hit); returns the seconds."""
    if not candidates:
        return 0.0
    recs, secs = verify_batch([c.im for c in candidates], cfg.solver)
    verify_props = list(dict.fromkeys(["porosity"] + [p for p in properties if is_k_component(p)]
                                      + target.properties))
    for c, rec in zip(candidates, recs):
        ver = verified_values(rec, verify_props)
        pred = c.pred
        errors = {}
        for cond in target.conditions:
            v = ver[cond.prop]
            ref = cond.value if cond.kind == "exact" else pred.get(cond.prop)
            if ref is None:
                continue
            errors[cond.prop] = (v - ref) if cond.prop == "porosity" else (v - ref) / abs(ref) if ref else np.nan
        morph_ok = None
        if target.optimizes:  # an unbounded target counts only within the material's morphology
            lo, hi = cfg.morphology_band
            ratio = c.morphology.get("ss_ratio_train", np.nan)
            morph_ok = (bool(np.isfinite(ratio) and lo <= ratio <= hi) and c.morphology.get("anisotropy_ok", True)
                        and c.morphology.get("spread_ok", True))
            if target.condition("porosity") is None and np.isfinite(c.porosity_goal):
                # ... and at the porosity it asked for, inside the training range: cleaning can move the
                # pore fraction (2D: +0.013 once), and k grows by porosity alone (Kozeny-Carman: ~12% per 0.01 at 0.74)
                morph_ok = morph_ok and ver["porosity"] <= c.porosity_goal + 0.5 * cfg.tol_porosity
        c.verification = Verification(
            values=ver, d_porosity=ver["porosity"] - pred.get("porosity", np.nan) if "porosity" in pred else np.nan,
            errors=errors, converged=bool(rec["converged"]), steps=int(rec["steps"]), error=rec["error"],
            hit=bool(target.hit(ver, pred)) and bool(rec["converged"]) and not rec["error"] and morph_ok is not False,
            morph_ok=morph_ok)
    return secs


def screen_extrapolation(cfg: DesignConfig, bundle, space: LatentSpace, objective: Objective,
                         outcome: TargetOutcome, pred_ranges_cache: dict, log=print) -> bool:
    """Flag a target outside the training labels (notes, nearest achievable values); True when it
    is to be searched."""
    target = outcome.target
    ranges = label_ranges(bundle.y_train, bundle.properties)
    if "pred" not in pred_ranges_cache:
        pred_ranges_cache["pred"] = predicted_ranges(objective, space, seed=cfg.seed)
    notes = check_extrapolation(target, ranges)
    outcome.nearest = nearest_achievable(target, objective, bundle.y_train, ranges, pred_ranges_cache["pred"])
    if notes:
        outcome.notes = notes
        outcome.status = "extrapolation-searched" if cfg.allow_extrapolation else "extrapolation"
        log(f"[{target.target_id}] EXTRAPOLATION: " + "; ".join(notes)
            + ("" if cfg.allow_extrapolation else " -> not searched (allow_extrapolation to force)"))
    return not notes or cfg.allow_extrapolation


def run_target(cfg: DesignConfig, bundle, space: LatentSpace, target: Target, pred_ranges_cache: dict,
               log=print, surrogate=None, morph_ref=None) -> TargetOutcome:
    """One target: extrapolation check, then per method: search, selection (or lookup), verification."""
    outcome = TargetOutcome(target)
    objective = Objective(target, bundle.model, bundle.norm, space, cfg.manifold_weight_for("regressor"))  # the regressor's
    if not screen_extrapolation(cfg, bundle, space, objective, outcome, pred_ranges_cache, log):
        return outcome
    for method in cfg.methods:
        # per method: one delivery (decode -> binarize -> clean, cached by z) shared by its objective and
        # its candidates, and its own decoder-aware objective: no method is served another's solves
        delivery = Delivery(bundle.model, bundle.norm, target, cfg.threshold, cfg.fixed_threshold, cfg.clean,
                            cfg.max_island, variant_texture=VARIANT_TEXTURE[cfg.texture])
        if target.optimizes and target.condition("porosity") is None and "porosity" in bundle.properties:
            phi = np.asarray(bundle.y_train, dtype=float)[:, bundle.properties.index("porosity")]
            delivery.porosity_range = (float(np.nanmin(phi)), float(np.nanmax(phi)))  # the material's porosities
        aware = None
        if cfg.property_model != "regressor" and method != "lookup":
            aware = make_objective(cfg.property_model, target, bundle.model, bundle.norm, space, delivery,
                                   cfg.manifold_weight_for(cfg.property_model), surrogate,
                                   {**cfg.solver, **cfg.search_solver})
            if morph_ref is not None and cfg.morphology_weight > 0:
                held = [(morph_ref.anisotropy_ratio, morph_ref.anisotropy_band),  # and the material's isotropy
                        (morph_ref.spread_ratio, morph_ref.spread_band)]  # and how evenly its solid is spread
                if target.optimizes:  # held to the material: specific surface against the training median
                    aware.set_morphology(morph_ref.ss_ratio, tuple(cfg.morphology_band), cfg.morphology_weight,
                                         extra=held)
                elif target.reference and cfg.match_reference:  # held to the sample the target names
                    aware.set_morphology(morph_ref.ss_ratio_to(target.reference), tuple(cfg.reference_band),
                                         cfg.morphology_weight)
                elif cfg.material_band == "all":  # any other target: held to the material as well
                    aware.set_morphology(morph_ref.ss_ratio, tuple(cfg.morphology_band), cfg.morphology_weight,
                                         extra=held)
        res, obj = search_step(cfg, method, objective, aware, bundle.y_train)
        outcome.searches[method] = res
        if method == "lookup":
            mine = lookup_step(cfg, target, res, objective, space, bundle, morph_ref)
        else:
            mine = select_step(cfg, target, method, res, obj, objective, space, delivery, bundle.properties,
                               surrogate, morph_ref)
        outcome.candidates += mine
        outcome.decode_time_s += float(res.info.get("candidate_s", 0.0))
        if cfg.verify:
            secs = verify_step(cfg, target, mine, bundle.properties)
            res.info.update(verify_s=secs, verify_solver_calls=len(mine))
            outcome.verify_time_s += secs
    return outcome


def _tables(cfg: DesignConfig, outcomes: list[TargetOutcome]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    results = pd.DataFrame([c.to_row() for o in outcomes for c in o.candidates])
    if not results.empty:
        first = ["target_id", "method", "candidate", "pred_porosity", "verified_porosity", "hit"]
        first = [c for c in first if c in results.columns]
        zc = [c for c in results.columns if c.startswith("z") and c[1:].isdigit()]
        rest = [c for c in results.columns if c not in first and c not in zc]
        results = results[first + rest + zc]
    summary, timing = [], []
    for o in outcomes:
        t = o.target
        base = {"target_id": t.target_id, "target": t.describe(), "spec": t.spec, "status": o.status,
                "notes": " | ".join(o.notes)}
        if t.optimizes:
            base["hit_means"] = hit_meaning(t, cfg)
        base.update(o.nearest)
        for m in (cfg.methods if o.searches else [None]):
            rec = dict(base)
            if m is not None:
                res = o.searches[m]
                mine = o.of_method(m)
                hits = [c.hit for c in mine]
                rec.update({"method": m, "property_model": res.info.get("property_model"),
                            "screened": int(res.info.get("screened", 0)), "best_objective": float(res.f.min()), "n_evals": res.n_evals,
                            "search_solver_errors": int(res.info.get("search_solver_errors", 0)),
                            "n_candidates": len(mine),
                            "hit_any": bool(any(h is True for h in hits)) if cfg.verify else np.nan,
                            "hit_best": bool(mine[0].hit) if (cfg.verify and mine) else np.nan})
                cand_s = float(res.info.get("candidate_s", 0.0))
                ver_s = float(res.info.get("verify_s", 0.0))
                n_search = int(res.info.get("search_solver_calls", 0))
                n_ver = int(res.info.get("verify_solver_calls", 0))
                n_var = int(res.info.get("variant_solver_calls", 0))
                timing.append({"target_id": t.target_id, "method": m, "property_model": res.info.get("property_model"),
                               "search_s": res.time_s, "candidate_s": cand_s, "verify_s": ver_s,
                               "total_s": res.time_s + cand_s + ver_s, "search_solver_calls": n_search,
                               "variant_solver_calls": n_var, "verify_solver_calls": n_ver,
                               "solver_calls": n_search + n_var + n_ver})
            summary.append(rec)
    return results, pd.DataFrame(summary), pd.DataFrame(timing)


def _with_bar_reference(t: Target, bundle, elsewhere: bool = False) -> Target:
    """An optimizing target without ``ref=`` gets the training sample of its first max/min bar as
    reference structure (figures, ss_ratio_ref / s2_distance_ref); other targets unchanged.
    ``elsewhere``: the targets' references live in another dataset (DesignConfig.reference_dataset),
    so the bar sample is named ``train:<id>`` (inverse.morphology_check.TRAIN_PREFIX)."""
    import dataclasses

    c = next((c for c in t.conditions if c.kind in ("max", "min")), None)
    if t.reference or c is None or c.prop not in bundle.properties:
        return t
    col = np.asarray(bundle.y_train, dtype=float)[:, bundle.properties.index(c.prop)]
    col = np.where(np.isfinite(col), col, -np.inf if c.kind == "max" else np.inf)
    i = int(np.argmax(col) if c.kind == "max" else np.argmin(col))
    from inverse.morphology_check import TRAIN_PREFIX
    return dataclasses.replace(t, reference=(TRAIN_PREFIX if elsewhere else "") + str(bundle.ids_train[i]))


def hit_meaning(t: Target, cfg: DesignConfig) -> str:
    """What HIT means for a target with maximize / minimize conditions (logged, and in targets.csv)."""
    parts = []
    for c in t.conditions:
        if c.kind == "max" and c.low is not None:
            parts.append(f"verified {c.prop} > {c.low:.4g} (the best training sample{', ' + t.reference if t.reference else ''})")
        elif c.kind == "min" and c.high is not None:
            parts.append(f"verified {c.prop} < {c.high:.4g} (the lowest training sample)")
        elif c.kind in ("max", "min"):
            parts.append(f"verified {c.prop} within {c.tol:g} of the prediction")
        else:
            parts.append(c.describe())
    lo, hi = cfg.morphology_band
    parts.append(f"specific surface {lo:g}-{hi:g}x the training median at its porosity (ss_ratio_train)"
                 ", anisotropy within the training range (anisotropy_ok) and local porosity spread within"
                 " the training structures' range (spread_ok)")
    text = " and ".join(parts)
    if t.condition("porosity") is None:
        text += (f"; the design's porosity is kept within the training range (verified at most "
                 f"{0.5 * cfg.tol_porosity:g} above the goal it was binarized at)")
    return text


def _log_candidate(t: Target, c: Candidate) -> str:
    ver = c.verification.values
    nan = float("nan")
    return (f"#{c.rank} pred phi {c.pred.get('porosity', nan):.3f} ver phi {ver['porosity']:.3f}"
            + "".join(f" {k.prop} pred {c.pred.get(k.prop, nan):.4g} ver {ver[k.prop]:.4g}"
                      for k in t.conditions if k.prop != "porosity")
            + (f" ss_ratio {c.morphology.get('ss_ratio_train', nan):.2f}"
               f" anisotropy {c.morphology.get('anisotropy', nan):.2f}" if t.optimizes else "")
            + (" HIT" if c.hit else " miss")
            + ("" if c.verification.converged else " (verification not converged)"))


def design(cfg: DesignConfig, bundle=None, log=print) -> DesignOutcome:
    """Run the whole inverse design of ``cfg`` (see module doc); ``bundle`` reuses a loaded model."""
    from inverse.model_source import load_bundle
    from inverse.report import write_outputs

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if bundle is None:
        bundle = load_bundle(cfg.model, cfg.dataset, cfg.tracking_uri, cfg.device, cache_dir=out / ".model")
    if cfg.texture == "variants" and not len(getattr(bundle.model, "bank_codes", ())):
        raise ValueError(f"texture: variants needs a model with a texture bank; {cfg.model} has none "
                         "(train it with texture_bank > 0, or use texture: prior)")
    if cfg.texture == "diffusion" and getattr(bundle.model, "texture_diffusion", None) is None:
        raise ValueError(f"texture: diffusion needs a model with a learned texture prior; {cfg.model} has none "
                         "(bench/texture_diffusion.py fits one into a copy of the checkpoint, or use texture: prior)")
    targets = build_targets(cfg.targets, cfg.targets_csv, cfg.units, bundle.voxel_size, cfg.tol_porosity, cfg.tol_k)
    check_targets_for_model(targets, bundle.properties)
    # maximize / minimize: a hit must beat the best training sample (with_training_bars)
    targets = [with_training_bars(t, bundle.y_train, bundle.properties) for t in targets]
    # ... and is shown (and its morphology compared) beside the training sample that sets the bar
    elsewhere = bool(cfg.reference_dataset) and Path(cfg.reference_dataset).resolve() != Path(bundle.dataset).resolve()
    targets = [_with_bar_reference(t, bundle, elsewhere) for t in targets]
    surrogate = None
    if cfg.surrogate:
        from inverse.delivered import check_surrogate, load_design_surrogate
        surrogate = load_design_surrogate(cfg.surrogate, bundle.cfg, cfg.device)
        if cfg.property_model == "surrogate":
            for t in targets:
                check_surrogate(surrogate, bundle.cfg, cfg.surrogate, t.properties)
    space = latent_space(bundle.mu_train, cfg.bounds, cfg.quantile, cfg.box_margin, cfg.prior_radius,
                         cfg.manifold_quantile)
    log(f"model {cfg.model} ({bundle.folder}): {bundle.cfg.dims}D, latent_dim {space.dim}, predicts "
        f"{', '.join(bundle.properties)}; {len(bundle.ids_train)} training latents; {len(targets)} target(s)")
    from inverse.morphology_check import MorphologyReference
    morph_ref = MorphologyReference(bundle.dataset, bundle.ids_train, seed=cfg.seed,
                                    reference_dataset=cfg.reference_dataset)
    for t in targets:
        if t.reference:
            morph_ref.sample(t.reference)  # a missing reference sample fails here, before any search
    cache: dict = {}
    outcomes = []
    for t in targets:
        if t.optimizes:
            log(f"[{t.target_id}] HIT means: " + hit_meaning(t, cfg))
        o = run_target(cfg, bundle, space, t, cache, log, surrogate, morph_ref)
        o.reference = morph_ref.sample(t.reference)[0] if t.reference else None
        outcomes.append(o)
        for m in o.searches:
            mine = o.of_method(m)
            if mine and cfg.verify:
                log(f"[{t.target_id}] {m:8s} " + "; ".join(_log_candidate(t, c) for c in mine))
    results, summary, timing = _tables(cfg, outcomes)
    outcome = DesignOutcome(cfg, outcomes, results, summary, timing, out)
    outcome.run_id = write_outputs(outcome, bundle, space, log=log)
    return outcome


# --- the `design` verb ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inverse design", description=(
        "Design microstructures with target porosity / permeability: search the pVAE latent space "
        "(Bayesian optimization by default), decode, binarize and clean the best candidates, and "
        "verify them with the LBM solver. Writes OUT/results.csv, targets.csv, candidates/*.tif, "
        "figures/*.png and an MLflow run."),
        epilog="Target syntax: porosity=0.6,k_xx=1.2 | porosity=0.6+-0.01,k_xx=1.2+-10%% | k_xx=0.5:2 | "
               "k_xx>=1 | maximize:k_xx. Permeability in lattice units (voxel^2) unless --units physical (m^2).")
    p.add_argument("--config", help="YAML config (flat DesignConfig fields); the options below override it")
    p.add_argument("--model", help="MLflow model URI (default models:/pvae@champion) or checkpoint folder")
    p.add_argument("--dataset", help="dataset folder the model was trained on (default: recorded in the checkpoint)")
    p.add_argument("--target", action="append", dest="targets", metavar="SPEC",
                   help="a target, e.g. porosity=0.6,k_xx=1.2 (repeatable)")
    p.add_argument("--targets-csv", help="CSV of targets (a 'spec' column or one column per property)")
    p.add_argument("--units", choices=["lattice", "physical"], help="permeability units of the targets")
    p.add_argument("--method", dest="methods",
                   help="comma-separated: bo,tpe,random,gradient,lookup (default bo); lookup = the training samples "
                        "with the closest labels, delivered as they are (the database baseline)")
    p.add_argument("--n-calls", type=int, help="objective evaluations per target and method")
    p.add_argument("--bo-engine", choices=["composite", "gp_minimize"],
                   help="bo: one GP per targeted property and Monte-Carlo expected improvement of the objective "
                        "(composite, default) or skopt.gp_minimize on the objective value")
    p.add_argument("--n-candidates", type=int, help="decoded and verified candidates per target and method")
    p.add_argument("--seed", type=int)
    p.add_argument("--property-model", choices=list(PROPERTY_MODELS),
                   help="property estimate of a latent in the bo/tpe/random objective: the regressor on z, or the "
                        "delivered (decoded, binarized, cleaned) structure re-encoded, labeled by the surrogate or "
                        "solved by the LBM (search_solver tolerance)")
    p.add_argument("--surrogate", help="CNN permeability surrogate checkpoint folder (same input size as the pVAE): "
                                       "screens candidates before the solver; needed by --property-model surrogate")
    p.add_argument("--screen-top", type=int, help="latents decoded and ranked by the surrogate per target and method "
                                                  "(the best --n-candidates go to the solver; 0 = no screening)")
    p.add_argument("--threshold", choices=["target", "decoded", "fixed"], help="binarization rule")
    p.add_argument("--texture", choices=["prior", "variants", "diffusion"],
                   help="texture variants of the best latent from the Gaussian texture prior (prior) or from the "
                        "model's texture bank, the textures of training structures (variants; needs a model "
                        "trained with texture_bank > 0) or from its learned texture prior (diffusion; needs a "
                        "checkpoint holding one, bench/texture_diffusion.py)")
    p.add_argument("--variant-screen", type=int,
                   help="with --surrogate and --screen-top 0: deliver this many texture variants of the best latent, "
                        "label them by the surrogate and solve them best estimate first (0 = seed order)")
    p.add_argument("--no-verify", action="store_true", help="skip the solver (predictions only)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    p.add_argument("--allow-extrapolation", action="store_true", help="search targets outside the training labels")
    p.add_argument("--out", help="output folder (default runs/inverse)")
    p.add_argument("--device", help="torch device of the model (cpu, cuda, auto)")
    return p


def config_from_args(args) -> DesignConfig:
    over = {k: getattr(args, k) for k in ("model", "dataset", "targets", "targets_csv", "units", "methods",
                                          "n_calls", "n_candidates", "seed", "threshold", "out", "device",
                                          "property_model", "surrogate", "screen_top", "bo_engine", "texture",
                                          "variant_screen")}
    if args.methods:
        over["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.no_verify:
        over["verify"] = False
    if args.no_mlflow:
        over["mlflow"] = False
    if args.allow_extrapolation:
        over["allow_extrapolation"] = True
    return load_design_config(args.config, **over)


def main(argv: list[str] | None = None) -> int:
    from inverse.model_source import ModelSourceError

    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if cfg.device == "auto":
            cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
        outcome = design(cfg)
    except (TargetError, ModelSourceError, FileNotFoundError, ValueError) as exc:
        return failed("python -m inverse design: error", exc)
    s = outcome.summary
    if cfg.verify and "hit_any" in s.columns and not s.empty:
        for m, g in s.dropna(subset=["method"]).groupby("method", sort=False):
            print(f"{m}: {int(g['hit_any'].sum())}/{len(g)} targets hit (verified by the solver)")
    n_ext = int((s["status"] == "extrapolation").sum()) if not s.empty else 0
    if n_ext:
        print(f"{n_ext} target row(s) flagged as extrapolation (see targets.csv)")
    print(f"results: {outcome.out / 'results.csv'}" + (f"  (MLflow run {outcome.run_id})" if outcome.run_id else ""))
    return 0
