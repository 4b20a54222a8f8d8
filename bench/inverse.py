"""Benchmark of inverse design, judged on a development and a separate evaluation target set.

Target sets (kept apart; ``inverse/evaluation.py`` states the rules):

    dev   the model's own held-out samples (val + test split of its dataset): what was looked at
          while developing; its ``in`` targets are the first held-out samples in test-then-val order
          (the 20 targets of the earlier bench/RESULTS.md rows), its other kinds the next ones
    eval  samples of a dataset built with another seed (``--eval-dataset``, configs/data_eval32.yaml),
          never trained on and never looked at while developing; drawn in a seeded random order

Target kinds: ``in`` (a sample's porosity + k_xx), ``ood`` (a sample's porosity, k_xx = 1.5-2x the
largest training k_xx within +-0.025 porosity), ``multi`` (porosity + k_xx, k_yy, k_zz).

Methods, each with the same solver budget per target: ``bo`` and ``random`` evaluate ``--n-calls``
latents with the solver in the loop (the LBM on each delivered structure along the targeted axes,
tol ``--search-tol``); ``gradient`` descends the regressor (``--gradient-steps`` Adam steps from each
start, no solver) and ``--n-calls`` points of its trajectories are judged by the same solver
objective; ``lookup`` delivers the training structures with the closest labels (no search). Then
each verifies its ``--n-candidates`` best distinct candidates with the solver at the labels'
tolerance (``--solver-tol``). Solver calls counted per method = structures solved in the search +
texture variants of its best latent (``--noise-variants``, DesignConfig.noise_variants) +
verifications (lookup: verifications only).

A hit needs a converged verification and every condition within the rung's tolerances: the ladder
is porosity 0.01 / 0.02 (absolute) x k 5% / 10% / 15% (relative, each component). Porosity holds
by construction for bo / random / gradient (their candidates are thresholded at the target
porosity); lookup's training structures have their own porosity. Rates: per target, the fraction
of ``--seeds`` that hit (seeds averaged per target), then the mean over targets with a 95%
percentile bootstrap interval over targets (2000 resamples). hit@1: the method's best candidate;
hit@N: any of its N verified candidates. Diversity: up to 5 distinct hits per target (pairwise
minority-phase IoU <= 0.5, greedy in rank order) at porosity 0.02 / k 10%. Solver calls per hit: a target's solver
calls / its hits at that rung (infinite without a hit), median over targets and seeds.

Run (the full evaluation; without --model, a model is first trained with --train-config):

    python -m data_pipeline build --config configs/data_eval32.yaml
    python bench/inverse.py --dataset runs/bench32/data --model runs/bench32/pvae_full/best \
        --eval-dataset runs/eval32/data --dev-targets in:20,ood:10,multi:10 \
        --eval-targets in:25,ood:15,multi:15 --seeds 0,1,2 --json --out runs/bench_inverse_eval

Seeds run as separate jobs (one per node, or one after another so that a stopped run keeps the seeds
it finished) are merged afterwards, nothing solved again; the runs must agree on every option but
``--seeds`` and ``--out``, and on their targets:

    python bench/inverse.py --combine runs/inv_s0,runs/inv_s1,runs/inv_s2 --out runs/inv_all

Outputs under ``--out``: ``records.csv`` (one row per target, method and seed), ``summary.csv``,
``compare.csv`` (paired bo - random and bo - lookup differences), ``targets_<set>.csv``,
``results.md`` (a snippet for bench/RESULTS.md with the command), and the design runs
(``design/<set>/seed<s>/results.csv`` with the morphology columns of every verified candidate).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is bench/inverse.py: with bench/ on sys.path (the script's folder) `import inverse` would
# import it instead of the inverse package, so the repository root goes first and bench/ goes
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_counts(text: str) -> dict[str, int]:
    """``"in:20,ood:10,multi:10"`` -> ``{"in": 20, "ood": 10, "multi": 10}``."""
    out = {}
    for item in text.split(","):
        if item.strip():
            kind, _, n = item.partition(":")
            out[kind.strip()] = int(n)
    return out


def held_out_labels(bundle):
    """The model's val + test samples (test first, in split order) with their labels, lattice units."""
    import pandas as pd

    from data_pipeline.dataset import VoxelDataset

    cfg = bundle.cfg
    props = [p for p in ("porosity", "k_xx", "k_yy", "k_zz") if p in cfg.properties]
    frames = []
    for split in ("test", "val"):
        ds = VoxelDataset(bundle.dataset, split, properties=props, fractions=tuple(cfg.split_fractions),
                          split_seed=cfg.split_seed)
        frames.append(pd.DataFrame(ds.targets, columns=props).assign(sample_id=list(ds.ids), split=split))
    return pd.concat(frames, ignore_index=True)


def eval_labels(dataset: str):
    """Labeled samples of the evaluation dataset (properties.csv)."""
    from data_pipeline.io import read_properties

    df = read_properties(dataset)
    if df.empty:
        raise SystemExit(f"{dataset}: no labeled samples (build it: python -m data_pipeline build "
                         "--config configs/data_eval32.yaml)")
    return df


def train_labels(bundle):
    import pandas as pd

    return pd.DataFrame(bundle.y_train, columns=bundle.properties)


def check_apart(bundle, eval_dataset: str) -> None:
    """The evaluation set must be another dataset than the model's, built with another seed."""
    from data_pipeline.io import read_dataset_meta

    if Path(eval_dataset).resolve() == Path(bundle.dataset).resolve():
        raise SystemExit(f"--eval-dataset {eval_dataset} is the model's own dataset: build the evaluation set "
                         "with another seed (configs/data_eval32.yaml)")
    seed_m = (bundle.meta.get("source") or {}).get("seed")
    seed_e = (read_dataset_meta(eval_dataset).get("source") or {}).get("seed")
    if seed_m is not None and seed_m == seed_e:
        raise SystemExit(f"--eval-dataset {eval_dataset} was built with the model dataset's seed {seed_m}: its "
                         "samples would repeat the training samples")


def warm_up(bundle, args) -> float:
    """Compile the solver's kernels before anything is timed (else the first method of the first run
    pays it): one training volume solved as the search does and as the verification does; seconds."""
    from data_pipeline.io import read_volume, volume_path
    from data_pipeline.permeability import permeability_batch

    t0 = time.perf_counter()
    im = read_volume(volume_path(bundle.dataset, str(bundle.ids_train[0]))).astype(bool)
    permeability_batch([im], tol=args.search_tol, axes=[0])
    permeability_batch([im], tol=args.solver_tol)
    return time.perf_counter() - t0


def run_set(args, bundle, model: str, set_name: str, targets, seeds: list[int], out: Path, log):
    """Design every target of one set with every method, once per seed; per-target records."""
    import pandas as pd

    from inverse.config import DesignConfig
    from inverse.design import design
    from inverse.evaluation import MAIN_RUNG, target_records

    csv = out / f"targets_{set_name}.csv"
    targets[["target_id", "spec"]].to_csv(csv, index=False)
    recs, walls = [], {}
    for s in seeds:
        cfg = DesignConfig(model=model, dataset=str(bundle.dataset), targets_csv=str(csv), methods=args.methods,
                           n_calls=args.n_calls, n_initial=args.n_initial, n_candidates=args.n_candidates,
                           solver={"tol": args.solver_tol}, search_solver={"tol": args.search_tol}, seed=s,
                           out=str(out / "design" / set_name / f"seed{s}"), mlflow=False, figures=False,
                           allow_extrapolation=True, property_model=args.property_model,
                           surrogate=args.surrogate, screen_top=args.screen_top if args.surrogate else 0,
                           manifold_weight=args.manifold_weight, bo_engine=args.bo_engine,
                           gradient_steps=args.gradient_steps, tol_porosity=MAIN_RUNG[0], tol_k=MAIN_RUNG[1],
                           noise_variants=args.noise_variants, texture=args.texture, porosity_shift=args.porosity_shift,
                           variant_screen=args.variant_screen,
                           bo_diversity=args.bo_diversity, material_band=args.material_band, reference_dataset=args.eval_dataset if set_name == "eval" else None)
        t0 = time.perf_counter()
        outcome = design(cfg, bundle=bundle, log=lambda *a: None)
        walls[s] = time.perf_counter() - t0
        log(f"{set_name} seed {s}: {len(targets)} targets in {walls[s]:.0f} s")
        recs.append(target_records(outcome, targets, s, set_name))
    return pd.concat(recs, ignore_index=True), walls


def _pct(x: float) -> str:
    return "  -  " if x != x else f"{100 * x:3.0f}%"


def _ci(row, col: str) -> str:
    return f"{_pct(row[col])} [{_pct(row[col + '_lo']).strip()}, {_pct(row[col + '_hi']).strip()}]"


def table_lines(summary, n_candidates: int, markdown: bool = False) -> list[str]:
    """The summary as text (or markdown) rows: hit rates with intervals at the main rung and the ladder."""
    from inverse.evaluation import MAIN_RUNG, rung_name

    main = rung_name(*MAIN_RUNG)
    head = ["set", "kind", "method", "targets", f"hit@{n_candidates} p0.02/k10%", "hit@1 p0.02/k10%",
            "hit@N k5%", "hit@N k15%", "hit@N p0.01/k10%", ">=3 distinct", "calls/hit (median)",
            "solver calls/target", "s/target"]
    rows = []
    for _, r in summary.iterrows():
        rows.append([r["set"], r["kind"], r["method"], str(int(r["targets"])), _ci(r, f"hitN_{main}"),
                     _ci(r, f"hit1_{main}"), _pct(r["hitN_p0.02_k5"]).strip(), _pct(r["hitN_p0.02_k15"]).strip(),
                     _pct(r["hitN_p0.01_k10"]).strip(), _ci(r, "ge3_distinct"),
                     "inf" if r["median_calls_per_hit"] == float("inf") else f"{r['median_calls_per_hit']:.0f}",
                     f"{r.get('solver_calls_per_target', float('nan')):.0f}",
                     f"{r.get('wall_s_per_target', float('nan')):.1f}"])
        if "ge3_distinct_shift" in summary:
            rows[-1].append(_ci(r, "ge3_distinct_shift"))
        if "hits_like_ref_share" in summary:
            rows[-1].append(_pct(r["hits_like_ref_share"]).strip())
    if "ge3_distinct_shift" in summary:
        head.append(">=3 distinct, translations not")
    if "hits_like_ref_share" in summary:
        head.append("hits like their sample")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return [fmt(head)] + [fmt(row) for row in rows]


def rules_text(args, summary) -> list[str]:
    by_m = summary[summary["kind"] == "all"].groupby("method")["max_abs_dphi"].max() if not summary.empty else {}
    thr = [m for m in args.methods if m != "lookup"]
    lines = [
        f"Budget per target and method: {args.n_calls} solver-judged search evaluations (tol {args.search_tol:g}) + "
        f"at most {args.noise_variants} variants of the best latent + "
        f"{args.n_candidates} verifications (tol {args.solver_tol:g}); lookup: the {args.n_candidates} verifications only.",
        "A hit needs a converged verification (no solver error) and every condition within the rung's tolerances.",
        f"Porosity holds by construction for {', '.join(thr)}: their candidates are thresholded at the target porosity, "
        f"a variant at most {args.porosity_shift:g} x the porosity tolerance away when that brings its k to the target "
        "(max |d phi| measured: " + ", ".join(f"{m} {by_m[m]:.4f}" for m in thr if m in by_m) + "); "
        + (f"lookup delivers training structures as they are (max |d phi| {by_m['lookup']:.4f})."
           if "lookup" in by_m else ""),
        f"Rates: seeds {','.join(map(str, args.seeds))} averaged per target, mean over targets, 95% percentile "
        "bootstrap interval over targets (2000 resamples).",
        "Distinct hits: pairwise minority-phase IoU <= 0.5 (inverse.evaluation.phase_iou), up to 5 per target, at "
        "porosity 0.02 / k 10%; 'translations not': each pair compared at its best periodic translation "
        "(inverse.evaluation.shift_iou), so that a translated copy does not count.",
        "Solver calls per hit: a target's solver calls (search + texture variants + verification) / its hits at "
        "porosity 0.02 / k 10%, "
        "median over target x seed rows; inf (JSON null) when more than half of the rows have no hit. "
        "One solver call = one structure solved (along every targeted axis: 3 for multi targets).",
        "OOD targets: k_xx = 1.5-2x the largest training k_xx within +-0.025 porosity (no training sample can hit "
        "them at k <= 15%: lookup misses them by construction).",
    ]
    return lines


def compare_lines(cmp) -> list[str]:
    return [f"{r['set']:5s} {r['kind']:6s} {r['a']} - {r['b']}: {100 * r['diff']:+.0f} points "
            f"[{100 * r['lo']:+.0f}, {100 * r['hi']:+.0f}] over {int(r['targets'])} targets" for _, r in cmp.iterrows()]


def make_parser() -> argparse.ArgumentParser:
    from inverse.config import DesignConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="dataset folder the model was trained on (required unless --combine)")
    p.add_argument("--model", help="checkpoint folder or MLflow URI (default: train one with --train-config)")
    p.add_argument("--train-config", default="configs/pvae_demo.yaml", help="models YAML used when --model is absent")
    p.add_argument("--eval-dataset", help="evaluation dataset (another seed; configs/data_eval32.yaml)")
    p.add_argument("--sets", default=None, help="dev,eval (default: dev, plus eval when --eval-dataset is given)")
    p.add_argument("--dev-targets", default=None, help="targets per kind of the dev set, e.g. in:20,ood:10,multi:10")
    p.add_argument("--eval-targets", default="in:25,ood:15,multi:15", help="targets per kind of the eval set")
    p.add_argument("--n-targets", type=int, default=20, help="dev in-distribution targets when --dev-targets is absent")
    p.add_argument("--methods", default="bo,random,lookup,gradient")
    p.add_argument("--n-calls", type=int, default=60, help="solver-judged search evaluations per target and method")
    p.add_argument("--n-initial", type=int, default=12)
    p.add_argument("--n-candidates", type=int, default=8, help="verified candidates per target and method")
    p.add_argument("--gradient-steps", type=int, default=100, help="Adam steps per start of the gradient method")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--solver-tol", type=float, default=1e-5, help="LBM tolerance of the verification (the labels')")
    p.add_argument("--search-tol", type=float, default=1e-3, help="LBM tolerance inside the solver objective")
    p.add_argument("--property-model", default="solver", choices=["solver", "surrogate", "reencode", "regressor"],
                   help="the property estimate of the search objective (solver: the LBM in the loop)")
    p.add_argument("--surrogate", help="surrogate checkpoint (property model 'surrogate'; also screens candidates)")
    p.add_argument("--screen-top", type=int, default=12)
    p.add_argument("--bo-engine", default="composite", choices=["composite", "gp_minimize"])
    p.add_argument("--manifold-weight", type=float, default=None,
                   help="manifold penalty weight (default: 0 for the solver objective, 1 for model-based ones)")
    p.add_argument("--target-seed", type=int, default=0, help="seed of the eval sample order and the ood factors")
    p.add_argument("--ood-min-bin", type=int, default=5,
                   help="fewest training samples within +-0.025 porosity for an ood target there")
    p.add_argument("--match-reference", action="store_true",
                   help="in/multi targets name their sample (ref=<id>, read from the eval dataset for the eval "
                        "set): designs are held to its specific surface (DesignConfig.match_reference) and judged "
                        "against it (looks_like_ref)")
    p.add_argument("--texture", choices=("prior", "variants", "diffusion"), default=DesignConfig.texture,
                   help="texture variants from the Gaussian prior field (prior), from the model's texture bank "
                        "(variants) or from its learned texture prior (diffusion); DesignConfig.texture")
    p.add_argument("--noise-variants", type=int, default=DesignConfig.noise_variants,
                   help="the most solver calls on variants of each search's best latent, judged before the candidates "
                        "are chosen (DesignConfig.noise_variants; 0 = the search's latents alone)")
    p.add_argument("--variant-screen", type=int, default=DesignConfig.variant_screen,
                   help="with --surrogate and --screen-top 0: this many variants of the best latent labeled by the "
                        "surrogate, solved best estimate first (DesignConfig.variant_screen; 0 = seed order)")
    p.add_argument("--porosity-shift", type=float, default=DesignConfig.porosity_shift,
                   help="a variant that misses k may be re-binarized this fraction of the porosity tolerance away "
                        "(DesignConfig.porosity_shift; 0 = off)")
    p.add_argument("--bo-diversity", action="store_true",
                   help="after its first hit bo looks for distinct further hits instead of refining it "
                        "(DesignConfig.bo_diversity; off by default, bench/RESULTS.md session 14)")
    p.add_argument("--material-band", default=DesignConfig.material_band, choices=["optimize", "all"],
                   help="all: targets without a reference sample (ood) are held to the material's morphology "
                        "band too (DesignConfig.material_band)")
    p.add_argument("--out", default="runs/bench_inverse")
    p.add_argument("--json", action="store_true", help="print the summary records as JSON")
    p.add_argument("--combine", help="comma-separated --out folders of finished runs (e.g. one per seed) to merge "
                                     "into --out; nothing is solved")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = make_parser().parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def source_command(folder: Path) -> list[str]:
    """The argument list of the run that wrote ``folder`` (the first line of its results.md)."""
    path = folder / "results.md"
    if not (path.is_file() and (folder / "records.csv").is_file()):
        raise SystemExit(f"{folder}: no results.md and records.csv (written when a bench/inverse.py run finishes)")
    words = shlex.split(path.read_text().splitlines()[0])
    if words[:2] != ["python", "bench/inverse.py"]:
        raise SystemExit(f"{path}: its first line is not the bench/inverse.py command that wrote it")
    return words[2:]


def combine(folders: list[Path], out: Path) -> tuple:
    """Merge finished runs -> (args of the merged run, records, notes, walls). The runs must agree on
    every option but --seeds, --methods, --out and --json, on their targets (targets_<set>.csv), and
    no (set, target, method, seed) may appear twice: runs of other seeds, or of other methods on the
    same targets (a baseline added later), merge; a seed's wall time is the sum over its runs."""
    import numpy as np
    import pandas as pd

    commands = [(f, source_command(f)) for f in folders]  # a folder named twice stays twice: refused below
    runs = [(f, parse_args(words)) for f, words in commands]
    ignore = {"seeds", "methods", "out", "json", "combine"}
    first_folder, first = runs[0]
    for f, a in runs[1:]:
        for k, v in vars(first).items():
            if k not in ignore and getattr(a, k) != v:
                raise SystemExit(f"{f} ran with --{k.replace('_', '-')} {getattr(a, k)!r}, {first_folder} with "
                                 f"{v!r}: only runs of the same settings (other seeds) can be combined")
        for t in sorted(first_folder.glob("targets_*.csv")):
            if not (f / t.name).is_file() or not pd.read_csv(f / t.name).equals(pd.read_csv(t)):
                raise SystemExit(f"{f / t.name} differs from {t}: the runs designed other targets")
    records = pd.concat([pd.read_csv(f / "records.csv").assign(source=str(f)) for f in folders], ignore_index=True)
    key = ["set", "target_id", "method", "seed"]
    dup = records[records.duplicated(key, keep=False)]
    if not dup.empty:
        r = dup.iloc[0]
        raise SystemExit(f"{r['set']} {r['target_id']} {r['method']} seed {r['seed']} is in more than one of "
                         f"{sorted(set(dup['source']))}: combine runs of different seeds or methods")
    rank = [records[c].map({v: i for i, v in enumerate(dict.fromkeys(records[c]))}) for c in ("set", "kind")]
    records = records.iloc[np.lexsort((rank[1], rank[0]))].reset_index(drop=True)  # stable: a later run's methods join their kind's rows
    for t in first_folder.glob("targets_*.csv"):
        (out / t.name).write_bytes(t.read_bytes())
    args = first
    args.seeds = sorted(int(s) for s in records["seed"].unique())
    args.methods = list(dict.fromkeys(m for _, a in runs for m in a.methods))
    notes = ["merged runs: " + "; ".join(f"{f} (python bench/inverse.py {shlex.join(w)})" for f, w in commands)]
    walls = {}
    for f, _ in runs:
        md = (f / "results.md").read_text().splitlines()
        notes += [ln[2:] for ln in md if ln.startswith("- ") and ln[2:].split(":")[0] in ("eval", "dev")]
        for line in md:
            if line.startswith("- wall per design run: "):  # "eval/seed0 1234 s, ..."
                for item in line.split(": ", 1)[1].split(", "):
                    name, seconds, _ = item.rsplit(" ", 2)
                    walls[name] = walls.get(name, 0.0) + float(seconds)
    log(f"combined {len(folders)} runs: {len(records)} records, seeds {args.seeds}")
    return args, records.drop(columns="source"), list(dict.fromkeys(notes)), walls


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        as_json = args.json
        args, records, notes, walls = combine([Path(f.strip()) for f in args.combine.split(",") if f.strip()], out)
        args.json = as_json
        return report(args, records, notes, walls, out, argv)
    if not args.dataset:
        raise SystemExit("--dataset is required (the dataset folder the model was trained on), unless --combine")
    sets = [s.strip() for s in (args.sets or ("dev,eval" if args.eval_dataset else "dev")).split(",") if s.strip()]
    if "eval" in sets and not args.eval_dataset:
        raise SystemExit("the eval set needs --eval-dataset (python -m data_pipeline build --config "
                         "configs/data_eval32.yaml)")

    import pandas as pd

    from inverse.evaluation import make_targets
    from inverse.model_source import load_bundle

    model = args.model
    if not model:
        from models.config import load_config
        from models.train import Trainer
        t0 = time.perf_counter()
        Trainer(load_config(args.train_config), args.dataset).fit(out / "model", log=None)
        model = str(out / "model" / "best")
        log(f"trained {model} in {time.perf_counter() - t0:.0f} s")
    bundle = load_bundle(model, args.dataset)
    log(f"solver warm-up (compilation, not timed): {warm_up(bundle, args):.1f} s")
    train = train_labels(bundle)
    records, walls, notes = [], {}, []
    for set_name in sets:
        if set_name == "dev":
            labels = held_out_labels(bundle)
            counts = parse_counts(args.dev_targets) if args.dev_targets else {"in": args.n_targets}
            targets, n = make_targets(labels, train, counts, seed=args.target_seed, prefix="dev_", shuffle=False,
                                      min_bin=args.ood_min_bin, properties=bundle.properties)
        elif set_name == "eval":
            labels = eval_labels(args.eval_dataset)
            check_apart(bundle, args.eval_dataset)
            targets, n = make_targets(labels, train, parse_counts(args.eval_targets), seed=args.target_seed,
                                      prefix="eval_", min_bin=args.ood_min_bin, properties=bundle.properties)
        else:
            raise SystemExit(f"unknown set {set_name!r}: dev or eval")
        if args.match_reference:  # in / multi targets: look like their own sample (of their own dataset)
            own = targets["kind"].isin(["in", "multi"])
            targets.loc[own, "spec"] = targets.loc[own, "spec"] + ",ref=" + targets.loc[own, "sample_id"]
        notes += [f"{set_name}: {x}" for x in n]
        targets.to_csv(out / f"targets_{set_name}_kinds.csv", index=False)
        log(f"{set_name}: {len(targets)} targets ({targets['kind'].value_counts().to_dict()})")
        rec, w = run_set(args, bundle, model, set_name, targets, args.seeds, out, log)
        records.append(rec)
        walls.update({f"{set_name}/seed{s}": v for s, v in w.items()})
    return report(args, pd.concat(records, ignore_index=True), notes, walls, out, argv, model=model, sets=sets)


def report(args, records, notes: list[str], walls: dict, out: Path, argv, model: str | None = None,
           sets: list[str] | None = None) -> int:
    """Write records.csv, summary.csv, compare.csv and results.md under ``out`` and print the table."""
    import pandas as pd

    from inverse.evaluation import aggregate, compare

    model = model or args.model
    sets = sets or list(dict.fromkeys(records["set"]))
    records.to_csv(out / "records.csv", index=False)
    summary = aggregate(records)
    summary.to_csv(out / "summary.csv", index=False)
    cmp = pd.concat([compare(records, "bo", b) for b in ("random", "lookup", "gradient") if b in args.methods
                     and "bo" in args.methods] or [pd.DataFrame()], ignore_index=True)
    cmp.to_csv(out / "compare.csv", index=False)

    command = "python bench/inverse.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rules = rules_text(args, summary)
    print(f"inverse design bench: sets {', '.join(sets)}; methods {', '.join(args.methods)}; seeds "
          f"{','.join(map(str, args.seeds))}; model {model}")
    for line in rules + notes:
        print("  " + line)
    for line in table_lines(summary, args.n_candidates):
        print(line)
    for line in compare_lines(cmp):
        print(line)
    print("wall per design run: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items()))
    md = [f"    {command}", "", *table_lines(summary, args.n_candidates, markdown=True), "",
          *[f"- {line}" for line in rules + notes], *[f"- paired: {line.strip()}" for line in compare_lines(cmp)],
          "- wall per design run: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print(f"records: {out / 'records.csv'}; summary: {out / 'summary.csv'}; RESULTS snippet: {out / 'results.md'}")
    if args.json:
        print(json.dumps({"command": command, "rules": rules, "notes": notes,
                          "summary": json.loads(summary.to_json(orient="records")),
                          "compare": json.loads(cmp.to_json(orient="records")), "wall_s": walls}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
