"""Benchmark of inverse design: LBM-verified hit rate and time per target, BO vs random vs gradient.

Targets are held-out samples (the model's val + test splits, never seen in training): each asks
for the sample's own porosity and permeability components (``--components``), exact, with the
hit criterion |d phi| <= 0.02 and |d k| / k <= 15% per component. Every method gets the same
budget (``--n-calls`` objective evaluations, ``--n-candidates`` decoded candidates verified by
the solver). Prints one line per method (and a JSON record with ``--json``):

    hit@1   the best candidate (lowest objective, or best surrogate screen) hits, verified by the LBM solver
    hit@N   any of the N verified candidates hits
    pred@1  the search's own estimate (its property model) for the best candidate hits (search quality alone)
    phi@1   the best candidate's verified porosity is within 0.02 of the target
    s/target  search + verification wall time per target

Run (the figures of bench/RESULTS.md; without --model, a model is first trained with --train-config):

    python bench/inverse.py --dataset runs/bench32/data --model runs/bench32/pvae_full/best \
        --n-targets 20 --n-calls 60 --property-models solver --methods bo,random,gradient

Variants (``--property-models``): the property estimate of the bo/random objective: ``solver``
(the LBM on the delivered structure, tolerance ``--search-tol``), ``regressor`` (on z),
``reencode`` (the delivered structure re-encoded), ``surrogate`` (the CNN surrogate on the delivered
structure); gradient always uses the regressor; '+screen' adds surrogate screening. ``--bo-engine``
picks composite BO (default) or skopt.gp_minimize. ``ver/pred`` is the median verified k / the
estimate the search used (1.0 = calibrated), ``ver/regz`` the same against the regressor on z.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.properties import is_k_component  # noqa: E402


def held_out_targets(bundle, n: int, components: list[str]) -> list[str]:
    """Target specs from the model's val + test samples (labels in lattice units)."""
    from data_pipeline.dataset import VoxelDataset

    cfg = bundle.cfg
    missing = [c for c in components if c not in cfg.properties]
    if missing:
        raise SystemExit(f"the model does not predict {missing}; it predicts {cfg.properties}")
    specs = []
    for split in ("test", "val"):
        ds = VoxelDataset(bundle.dataset, split, properties=components, fractions=tuple(cfg.split_fractions),
                          split_seed=cfg.split_seed)
        for sid, y in zip(ds.ids, ds.targets):
            if any(is_k_component(c) and not float(v) > 0 for c, v in zip(components, y)):
                # not percolating along that axis: k = 0 is no target for a log-scale search
                print(f"note: held-out sample {sid} skipped: {dict(zip(components, map(float, y)))}", file=sys.stderr)
                continue
            specs.append(",".join(f"{c}={float(v):.6g}" for c, v in zip(components, y)))
    if len(specs) < n:
        print(f"note: only {len(specs)} usable held-out samples (val + test) in {bundle.dataset}; using all of them",
              file=sys.stderr)
    return specs[:n]


def summarize(outcome, specs: list[str], components: list[str], methods: list[str], variant: str, n_calls: int,
              n_candidates: int) -> list[dict]:
    """One record per method: LBM hit rates, the calibration ratios and the time per target."""
    import numpy as np

    res, timing = outcome.results, outcome.timing
    tmap = {o.target.target_id: o.target for o in outcome.targets}
    # results.csv holds one row per candidate, in the order of the targets' candidates
    res["pred_hit"] = [o.target.hit({p: c.pred[p] for p in components}) for o in outcome.targets for c in o.candidates]
    res["phi_hit"] = (res["verified_porosity"] - [tmap[t].condition("porosity").value for t in res["target_id"]]
                      ).abs() <= 0.02 if "porosity" in components else False
    records = []
    for m in methods:
        r = res[res["method"] == m]
        by_t = r.groupby("target_id")
        n_t = len(specs)
        first = [g.sort_values("candidate").iloc[0] for _, g in by_t]
        t = timing[timing["method"] == m]
        rec = {"variant": variant, "method": m, "property_model": str(r["property_model"].iloc[0]) if len(r) else "",
               "targets": n_t, "n_calls": n_calls, "n_candidates": n_candidates,
               "hit_at_1": sum(bool(f["hit"]) for f in first) / n_t,
               "hit_at_n": sum(bool(g["hit"].any()) for _, g in by_t) / n_t,
               "predicted_hit_at_1": sum(bool(f["pred_hit"]) for f in first) / n_t,
               "porosity_hit_at_1": sum(bool(f["phi_hit"]) for f in first) / n_t,
               "search_s_per_target": float(t["search_s"].mean()),
               "candidate_s_per_target": float(t["candidate_s"].mean()),
               "verify_s_per_target": float(t["verify_s"].mean()),
               "s_per_target": float(t["total_s"].mean())}
        for c in components:
            if is_k_component(c) and f"verified_{c}" in r:
                ver = r[f"verified_{c}"].astype(float)
                # calibration: verified / predicted by the estimate the search used, and by the regressor on z
                rec[f"median_ratio_{c}"] = float(np.median(ver / r[f"pred_{c}"])) if len(r) else float("nan")
                rec[f"median_ratio_regz_{c}"] = float(np.median(ver / r[f"regz_{c}"])) if len(r) else float("nan")
                rec[f"median_abs_rel_err_{c}"] = float(r[f"err_{c}"].abs().median())
        records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset folder the model was trained on")
    p.add_argument("--model", help="checkpoint folder or MLflow URI (default: train one with --train-config)")
    p.add_argument("--train-config", default="configs/pvae_demo.yaml", help="models YAML used when --model is absent")
    p.add_argument("--n-targets", type=int, default=20)
    p.add_argument("--components", default="porosity,k_xx", help="targeted properties (comma-separated)")
    p.add_argument("--methods", default="bo,random,gradient")
    p.add_argument("--n-calls", type=int, default=60)
    p.add_argument("--n-candidates", type=int, default=3)
    p.add_argument("--solver-tol", type=float, default=1e-5, help="LBM convergence tolerance (match the labels)")
    p.add_argument("--property-models", default="regressor,reencode",
                   help="comma-separated variants: regressor | reencode | surrogate, each optionally '+screen' "
                        "(surrogate screening of the candidates; 'surrogate' always screens); one design run each")
    p.add_argument("--surrogate", help="surrogate checkpoint folder (for 'surrogate' and '+screen' variants)")
    p.add_argument("--screen-top", type=int, default=12, help="latents screened by the surrogate per target and method")
    p.add_argument("--bo-engine", default="composite", choices=["composite", "gp_minimize"],
                   help="bo's engine: one GP per targeted property (composite) or skopt.gp_minimize on the objective")
    p.add_argument("--manifold-weight", type=float, default=None,
                   help="manifold penalty weight of the objectives (default: 0 for solver, 1 for the others)")
    p.add_argument("--search-tol", type=float, default=1e-3, help="LBM tolerance inside the 'solver' objective")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_inverse")
    p.add_argument("--json", action="store_true", help="print one JSON record per method")
    args = p.parse_args(argv)

    from inverse.config import DesignConfig
    from inverse.design import design
    from inverse.model_source import load_bundle

    out = Path(args.out)
    model = args.model
    if not model:
        from models.config import load_config
        from models.train import Trainer
        t0 = time.perf_counter()
        Trainer(load_config(args.train_config), args.dataset).fit(out / "model", log=None)
        model = str(out / "model" / "best")
        print(f"trained {model} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    bundle = load_bundle(model, args.dataset)
    components = [c.strip() for c in args.components.split(",") if c.strip()]
    specs = held_out_targets(bundle, args.n_targets, components)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    records = []
    for variant in [v.strip() for v in args.property_models.split(",") if v.strip()]:
        pm, _, screen = variant.partition("+")
        use_sur = pm == "surrogate" or screen == "screen"
        if use_sur and not args.surrogate:
            raise SystemExit(f"variant {variant!r} needs --surrogate PATH")
        cfg = DesignConfig(model=model, dataset=args.dataset, targets=specs, methods=methods, n_calls=args.n_calls,
                           n_candidates=args.n_candidates, solver={"tol": args.solver_tol}, seed=args.seed,
                           out=str(out / "design" / variant.replace("+", "_")), mlflow=False, figures=False,
                           allow_extrapolation=True, property_model=pm,
                           surrogate=args.surrogate if use_sur else None, screen_top=args.screen_top,
                           manifold_weight=args.manifold_weight, search_solver={"tol": args.search_tol},
                           bo_engine=args.bo_engine)
        t0 = time.perf_counter()
        outcome = design(cfg, bundle=bundle, log=lambda *a: None)
        wall = time.perf_counter() - t0
        print(f"{variant}: wall {wall:.0f} s", file=sys.stderr)
        recs = summarize(outcome, specs, components, methods, variant, args.n_calls, args.n_candidates)
        for rec in recs:
            if rec["method"] == "bo":
                rec["method"] = "bo" if args.bo_engine == "composite" else f"bo/{args.bo_engine}"
        records += recs
    kc = next((c for c in components if is_k_component(c)), None)
    print(f"inverse design bench: {len(specs)} held-out targets ({','.join(components)}), budget {args.n_calls} "
          f"objective evaluations, {args.n_candidates} candidates verified by LBM per target and method")
    print(f"{'variant':18s} {'method':14s} {'objective':10s} {'hit@1':>6s} {'hit@N':>6s} {'pred@1':>6s} {'phi@1':>6s} "
          f"{'ver/pred':>8s} {'ver/regz':>8s} {'s/target':>9s}")
    for rec in records:
        print(f"{rec['variant']:18s} {rec['method']:14s} {rec['property_model']:10s} {rec['hit_at_1']:6.0%} "
              f"{rec['hit_at_n']:6.0%} {rec['predicted_hit_at_1']:6.0%} {rec['porosity_hit_at_1']:6.0%} "
              f"{rec.get(f'median_ratio_{kc}', float('nan')):8.2f} {rec.get(f'median_ratio_regz_{kc}', float('nan')):8.2f} "
              f"{rec['s_per_target']:9.1f}")
    if args.json:
        print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
