"""Outputs of an inverse-design run: CSV tables, candidate .tif files, PNG figures, an MLflow run.

Folder layout (``cfg.out``)::

    config.json                       the DesignConfig of the run
    results.csv                       one row per verified candidate (no wall times: identical for
                                      the same seed); first columns target_id, method, candidate,
                                      pred_porosity, verified_porosity, hit, then pred_* / verified_*
    targets.csv                       one row per target and method: status (ok | extrapolation),
                                      notes, nearest achievable values, best objective, hit_any
    timing.csv                        search / verification seconds per target and method
    candidates/<target>/<method>_<rank>.tif   uint8, 1 = pore
    figures/convergence_<target>.png, slices_<target>.png, pred_vs_verified.png
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from data_pipeline.io import atomic_path, write_volume



def write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.8g")


def candidate_path(target_id: str, method: str, rank: int) -> str:
    return f"candidates/{target_id}/{method}_{rank}.tif"


def plot_convergence(outcome_t, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m, res in outcome_t.searches.items():
        ax.plot(np.arange(1, res.n_evals + 1), res.best_so_far(), label=f"{m} ({res.time_s:.1f} s)")
    ax.set_xlabel("objective evaluations")
    optimizes = getattr(outcome_t.target, "optimizes", False)
    ax.set_ylabel("best objective so far\n(lower is better" + ("; maximize: minus the\nstandardized property, "
                  "+ penalties)" if optimizes else ")"), fontsize=8)
    f_all = np.concatenate([r.f for r in outcome_t.searches.values()])
    if np.all(f_all > 0):
        ax.set_yscale("log")
    ax.set_title(f"{outcome_t.target.target_id}: {outcome_t.target.describe()}", fontsize=9)
    if not optimizes:  # the tolerance edge exists only for targets with values to meet
        ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="1 = at the tolerance edge (below: predicted hit)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _views(im: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The image itself (2D) or the three mid-slices of a (Z, Y, X) volume, with their names."""
    if im.ndim == 2:
        return [("image", im)]
    z, y, x = (n // 2 for n in im.shape)
    return [("XY (z mid)", im[z]), ("XZ (y mid)", im[:, y]), ("YZ (x mid)", im[:, :, x])]


def plot_slices(outcome_t, path: Path, max_candidates: int = 6) -> None:
    """The target's reference sample (when named) above its designs, each as three mid-slices
    (3D) or the image (2D), framed, white = pore; titles give porosity, specific surface relative to
    the reference and the hit."""
    import matplotlib.pyplot as plt

    items = []
    ref = getattr(outcome_t, "reference", None)
    if ref is not None:
        what = "training sample of the bar" if getattr(outcome_t.target, "optimizes", False) else "target sample"
        items.append((f"{what} {outcome_t.target.reference}", ref))
    for c in outcome_t.candidates[:max_candidates]:
        hit = c.hit
        mark = "" if not isinstance(hit, (bool, np.bool_)) else (" HIT" if hit else " miss")
        ss = c.morphology.get("ss_ratio_ref", c.morphology.get("ss_ratio_train"))
        ss_txt = "" if ss is None or not np.isfinite(ss) else f", surface {ss:.2f}x"
        phi = c.verification.values["porosity"] if c.verification is not None else c.binary_porosity
        items.append((f"{c.method} #{c.rank}: phi {phi:.2f}{ss_txt}{mark}", c.im))
    if not items:
        return
    n_views = len(_views(items[0][1]))
    cols = n_views if n_views > 1 else min(len(items), 4)
    rows = len(items) if n_views > 1 else math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_visible(False)
    for i, (title, im) in enumerate(items):
        for j, (view, sl) in enumerate(_views(np.asarray(im))):
            ax = axes[i, j] if n_views > 1 else axes.ravel()[i]
            ax.set_visible(True)
            ax.imshow(sl, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            for spine in ax.spines.values():  # a frame, so white-on-white designs keep their edge
                spine.set_visible(True)
                spine.set_color("tab:red" if i == 0 and ref is not None else "black")
            if j == 0:
                ax.set_title(title, fontsize=7, loc="left")
            if i == len(items) - 1 or n_views == 1:
                ax.set_xlabel(view if n_views > 1 else "", fontsize=7)
    what = "mid-slices" if n_views > 1 else "images"
    fig.suptitle(f"{outcome_t.target.target_id}: {outcome_t.target.describe()} - {what}, white = pore", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_pred_vs_verified(results: pd.DataFrame, properties: list[str], path: Path) -> bool:
    import matplotlib.pyplot as plt

    props = [p for p in properties if f"pred_{p}" in results and f"verified_{p}" in results]
    if results.empty or not props:
        return False
    fig, axes = plt.subplots(1, len(props), figsize=(3.4 * len(props), 3.3), squeeze=False)
    for ax, p in zip(axes[0], props):
        for m, g in results.groupby("method", sort=False):
            ax.scatter(g[f"pred_{p}"], g[f"verified_{p}"], s=14, label=m, alpha=0.8)
        vals = pd.concat([results[f"pred_{p}"], results[f"verified_{p}"]]).astype(float)
        vals = vals[np.isfinite(vals)]
        # log axes only over more than a decade: over a narrow range every minor tick gets a
        # label and they overlap (issue 16, item 6)
        if p != "porosity" and len(vals) and (vals > 0).all() and vals.max() > 10 * vals.min():
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
        if len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_xlabel(f"predicted {p}")
        ax.set_ylabel(f"verified {p} (LBM)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


def _param(v) -> str:
    if isinstance(v, (list, tuple)):
        v = ",".join(map(str, v))
    elif isinstance(v, dict):
        v = json.dumps(v, sort_keys=True)
    s = str(v)
    return s if len(s) <= 500 else s[:497] + "..."


def log_mlflow(outcome, bundle) -> str:
    """One MLflow run with the config as params, hit rates and times as metrics, outputs as artifacts."""
    import mlflow

    from core.tracking import get_or_create_experiment, resolve_tracking_uri

    cfg = outcome.cfg
    uri = resolve_tracking_uri(explicit=cfg.tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    # artifacts beside the SQLite file, never in ./mlruns of the cwd
    exp_id = get_or_create_experiment(uri, cfg.experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"design-{Path(cfg.out).name}") as run:
        params = {k: _param(v) for k, v in cfg.to_dict().items()}
        params["model_folder"] = _param(bundle.folder)
        params["n_targets"] = str(len(outcome.targets))
        mlflow.log_params(params)
        mlflow.set_tags({"stage": "inverse", "dataset": str(bundle.dataset)})
        s = outcome.summary
        if "method" in s.columns:
            for m, g in s.dropna(subset=["method"]).groupby("method", sort=False):
                metrics = {f"{m}_best_objective_mean": float(g["best_objective"].mean())}
                if cfg.verify:
                    metrics[f"{m}_hit_rate"] = float(g["hit_any"].astype(float).mean())
                t = outcome.timing[outcome.timing["method"] == m]
                if not t.empty:
                    metrics[f"{m}_seconds_per_target"] = float(t["total_s"].mean())
                mlflow.log_metrics(metrics)
        mlflow.log_metric("n_extrapolation", float((s["status"] == "extrapolation").sum()) if not s.empty else 0.0)
        for name in ("config.json", "results.csv", "targets.csv", "timing.csv"):
            if (outcome.out / name).is_file():
                mlflow.log_artifact(str(outcome.out / name))
        if (outcome.out / "figures").is_dir():
            mlflow.log_artifacts(str(outcome.out / "figures"), artifact_path="figures")
        if (outcome.out / "candidates").is_dir():
            mlflow.log_artifacts(str(outcome.out / "candidates"), artifact_path="candidates")
        return str(run.info.run_id)


def write_outputs(outcome, bundle, space, log=print) -> str | None:
    """Write tables, volumes and figures into ``outcome.out``; log the MLflow run (its id)."""
    cfg, out = outcome.cfg, outcome.out
    cfg.to_json(out / "config.json")
    results = outcome.results
    if not results.empty:
        results.insert(results.columns.get_loc("hit") + 1 if "hit" in results else len(results.columns), "tif",
                       [candidate_path(t, m, int(c)) for t, m, c in
                        zip(results["target_id"], results["method"], results["candidate"])])
    for o in outcome.targets:
        for c in o.candidates:
            write_volume(out / candidate_path(o.target.target_id, c.method, c.rank), c.im)
    write_csv(out / "results.csv", results)
    write_csv(out / "targets.csv", outcome.summary)
    write_csv(out / "timing.csv", outcome.timing)
    if cfg.figures:
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        for o in outcome.targets:
            if o.searches:
                plot_convergence(o, fig_dir / f"convergence_{o.target.target_id}.png")
            if o.candidates:
                plot_slices(o, fig_dir / f"slices_{o.target.target_id}.png")
        if cfg.verify:
            plot_pred_vs_verified(results, bundle.properties, fig_dir / "pred_vs_verified.png")
    run_id = None
    if cfg.mlflow:
        try:
            run_id = log_mlflow(outcome, bundle)
        except Exception as exc:  # tracking is a side channel: never lose the verified results over it
            log(f"warning: MLflow logging failed ({type(exc).__name__}: {exc}); results are in {out}")
    return run_id
