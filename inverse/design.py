"""Inverse design: targets -> latent search -> decoded, cleaned candidates -> LBM verification.

``design(cfg)`` is the whole flow behind ``python -m inverse design``:

1. resolve the model (MLflow URI or checkpoint folder) and encode its training subset;
2. parse the targets (lattice or physical units) and flag extrapolation: a condition outside the
   range of the training labels (by more than its tolerance) is reported with the nearest
   achievable values (the clipped value, the closest training sample's labels and the range the
   regressor predicts over the search box) and is not searched unless ``allow_extrapolation``;
3. search each target with every method of ``cfg.methods`` under the same budget;
4. decode the best distinct candidates, binarize (stated threshold rule) and clean them;
5. verify porosity and permeability with the solver, one batch per target;
6. write ``results.csv`` (one row per verified candidate), ``targets.csv`` (one row per target),
   ``timing.csv``, the candidates as .tif, figures and an MLflow run (:mod:`inverse.report`).

``results.csv`` holds no wall times so that the same seed gives a byte-identical file.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from inverse.config import PROPERTY_MODELS, DesignConfig, load_design_config
from inverse.objective import LatentSpace, Objective, latent_space
from inverse.delivered import Delivery, decode_probabilities, make_objective, screen_scores  # noqa: F401
from inverse.search import SearchResult, run_search, select_candidates
from inverse.targets import Target, TargetError, build_targets, check_targets_for_model, is_permeability
from inverse.verify import verified_values, verify_batch


@dataclass
class TargetOutcome:
    """Everything about one target: its status, searches, candidates and verification."""

    target: Target
    status: str = "ok"  # "ok" | "extrapolation" | "extrapolation-searched"
    notes: list[str] = field(default_factory=list)
    nearest: dict = field(default_factory=dict)
    searches: dict[str, SearchResult] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    volumes: list[np.ndarray] = field(default_factory=list)
    verify_time_s: float = 0.0
    decode_time_s: float = 0.0
    reference: np.ndarray | None = None  # the structure of the target's ref=<sample_id>, when named


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


# --- decoding ---------------------------------------------------------------------------------
# --- the flow ---------------------------------------------------------------------------------
def _fmt(v):
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    return v


def run_target(cfg: DesignConfig, bundle, space: LatentSpace, target: Target, pred_ranges_cache: dict,
               log=print, surrogate=None, morph_ref=None) -> TargetOutcome:
    outcome = TargetOutcome(target)
    objective = Objective(target, bundle.model, bundle.norm, space, cfg.manifold_weight_for("regressor"))  # the regressor's
    props = bundle.properties
    ranges = label_ranges(bundle.y_train, props)
    if "pred" not in pred_ranges_cache:
        pred_ranges_cache["pred"] = predicted_ranges(objective, space, seed=cfg.seed)
    notes = check_extrapolation(target, ranges)
    outcome.nearest = nearest_achievable(target, objective, bundle.y_train, ranges, pred_ranges_cache["pred"])
    if notes:
        outcome.notes = notes
        outcome.status = "extrapolation-searched" if cfg.allow_extrapolation else "extrapolation"
        log(f"[{target.target_id}] EXTRAPOLATION: " + "; ".join(notes)
            + ("" if cfg.allow_extrapolation else " -> not searched (allow_extrapolation to force)"))
        if not cfg.allow_extrapolation:
            return outcome

    targeted = target.properties
    # one delivery (decode -> binarize -> clean, cached by z) shared by the objectives and the candidates
    delivery = Delivery(bundle.model, bundle.norm, target, cfg.threshold, cfg.fixed_threshold, cfg.clean,
                        cfg.max_island)
    aware = None
    if cfg.property_model != "regressor":
        aware = make_objective(cfg.property_model, target, bundle.model, bundle.norm, space, delivery,
                               cfg.manifold_weight_for(cfg.property_model), surrogate,
                               {**cfg.solver, **cfg.search_solver})
    screen = surrogate is not None and cfg.screen_top > 0
    t_dec = time.perf_counter()
    for method in cfg.methods:
        obj = objective if (aware is None or method == "gradient") else aware
        pm = "regressor" if obj is objective else cfg.property_model
        res = run_search(method, obj, bundle.y_train, cfg.n_calls, cfg.n_initial, seed=cfg.seed,
                         gradient_lr=cfg.gradient_lr, bo_acq_optimizer=cfg.bo_acq_optimizer,
                         bo_engine=cfg.bo_engine)
        res.info["property_model"] = pm
        # solver failures inside the search (k counted as 0 for that latent) are recorded, not hidden
        res.info["search_solver_errors"] = len(getattr(obj, "solver_errors", {}))
        outcome.searches[method] = res
        t_dec += res.time_s
        t_scr = time.perf_counter()
        n_pick = max(cfg.screen_top, cfg.n_candidates) if screen else cfg.n_candidates
        idx = select_candidates(res.z, res.f, n_pick, cfg.min_distance * space.scale)
        scr_rank = list(range(len(idx)))
        scr_dist, scr_raw = None, None
        if screen and idx:
            scr_dist, scr_raw = screen_scores(objective, surrogate, delivery, res.z[idx])
            order = np.argsort(scr_dist, kind="stable")[: cfg.n_candidates]  # best surrogate estimates first
            scr_rank = [int(o) for o in order]
            scr_dist, scr_raw = scr_dist[order], scr_raw[order]
            res.info["screened"] = len(idx)
            idx = [idx[o] for o in order]
        res.info["screen_s"] = time.perf_counter() - t_scr
        z = res.z[idx]  # (n, L)
        pred = obj.predict(z)  # (n, P): the estimate the search used
        regz = objective.predict(z)  # (n, P): the regressor on z (diagnostic)
        dist = obj.distances(z)
        maha = space.mahalanobis(z)
        delivered = delivery(z)
        for rank, (i, zi, pi, ri, dv) in enumerate(zip(idx, z, pred, regz, delivered)):
            row = {"target_id": target.target_id, "target": target.describe(), "method": method,
                   "candidate": rank, "property_model": pm, "eval_index": int(i), "objective": float(res.f[i]),
                   "distance": float(dist[rank]), "mahalanobis": float(maha[rank]),
                   "inside_box": bool(space.inside(zi)[0])}
            for p, v in zip(props, pi):
                row[f"pred_{p}"] = float(v)
            for p, v in zip(props, ri):
                row[f"regz_{p}"] = float(v)
            if scr_raw is not None:
                row["screen_from"] = int(scr_rank[rank])
                row["screen_distance"] = float(scr_dist[rank])
                for p, v in zip(props, scr_raw[rank]):
                    if p != "porosity":
                        row[f"sur_{p}"] = float(v)
            row.update({"threshold_rule": cfg.threshold, "threshold": dv.threshold, "porosity_goal": dv.goal,
                        "decoded_porosity": dv.decoded_porosity, "binary_porosity": float(dv.im.mean()),
                        "solid_removed": int(dv.info.get("solid_removed", 0)),
                        "pores_removed": int(dv.info.get("pores_removed", 0))})
            if morph_ref is not None:
                row.update(morph_ref.columns(dv.im, target.reference))
            row.update({f"z{d}": float(v) for d, v in enumerate(zi)})
            outcome.rows.append(row)
            outcome.volumes.append(dv.im)
        res.info["candidate_s"] = time.perf_counter() - t_scr
    outcome.decode_time_s = time.perf_counter() - t_dec

    if cfg.verify and outcome.volumes:
        recs, secs = verify_batch(outcome.volumes, cfg.solver)
        outcome.verify_time_s = secs
        verify_props = list(dict.fromkeys(["porosity"] + [p for p in props if is_permeability(p)] + targeted))
        for row, rec in zip(outcome.rows, recs):
            ver = verified_values(rec, verify_props)
            pred = {p: row.get(f"pred_{p}") for p in props}
            for p in verify_props:
                row[f"verified_{p}"] = ver[p]
            row["d_porosity"] = ver["porosity"] - pred.get("porosity", np.nan) if "porosity" in pred else np.nan
            for c in target.conditions:
                v = ver[c.prop]
                ref = c.value if c.kind == "exact" else pred.get(c.prop)
                if ref is None:
                    continue
                row[f"err_{c.prop}"] = (v - ref) if c.prop == "porosity" else (v - ref) / abs(ref) if ref else np.nan
            row["converged"] = bool(rec["converged"])
            row["solver_steps"] = int(rec["steps"])
            row["solver_error"] = rec["error"]
            row["hit"] = bool(target.hit(ver, pred)) and not rec["error"]
    else:
        for row in outcome.rows:
            row["hit"] = np.nan
    for row in outcome.rows:
        # order the columns: the contract's first
        for k in list(row):
            row[k] = _fmt(row[k])
    return outcome


def _tables(cfg: DesignConfig, outcomes: list[TargetOutcome]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = [r for o in outcomes for r in o.rows]
    results = pd.DataFrame(rows)
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
        base.update(o.nearest)
        for m in (cfg.methods if o.searches else [None]):
            rec = dict(base)
            if m is not None:
                res = o.searches[m]
                mine = [r for r in o.rows if r["method"] == m]
                hits = [r.get("hit") for r in mine]
                rec.update({"method": m, "property_model": res.info.get("property_model"),
                            "screened": int(res.info.get("screened", 0)), "best_objective": float(res.f.min()), "n_evals": res.n_evals,
                            "search_solver_errors": int(res.info.get("search_solver_errors", 0)),
                            "n_candidates": len(mine),
                            "hit_any": bool(any(h is True for h in hits)) if cfg.verify else np.nan,
                            "hit_best": bool(mine[0].get("hit")) if (cfg.verify and mine) else np.nan})
                n_all = max(len(o.rows), 1)
                cand_s = float(res.info.get("candidate_s", 0.0))
                timing.append({"target_id": t.target_id, "method": m, "property_model": res.info.get("property_model"),
                               "search_s": res.time_s, "candidate_s": cand_s,
                               "verify_s": o.verify_time_s * len(mine) / n_all,
                               "total_s": res.time_s + cand_s + o.verify_time_s * len(mine) / n_all})
            summary.append(rec)
    return results, pd.DataFrame(summary), pd.DataFrame(timing)


def design(cfg: DesignConfig, bundle=None, log=print) -> DesignOutcome:
    """Run the whole inverse design of ``cfg`` (see module doc); ``bundle`` reuses a loaded model."""
    from inverse.model_source import load_bundle
    from inverse.report import write_outputs

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if bundle is None:
        bundle = load_bundle(cfg.model, cfg.dataset, cfg.tracking_uri, cfg.device, cache_dir=out / ".model")
    targets = build_targets(cfg.targets, cfg.targets_csv, cfg.units, bundle.voxel_size, cfg.tol_porosity, cfg.tol_k)
    check_targets_for_model(targets, bundle.properties)
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
    morph_ref = MorphologyReference(bundle.dataset, bundle.ids_train, seed=cfg.seed)
    for t in targets:
        if t.reference:
            morph_ref.sample(t.reference)  # a missing reference sample fails here, before any search
    cache: dict = {}
    outcomes = []
    for t in targets:
        o = run_target(cfg, bundle, space, t, cache, log, surrogate, morph_ref)
        o.reference = morph_ref.sample(t.reference)[0] if t.reference else None
        outcomes.append(o)
        for m in o.searches:
            mine = [r for r in o.rows if r["method"] == m]
            if mine and cfg.verify:
                log(f"[{t.target_id}] {m:8s} " + "; ".join(
                    f"#{r['candidate']} pred phi {r.get('pred_porosity', float('nan')):.3f} ver phi "
                    f"{r['verified_porosity']:.3f}" + "".join(
                        f" {c.prop} pred {r.get('pred_' + c.prop, float('nan')):.4g} ver {r['verified_' + c.prop]:.4g}"
                        for c in t.conditions if c.prop != "porosity") + (" HIT" if r["hit"] else " miss")
                    for r in mine))
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
    p.add_argument("--method", dest="methods", help="comma-separated: bo,tpe,random,gradient (default bo)")
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
    p.add_argument("--no-verify", action="store_true", help="skip the solver (predictions only)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    p.add_argument("--allow-extrapolation", action="store_true", help="search targets outside the training labels")
    p.add_argument("--out", help="output folder (default runs/inverse)")
    p.add_argument("--device", help="torch device of the model (cpu, cuda, auto)")
    return p


def config_from_args(args) -> DesignConfig:
    over = {k: getattr(args, k) for k in ("model", "dataset", "targets", "targets_csv", "units", "methods",
                                          "n_calls", "n_candidates", "seed", "threshold", "out", "device",
                                          "property_model", "surrogate", "screen_top", "bo_engine")}
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
        print(f"python -m inverse design: error: {exc}", file=sys.stderr)
        return 2
    s = outcome.summary
    if cfg.verify and "hit_any" in s.columns and not s.empty:
        for m, g in s.dropna(subset=["method"]).groupby("method", sort=False):
            print(f"{m}: {int(g['hit_any'].sum())}/{len(g)} targets hit (verified by the solver)")
    n_ext = int((s["status"] == "extrapolation").sum()) if not s.empty else 0
    if n_ext:
        print(f"{n_ext} target row(s) flagged as extrapolation (see targets.csv)")
    print(f"results: {outcome.out / 'results.csv'}" + (f"  (MLflow run {outcome.run_id})" if outcome.run_id else ""))
    return 0
