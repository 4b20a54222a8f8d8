"""Latent space helpers: latent means WITH sample ids, slerp, and the `latent` verb (CSV export)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.cli import add_checkpoint_arguments, failed
from data_pipeline.io import atomic_path


@torch.no_grad()
def latent_means(model, dataset, batch_size: int = 64, device: str | torch.device = "cpu") -> tuple[list[str], np.ndarray]:
    """Encode every sample of a VoxelDataset -> (sample ids, mu (N, latent_dim) float32).

    The ids come from ``dataset.ids`` in the same order as the rows of ``mu``, so the rows can be
    joined with properties.csv by sample_id (never by position).
    """
    model.eval()
    device = torch.device(device)
    rows = []
    for start in range(0, len(dataset), batch_size):
        x = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])  # (B, 1, *shape)
        mu, _ = model.encode(x.to(device))  # (B, L)
        rows.append(mu.float().cpu().numpy())
    latent_dim = getattr(model, "latent_dim", 0)
    mu = np.concatenate(rows) if rows else np.zeros((0, latent_dim), np.float32)
    return list(dataset.ids), mu


def latent_columns(latent_dim: int) -> list[str]:
    return [f"z{i}" for i in range(latent_dim)]


def slerp(z0: np.ndarray | torch.Tensor, z1, t):
    """Spherical linear interpolation between latent vectors z0, z1 (L,) at t in [0, 1] -> (T, L).

    Falls back to linear interpolation when the vectors are (anti)parallel within 1e-6.
    """
    is_torch = isinstance(z0, torch.Tensor)
    a = np.asarray(z0.detach().cpu() if is_torch else z0, dtype=np.float64)
    b = np.asarray(z1.detach().cpu() if isinstance(z1, torch.Tensor) else z1, dtype=np.float64)
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))[:, None]  # (T, 1)
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        out = (1 - t) * a + t * b
    else:
        out = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    return torch.as_tensor(out, dtype=z0.dtype) if is_torch else out


def write_latent_csv(path, ids: list[str], mu: np.ndarray, extra: pd.DataFrame | None = None) -> Path:
    """CSV with sample_id then z0..z{L-1} (optionally joined with property columns by sample_id)."""
    df = pd.DataFrame(mu, columns=latent_columns(mu.shape[1]))
    df.insert(0, "sample_id", ids)
    if extra is not None:
        df = df.merge(extra, on="sample_id", how="left", validate="one_to_one")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.7g")
    return Path(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models latent", description=(
        "Export the latent means of a split of a dataset as CSV: sample_id, z0..z{L-1} "
        "[, properties with --with-properties]."))
    add_checkpoint_arguments(p, "train")
    p.add_argument("--out", required=True, help="output CSV path")
    p.add_argument("--with-properties", action="store_true", help="append the raw property columns")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    return p


def main(argv: list[str] | None = None) -> int:
    from data_pipeline.dataset import VoxelDataset
    from models.checkpoint import load_model

    args = build_parser().parse_args(argv)
    try:
        model, cfg, _ = load_model(args.checkpoint, device=args.device)
        ds = VoxelDataset(args.dataset, args.split, cfg.properties, fractions=tuple(cfg.split_fractions),
                          split_seed=cfg.split_seed)
    except (ValueError, FileNotFoundError) as exc:
        return failed("python -m models latent", exc)
    ids, mu = latent_means(model, ds, batch_size=args.batch_size, device=args.device)
    extra = None
    if args.with_properties:
        extra = pd.DataFrame(ds.targets, columns=cfg.properties)
        extra.insert(0, "sample_id", ds.ids)
    path = write_latent_csv(args.out, ids, mu, extra)
    print(f"wrote {len(ids)} latent means ({mu.shape[1]} dims) of split {args.split!r} to {path}")
    return 0
