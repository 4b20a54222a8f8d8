"""PNG figures of a trained pVAE. Each function takes arrays and writes one PNG; no model code."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.properties import is_diagonal  # noqa: E402


def mid_slices(vol: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Three orthogonal mid-slices of a (Z, Y, X) volume, or the image itself for 2D (Y, X)."""
    vol = np.asarray(vol)
    if vol.ndim == 2:
        return [("", vol)]
    z, y, x = (s // 2 for s in vol.shape)
    return [("XY (z mid)", vol[z]), ("XZ (y mid)", vol[:, y]), ("YZ (x mid)", vol[:, :, x])]


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def plot_reconstruction(path, originals, probs, ids=None, binary=None) -> str:
    """Rows of samples: original | reconstruction probability | binarized, per mid-slice.

    originals, probs : (N, *shape) arrays (probs in [0, 1]); binary : (N, *shape) the binarized
    reconstructions as evaluated (default: probs > 0.5).
    """
    binary = probs > 0.5 if binary is None else binary
    n = len(originals)
    views = len(mid_slices(originals[0]))
    cols = 3 * views
    fig, axes = plt.subplots(n, cols, figsize=(1.8 * cols, 1.9 * n), squeeze=False)
    for i in range(n):
        orig, prob, bins = mid_slices(originals[i]), mid_slices(probs[i]), mid_slices(binary[i])
        for v in range(views):
            name = orig[v][0]
            for j, (img, label, cmap) in enumerate(((orig[v][1], "input", "gray"), (prob[v][1], "p(pore)", "viridis"),
                                                    (bins[v][1], "binarized", "gray"))):
                ax = axes[i, 3 * v + j]
                ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{label}\n{name}".strip(), fontsize=7)
        if ids is not None:
            axes[i, 0].set_ylabel(str(ids[i]), fontsize=7)
    fig.suptitle("original vs reconstruction (decoded from the latent means; binarized at the porosity "
                 "predicted for its code); pore = white", fontsize=9)
    return _save(fig, path)


def plot_loss_curves(path, history: list[dict]) -> str:
    """One panel per loss term (loss, recon, kl, prop), train and validation against epoch."""
    terms = ["loss", "recon", "kl", "prop"]
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 2.8))
    for ax, t in zip(axes, terms):
        for split, style in (("train", "-o"), ("val", "--s")):
            vals = [h.get(f"{split}_{t}") for h in history]
            if all(v is not None for v in vals):
                ax.plot(epochs, vals, style, ms=3, label=split)
        ax.set_title(t + (" (per voxel)" if t in ("recon", "kl") else ""), fontsize=9)
        ax.set_xlabel("epoch")
        if t != "prop" and all((h.get(f"train_{t}") or 0) > 0 for h in history):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def pca_2d(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, L) onto its first two principal components -> ((N, 2), explained variance ratio (2,))."""
    mu = np.asarray(mu, dtype=np.float64)
    centred = mu - mu.mean(axis=0)
    if mu.shape[1] == 1:
        return np.column_stack([centred[:, 0], np.zeros(len(mu))]), np.array([1.0, 0.0])
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2 / max((s**2).sum(), 1e-300)
    return centred @ vt[:2].T, var[:2]


def plot_latent(path, mu: np.ndarray, colours: dict[str, np.ndarray]) -> str:
    """Latent means in PCA 2D, one panel per colouring (e.g. porosity, log10 k_xx)."""
    xy, var = pca_2d(mu)
    fig, axes = plt.subplots(1, len(colours), figsize=(4.0 * len(colours), 3.4), squeeze=False)
    for ax, (name, c) in zip(axes[0], colours.items()):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=c, s=12, cmap="viridis")
        fig.colorbar(sc, ax=ax, label=name)
        ax.set_xlabel(f"PC1 ({100 * var[0]:.0f}%)")
        ax.set_ylabel(f"PC2 ({100 * var[1]:.0f}%)")
        ax.set_title(f"latent means coloured by {name}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_interpolation(path, volumes: np.ndarray, t: np.ndarray, props: np.ndarray, names: list[str]) -> str:
    """Decoded volumes along a slerp path (mid XY slice) and the predicted properties along it.

    volumes : (T, *shape) probabilities; props : (T, P) in evaluation units (log10 k).
    """
    n = len(volumes)
    fig = plt.figure(figsize=(1.5 * n, 4.2))
    for i in range(n):
        ax = fig.add_subplot(2, n, i + 1)
        ax.imshow(mid_slices(volumes[i])[0][1] > 0.5, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"t={t[i]:.2f}", fontsize=7)
    ax = fig.add_subplot(2, 1, 2)
    for j, name in enumerate(names):
        ax.plot(t, props[:, j], "-o", ms=3, label=_label(name))
    ax.set_xlabel("slerp parameter t")
    ax.set_ylabel("predicted")
    ax.legend(fontsize=7, ncol=len(names))
    fig.suptitle("slerp interpolation between two test samples (binarized mid-slices)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _label(name: str) -> str:
    return f"log10 {name}" if is_diagonal(name) else name


def plot_parity(path, true: np.ndarray, pred: np.ndarray, names: list[str], r2: dict[str, float],
                scored: np.ndarray | None = None) -> str:
    """Predicted vs true per property (log10 k for permeability), with the y = x line and R^2.

    ``scored`` (N, P) bool: the entries the R^2 is taken over (None: all). The others (k = 0, a sample
    that does not percolate along that axis, which has no log10) are drawn apart as grey crosses at
    the left edge, at their predicted value, so that the axes span the scored values, not a floor."""
    p = len(names)
    fig, axes = plt.subplots(1, p, figsize=(3.2 * p, 3.2), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        keep = np.ones(len(true), dtype=bool) if scored is None else np.asarray(scored[:, j], dtype=bool)
        t, q = true[keep, j], pred[keep, j]
        both = np.concatenate([t, q, pred[~keep, j]]) if keep.any() else pred[:, j]
        lo, hi = float(both.min()), float(both.max())
        pad = 0.05 * (hi - lo) if hi > lo else 0.05
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.scatter(t, q, s=12, label=f"scored ({int(keep.sum())})")
        if (~keep).any():
            ax.scatter(np.full(int((~keep).sum()), lo - 2 * pad), pred[~keep, j], s=18, marker="x",
                       color="0.5", label=f"k = 0, not scored ({int((~keep).sum())})")
            ax.set_xlim(lo - 3 * pad, hi + pad)
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xlabel(f"true {_label(name)}")
        ax.set_ylabel(f"predicted {_label(name)}")
        ax.set_title(f"{name}: R2 = {r2.get(name, float('nan')):.3f}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_generated(path, volumes: np.ndarray, porosity_train: np.ndarray, porosity_gen: np.ndarray,
                   train_examples: np.ndarray | None = None, s2_train=None, s2_gen=None,
                   probabilities: np.ndarray | None = None, texture: str = "prior") -> str:
    """Prior samples beside training samples (mid-slices of binary structures; the decoder's pore
    probabilities of the same prior samples in a grey row when given), the porosity histograms and
    the mean two-point correlation curves of both sets. ``texture``: "bank" (the texture of the
    nearest stored training code) or "prior" (the Gaussian field of p(z_s | z)), for the title."""
    n = min(len(volumes), 8)
    sets = ([("training", train_examples, True)] if train_examples is not None else []) \
        + [("prior sample", volumes, True)] \
        + ([("p(pore)", probabilities, False)] if probabilities is not None else [])
    rows = len(sets) + 1
    fig = plt.figure(figsize=(max(1.6 * n, 8), 2.0 * rows + 2.2))
    grid = fig.add_gridspec(rows, n, height_ratios=[1] * (rows - 1) + [1.4])
    for r, (name, vols, binary) in enumerate(sets):
        for i in range(min(n, len(vols))):
            ax = fig.add_subplot(grid[r, i])
            img = mid_slices(vols[i])[0][1]
            ax.imshow(img > 0.5 if binary else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
    half = n // 2
    ax = fig.add_subplot(grid[rows - 1, :half] if s2_train is not None else grid[rows - 1, :])
    bins = np.linspace(0, 1, 31)
    ax.hist(porosity_train, bins=bins, alpha=0.6, density=True, label="training set")
    ax.hist(porosity_gen, bins=bins, alpha=0.6, density=True, label="decoded prior samples")
    ax.set_xlabel("porosity")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if s2_train is not None:
        ax = fig.add_subplot(grid[rows - 1, half:])
        ax.plot(np.asarray(s2_train), label="training set (mean)")
        ax.plot(np.asarray(s2_gen), ls="--", label="prior samples (mean)")
        ax.set_xlabel("lag r (voxels)")
        ax.set_ylabel("S2(r)")
        ax.legend(fontsize=7)
    source = ("the texture bank (nearest training code)" if texture == "bank" else "p(z_s | z)")
    fig.suptitle(f"generation: global code from the prior fitted to the training latents, texture from "
                 f"{source}; white = pore", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
