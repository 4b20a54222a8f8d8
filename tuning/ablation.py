"""Dataset-size ablation: dataset sizes x seeds, other hyperparameters fixed; the ``ablate`` verb.

    python -m tuning ablate --config configs/ablate_smoke.yaml

Runs one Ray Tune trial per (dataset_size, seed) (a grid, FIFO: every trial trains to the end, and is
evaluated on the fixed test split), then writes to the study folder and logs to its MLflow parent run:

    ablation.csv          one row per trial: dataset_size, seed, n_train, test metrics
    ablation_summary.csv  per size: mean, std and count over seeds of each test metric
    ablation.png          test reconstruction (BCE, nats/voxel; surrogate: MSE of the normalized targets)
                          and property R^2 against training-set size

It works for every model of tuning.config.MODELS (``model:`` of the config), as the studies do.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from tuning import tracking
from tuning.config import StudyConfig
from tuning.study import run_study, study_main, study_parser

#: Test metrics put in the table (when the evaluation produced them); R^2 of each property is added.
METRICS = ("test_recon_bce", "test_voxel_accuracy", "test_pore_iou", "test_s2_distance", "test_porosity_error",
           "test_r2_mean", "test_mse_norm")


def ablation_space(cfg: StudyConfig) -> dict:
    """param_space of an ablation: a grid over sizes and seeds; search_space entries must be fixed."""
    from ray import tune

    if not cfg.sizes:
        raise ValueError("ablation: set sizes (training-set sizes, e.g. [8, 16]) in the config")
    varying = [k for k, v in cfg.search_space.items() if isinstance(v, dict)]
    if varying:
        raise ValueError(f"ablation: search_space keys {varying} vary; an ablation holds the other hyperparameters "
                         "fixed: give them plain values (or move them under train:)")
    for key in ("dataset_size", "seed"):
        if key in cfg.search_space or key in cfg.train:
            raise ValueError(f"ablation: {key!r} is set by sizes/seeds; remove it from train/search_space")
    space = dict(cfg.search_space)
    # largest first: the longest trials start first, the short ones fill the slots they leave
    # (the demo's 3 sizes on 2 slots: 32 + 128 one after the other took 91 s; see bench/RESULTS.md)
    space["dataset_size"] = tune.grid_search(sorted({int(s) for s in cfg.sizes}, reverse=True))
    space["seed"] = tune.grid_search([int(s) for s in cfg.seeds])
    return space


def run_ablation(cfg: StudyConfig, tracking_uri: str | None = None) -> dict:
    """Run the ablation. Returns {"handle", "table", "summary" (DataFrames), "table_csv", "summary_csv",
    "figure" (paths)}."""
    cfg = replace(cfg, search="grid", scheduler="fifo")
    handle = run_study(cfg, tracking_uri=tracking_uri, param_space=ablation_space(cfg), kind="ablation",
                       num_samples=1, scheduler=False)
    table = ablation_table(handle.results)
    summary = summarize_table(table)
    out = Path(handle.experiment_path) if "://" not in handle.experiment_path else Path("runs") / cfg.name
    paths = write_outputs(table, summary, out, first=cfg.spec.ablation_metric)
    c = tracking.client(handle.tracking_uri)
    for p in paths.values():
        c.log_artifact(handle.parent_run_id, str(p), artifact_path="ablation")
    main = ["dataset_size", "n_train_mean"] + [f"{m}_{s}" for m in (cfg.spec.ablation_metric[0], "test_r2_mean")
                                               for s in ("mean", "std")] + ["n_seeds"]
    print(summary[[c for c in main if c in summary.columns]].to_string(index=False))
    print(f"\nablation table {paths['table_csv']}\nfigure {paths['figure']}")
    return {"handle": handle, "table": table, "summary": summary, **paths}


def ablation_table(results):
    """One row per trial: dataset_size (requested), seed, n_train (used), status and test metrics."""
    import pandas as pd

    rows = []
    for r in results:
        m = r.metrics or {}
        row = {"dataset_size": r.config.get("dataset_size"), "seed": r.config.get("seed"),
               "n_train": m.get("n_train"), "status": "ERROR" if r.error else "OK"}
        for k, v in m.items():
            if k in METRICS or (k.startswith("test_r2_") and k != "test_r2_mean"):
                row[k] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(["dataset_size", "seed"]).reset_index(drop=True)


def summarize_table(table):
    """Mean, std (ddof 1; NaN for one seed) and count over seeds per dataset size."""
    ok = table[table["status"] == "OK"]
    cols = [c for c in ok.columns if c.startswith("test_")] + ["n_train"]
    g = ok.groupby("dataset_size")[cols]
    summary = g.mean().add_suffix("_mean").join(g.std().add_suffix("_std")).join(g.size().rename("n_seeds"))
    return summary.reset_index()


def write_outputs(table, summary, out_dir: Path,
                  first: tuple = ("test_recon_bce", "test reconstruction BCE (nats/voxel)")) -> dict:
    """ablation.csv, ablation_summary.csv and ablation.png in ``out_dir`` (atomic writes); ``first``
    = (test metric, axis label) of the left panel (the model's ModelSpec.ablation_metric)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from data_pipeline.io import atomic_path

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"table_csv": out_dir / "ablation.csv", "summary_csv": out_dir / "ablation_summary.csv",
             "figure": out_dir / "ablation.png"}
    with atomic_path(paths["table_csv"]) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(paths["summary_csv"]) as tmp:
        summary.to_csv(tmp, index=False)

    ok = table[table["status"] == "OK"]
    r2_cols = [c for c in ok.columns if c.startswith("test_r2_") and c != "test_r2_mean"]
    panels = [(first[0], first[1], [first[0]]),
              ("test_r2_mean", "test property R$^2$ (porosity; log10 k)", ["test_r2_mean"] + r2_cols)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, (_, label, cols) in zip(axes, panels):
        for col in cols:
            if col not in ok.columns:
                continue
            x_all = ok["n_train"].astype(float)
            main = col in (first[0], "test_r2_mean")
            g = ok.groupby("n_train")[col]
            mean, std = g.mean(), g.std().fillna(0.0)
            ax.errorbar(mean.index.astype(float), mean.values, yerr=std.values, marker="o", capsize=3,
                        lw=2 if main else 1, alpha=1 if main else 0.6,
                        label=col.replace("test_r2_", "R$^2$ ").replace("test_", "") + (" (mean +- std over seeds)" if main else ""))
            if main:
                ax.scatter(x_all, ok[col], s=12, color="k", alpha=0.5, zorder=3, label="single seeds")
        ax.set_xscale("log")
        sizes = sorted(ok["n_train"].dropna().astype(float).unique())
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("training samples used")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    n_seeds = int(ok.groupby("dataset_size").size().max()) if len(ok) else 0
    fig.suptitle(f"dataset-size ablation ({n_seeds} seed(s) per size; fixed val/test splits)")
    with atomic_path(paths["figure"]) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return paths


def build_parser() -> argparse.ArgumentParser:
    return study_parser("ablate", (
        "Dataset-size ablation: one trial per (size, seed) with the other hyperparameters fixed; writes a table "
        "and a PNG of test metrics against dataset size, and logs them to MLflow."),
        "ablation YAML (a study config with sizes: and seeds:)")


def main(argv: list[str] | None = None) -> int:
    def run(cfg: StudyConfig, args) -> int:
        result = run_ablation(cfg, tracking_uri=args.tracking_uri)
        return 0 if (result["table"]["status"] == "OK").all() else 1
    return study_main(build_parser(), argv, run)
