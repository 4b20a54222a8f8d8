"""Evaluation and figures of the permeability surrogate.

Units: porosity as a fraction; diagonal permeabilities are scored in log10 of lattice units
(log10 voxel^2, the space the model learns), off-diagonals linearly in lattice units (voxel^2).
Relative errors of k are |k_pred - k_true| / k_true in lattice units (physical units cancel).
"""
from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models import plots  # noqa: E402
from core.io import atomic_path, write_json  # noqa: E402
from core.properties import is_k_component  # noqa: E402
from models.evaluate import r2_score  # noqa: E402

# ================================================================================================
# evaluation
# ================================================================================================
def score(true_log: np.ndarray, pred_log: np.ndarray, names: list[str], norm, k_floor: float) -> dict:
    """Metrics of predictions against labels, both (N, P) in log space (log10 k on the diagonal).

    Returns r2_<c>, mae_<c>, rmse_<c> per component (log10 k for diagonal k, over the samples that
    percolate along that axis; n_nonpercolating_<k_ii> counts the others), r2_mean (over all
    components), r2_log_k_diag (mean over the diagonal k), medrel_<k_ii> (median relative error
    of k in lattice units over samples with k_true > k_floor), medrel_k (pooled over the diagonal),
    medrel_offdiag (median |k_ij error| / mean diagonal k, pooled), and the normalized MSE of the
    model against predicting the training mean (mse_norm, mse_norm_mean_baseline; both over the
    known values, k_ii = 0 left out).
    """
    m: dict = {}
    r2 = {}
    for j, name in enumerate(names):
        # diagonal k: samples with k = 0 (no percolating path) have no log10 k; scored apart
        keep = true_log[:, j] > np.log10(k_floor) if norm.log[j] else np.ones(len(true_log), dtype=bool)
        err = pred_log[keep, j] - true_log[keep, j]
        r2[name] = r2_score(true_log[keep, j], pred_log[keep, j])
        m[f"r2_{name}"] = r2[name]
        m[f"mae_{name}"] = float(np.abs(err).mean())
        m[f"rmse_{name}"] = float(np.sqrt((err**2).mean()))
    m["r2_mean"] = float(np.nanmean(list(r2.values())))
    diag = [j for j, n in enumerate(names) if norm.log[j]]
    if diag:
        m["r2_log_k_diag"] = float(np.nanmean([r2[names[j]] for j in diag]))
        pooled = []
        for j in diag:
            k_true, k_pred = 10.0 ** true_log[:, j], 10.0 ** pred_log[:, j]
            ok = k_true > k_floor
            rel = np.abs(k_pred[ok] - k_true[ok]) / k_true[ok]
            m[f"medrel_{names[j]}"] = float(np.median(rel)) if rel.size else float("nan")
            m[f"n_nonpercolating_{names[j]}"] = int((~ok).sum())
            pooled.append(rel)
        pooled = np.concatenate(pooled)
        m["medrel_k"] = float(np.median(pooled)) if pooled.size else float("nan")
        off = [j for j, n in enumerate(names) if is_k_component(n) and not norm.log[j]]
        if off:
            scale = np.mean([10.0 ** true_log[:, j] for j in diag], axis=0)  # (N,) mean diagonal k
            ok = scale > k_floor
            rel = np.concatenate([np.abs(pred_log[ok, j] - true_log[ok, j]) / scale[ok] for j in off])
            m["medrel_offdiag"] = float(np.median(rel)) if rel.size else float("nan")
    std = np.asarray(norm.std)
    known = np.ones(true_log.shape, dtype=bool)  # (N, P): k_ii = 0 is a class, not a number to score
    for j in diag:
        known[:, j] = true_log[:, j] > np.log10(k_floor)
    m["mse_norm"] = float((((pred_log - true_log) / std) ** 2)[known].mean())
    m["mse_norm_mean_baseline"] = float((((np.asarray(norm.mean) - true_log) / std) ** 2)[known].mean())
    return m


def evaluate_surrogate(surrogate, dataset_dir, split: str = "test", out_dir=None, history=None,
                       tta: bool = False) -> dict:
    """Metrics of a Surrogate on ``split`` of ``dataset_dir`` (the split of its config's split_seed);
    figures (parity per component, error against porosity, loss curves) and metrics.json under out_dir."""
    from data_pipeline.dataset import VoxelDataset

    cfg = surrogate.cfg
    ds = VoxelDataset(dataset_dir, split, cfg.components, fractions=tuple(cfg.split_fractions),
                      split_seed=cfg.split_seed, exclude_labelers=("surrogate",))
    if len(ds) == 0:
        raise ValueError(f"{dataset_dir}: split {split!r} is empty")
    vols = ds.volumes()  # (N, *shape) bool
    t0 = time.perf_counter()
    pred_log = surrogate.predict_log(vols, tta=tta)  # (N, P)
    seconds = time.perf_counter() - t0
    true_log = surrogate.norm.to_log(ds.targets)  # (N, P)
    metrics = {"split": split, "n_samples": len(ds), "tta": bool(tta),
               "volumes_per_s": len(ds) / max(seconds, 1e-9)}
    metrics.update(score(true_log, pred_log, cfg.components, surrogate.norm, cfg.k_floor))
    if out_dir is not None:
        out_dir = Path(out_dir)
        r2 = {c: metrics[f"r2_{c}"] for c in cfg.components}
        scored = np.column_stack([true_log[:, j] > np.log10(cfg.k_floor) if surrogate.norm.log[j]
                                  else np.ones(len(true_log), dtype=bool) for j in range(len(cfg.components))])
        figs = [plots.plot_parity(out_dir / "parity.png", true_log, pred_log, cfg.components, r2, scored=scored)]
        phi = vols.reshape(len(vols), -1).mean(1)
        figs.append(plot_error_vs_porosity(out_dir / "error_vs_porosity.png", phi, true_log, pred_log,
                                           cfg.components, surrogate.norm.log))
        if history:
            figs.append(plot_loss(out_dir / "loss_curves.png", history))
        metrics["figures"] = figs
        write_json(out_dir / "metrics.json", metrics, safe=True)
        pred_df = pd.DataFrame({"sample_id": ds.ids, "porosity": phi})
        for j, c in enumerate(cfg.components):
            pred_df[f"true_{c}"] = true_log[:, j]
            pred_df[f"pred_{c}"] = pred_log[:, j]
        with atomic_path(out_dir / "predictions_log.csv") as tmp:
            pred_df.to_csv(tmp, index=False)
    return metrics


def plot_error_vs_porosity(path, phi, true_log, pred_log, names, log_flags) -> str:
    """Prediction error against porosity: log10 k error for diagonal k, linear error otherwise."""
    p = len(names)
    fig, axes = plt.subplots(1, p, figsize=(3.0 * p, 2.8), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        ax.axhline(0, color="k", lw=0.8)
        ax.scatter(phi, pred_log[:, j] - true_log[:, j], s=8)
        ax.set_xlabel("porosity")
        ax.set_ylabel(f"error of {'log10 ' if log_flags[j] else ''}{name}")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return plots._save(fig, path)


def plot_loss(path, history: list[dict]) -> str:
    """Train and validation MSE (normalized targets) against epoch."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(4.0, 3.0))
    ax.plot(epochs, [h["train_loss"] for h in history], "-o", ms=3, label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], "--s", ms=3, label="val")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (normalized targets)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return plots._save(fig, path)


def format_metrics(m: dict) -> str:
    lines = [f"{m['split']} split, {m['n_samples']} samples ({m['volumes_per_s']:.0f} volumes/s"
             f"{', TTA' if m.get('tta') else ''})"]
    for key in [k for k in m if k.startswith("r2_") and k not in ("r2_mean", "r2_log_k_diag")]:
        c = key[3:]
        unit = " (log10 lattice units)" if f"medrel_{c}" in m else ""
        extra = f"  median rel. error of k {m[f'medrel_{c}']:.3f}" if f"medrel_{c}" in m else ""
        lines.append(f"  {c:<9} R2 {m[key]:.4f}  MAE {m['mae_' + c]:.4g}{unit}{extra}")
    if "medrel_k" in m:
        lines.append(f"  diagonal k: mean R2 of log10 k {m['r2_log_k_diag']:.4f}, median rel. error {m['medrel_k']:.3f}")
    lines.append(f"  normalized MSE {m['mse_norm']:.4f} (predicting the training mean: {m['mse_norm_mean_baseline']:.4f})")
    if m.get("figures"):
        lines.append(f"  figures: {', '.join(m['figures'])}")
    return "\n".join(lines)
