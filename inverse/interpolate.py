"""``python -m inverse interpolate A B --steps N``: a latent path between two samples.

A and B are sample ids of the model's dataset or paths to .tif volumes. Their latent means are
joined by spherical linear interpolation (slerp, ``models.latent.slerp``); each point is decoded,
binarized (threshold rule "decoded" by default: the pore fraction equals the decoded field's mean
pore probability; "target": the regressor's predicted porosity) and cleaned, its properties are
predicted by the regressor and, with ``--verify``, computed by the LBM solver (one batch). Writes
``OUT/interpolation.csv``, ``OUT/volumes/step_<i>.tif`` and ``OUT/interpolation.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.cli import failed
from core.properties import is_k_component
from data_pipeline.io import read_volume, volume_path, write_volume
from inverse.design import decode_probabilities
from inverse.postprocess import binarize_clean
from inverse.report import write_csv
from inverse.verify import verified_values, verify_batch


def load_sample(ref: str, dataset: Path | None) -> tuple[str, np.ndarray]:
    """A sample id of ``dataset`` or a .tif path -> (name, im bool)."""
    p = Path(ref)
    if p.suffix.lower() in (".tif", ".tiff") or p.is_file():
        return p.stem, read_volume(p)
    if dataset is None:
        raise FileNotFoundError(f"{ref!r}: not a .tif file, and no dataset to look the sample id up in")
    path = volume_path(dataset, ref)
    if not path.is_file():
        raise FileNotFoundError(f"{ref!r}: neither a .tif file nor a sample of {dataset} ({path} missing)")
    return ref, read_volume(path)


@torch.no_grad()
def interpolate(bundle, im_a: np.ndarray, im_b: np.ndarray, steps: int = 8, threshold: str = "decoded",
                clean: bool = True, max_island: int = 64, verify: bool = False,
                solver: dict | None = None) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Slerp from ``im_a`` to ``im_b`` in ``steps`` points (ends included).

    Returns the table (t, pred_*, binary porosity, threshold, verified_* when ``verify``) and the
    binary volumes (True = pore).
    """
    from models.latent import slerp

    model, norm, cfg = bundle.model, bundle.norm, bundle.cfg
    expected = (cfg.input_size,) * cfg.dims
    for name, im in (("A", im_a), ("B", im_b)):
        if im.shape != expected:
            raise ValueError(f"sample {name}: shape {im.shape}, the model takes {expected}")
    if steps < 2:
        raise ValueError(f"--steps must be >= 2, got {steps}")
    p = next(model.parameters())
    x = torch.as_tensor(np.stack([im_a, im_b]).astype(np.float32))[:, None].to(p.device)  # (2, 1, *shape)
    mu, _ = model.encode(x)  # (2, L)
    mu = mu.double().cpu().numpy()
    t = np.linspace(0.0, 1.0, steps)
    z = slerp(mu[0], mu[1], t)  # (T, L)
    pred = norm.inverse(model.predict_properties(torch.as_tensor(z, dtype=p.dtype, device=p.device)).cpu().numpy())
    probs = decode_probabilities(model, z)  # (T, *shape)
    rows, ims = [], []
    for i, (ti, pi, prob) in enumerate(zip(t, pred, probs)):
        pdict = {n: float(v) for n, v in zip(cfg.properties, pi)}
        goal = float(prob.mean()) if threshold == "decoded" or "porosity" not in pdict else pdict["porosity"]
        im, thr, info = binarize_clean(prob, "fixed" if threshold == "fixed" else "target", goal,
                                       do_clean=clean, max_island=max_island)
        row = {"step": i, "t": float(ti), **{f"pred_{k}": v for k, v in pdict.items()},
               "threshold_rule": threshold, "threshold": float(thr), "decoded_porosity": float(prob.mean()),
               "binary_porosity": float(im.mean())}
        rows.append(row)
        ims.append(im)
    if verify:
        recs, _ = verify_batch(ims, solver)
        for row, rec in zip(rows, recs):
            for k, v in verified_values(rec, cfg.properties).items():
                row[f"verified_{k}"] = v
            row["converged"] = bool(rec["converged"])
            row["solver_error"] = rec["error"]
    return pd.DataFrame(rows), ims


def plot_path(df: pd.DataFrame, ims: list[np.ndarray], properties: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    from data_pipeline.io import atomic_path

    n = len(ims)
    fig = plt.figure(figsize=(max(1.6 * n, 6), 5.2))
    for i, im in enumerate(ims):
        ax = fig.add_subplot(2, n, i + 1)
        ax.imshow(im if im.ndim == 2 else im[im.shape[0] // 2], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"t={df['t'][i]:.2f}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    for p in properties:
        y = df[f"pred_{p}"]
        ax.plot(df["t"], y, marker="o", label=f"pred {p}")
        if f"verified_{p}" in df:
            ax.plot(df["t"], df[f"verified_{p}"], marker="x", ls="--", label=f"LBM {p}")
    if any(is_k_component(p) for p in properties):
        ax.set_yscale("log")
    ax.set_xlabel("slerp parameter t")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inverse interpolate", description=(
        "Slerp between the latents of two samples (sample ids of the dataset or .tif paths); decode, "
        "binarize and clean each point, predict its properties and, with --verify, compute them with "
        "the LBM solver. Writes OUT/interpolation.csv, OUT/volumes/step_<i>.tif, OUT/interpolation.png."))
    p.add_argument("a", help="first sample: sample id or .tif path")
    p.add_argument("b", help="second sample: sample id or .tif path")
    p.add_argument("--steps", type=int, default=8, help="points along the path, ends included (default 8)")
    p.add_argument("--model", default="models:/pvae@champion", help="MLflow model URI or checkpoint folder")
    p.add_argument("--dataset", help="dataset folder (default: recorded in the checkpoint)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or the tuning default)")
    p.add_argument("--threshold", choices=["decoded", "target", "fixed"], default="decoded",
                   help="binarization: decoded mean porosity (default), predicted porosity, or 0.5")
    p.add_argument("--no-clean", action="store_true", help="keep floating solid and isolated pores")
    p.add_argument("--verify", action="store_true", help="compute porosity and permeability with the LBM solver")
    p.add_argument("--out", default="runs/interpolate", help="output folder")
    p.add_argument("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    from inverse.model_source import ModelSourceError, load_bundle

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        bundle = load_bundle(args.model, args.dataset, args.tracking_uri, args.device, cache_dir=out / ".model")
        name_a, im_a = load_sample(args.a, bundle.dataset)
        name_b, im_b = load_sample(args.b, bundle.dataset)
        df, ims = interpolate(bundle, im_a, im_b, args.steps, args.threshold, not args.no_clean,
                              verify=args.verify)
    except (ModelSourceError, FileNotFoundError, ValueError) as exc:
        return failed("python -m inverse interpolate: error", exc)
    df.insert(0, "from", name_a)
    df.insert(1, "to", name_b)
    for i, im in enumerate(ims):
        write_volume(out / "volumes" / f"step_{i:02d}.tif", im)
    write_csv(out / "interpolation.csv", df)
    plot_path(df, ims, bundle.properties, out / "interpolation.png")
    print(df.drop(columns=["from", "to"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written: {out / 'interpolation.csv'}, {len(ims)} volumes in {out / 'volumes'}")
    return 0
