"""Fit a learned texture prior (``models.texture_diffusion``) to a trained pVAE (issue 13).

The training split's structures (as given and in ``--augment`` symmetric copies, each encoded) give
pairs (global code, standardized texture residual); a small conditional DDPM learns p(residual |
code). OUT is a copy of the checkpoint with the fitted prior stored beside its weights: ``load_model``
attaches it, so ``decode(z, noise=k, texture="diffusion")`` and ``inverse design --texture diffusion``
use it; ``bench/family_look.py model OUT ...`` scores it beside the Gaussian prior texture and the bank.

    python bench/texture_diffusion.py runs/bench32/pvae14sp/best runs/bench32/data runs/exp21/tdiff \
        --steps 1500 --threads 2
    python bench/family_look.py model runs/exp21/tdiff runs/bench32/data --out runs/exp21/family
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from data_pipeline.dataset import VoxelDataset
    from models.checkpoint import load_model
    from models.texture_diffusion import (TextureDiffusionConfig, fit_texture_diffusion, save_texture_diffusion,
                                          training_residuals)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint"), ap.add_argument("dataset"), ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=TextureDiffusionConfig.steps)
    ap.add_argument("--augment", type=int, default=TextureDiffusionConfig.augment)
    ap.add_argument("--batch-size", type=int, default=TextureDiffusionConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TextureDiffusionConfig.lr)
    ap.add_argument("--channels", type=int, nargs=3, default=[16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, cfg, _ = load_model(args.checkpoint)
    train = VoxelDataset(args.dataset, "train", cfg.properties, fractions=tuple(cfg.split_fractions),
                         split_seed=cfg.split_seed, dataset_size=cfg.dataset_size, subset_seed=cfg.seed)
    t0 = time.perf_counter()
    codes, res = training_residuals(model, np.asarray(train.volumes()), args.augment, seed=args.seed)
    t_res = time.perf_counter() - t0
    print(f"{len(train)} training structures x {1 + args.augment} copies: codes {tuple(codes.shape)}, "
          f"residuals {tuple(res.shape)} (std per channel {res.std(dim=(0, *range(2, res.ndim))).numpy().round(3)}), "
          f"{t_res:.0f} s", flush=True)
    dcfg = TextureDiffusionConfig(channels=list(args.channels), steps=args.steps, batch_size=args.batch_size,
                                  lr=args.lr, augment=args.augment, seed=args.seed)
    t0 = time.perf_counter()
    diff, losses = fit_texture_diffusion(codes, res, dcfg, log_every=max(1, args.steps // 20))
    t_fit = time.perf_counter() - t0
    print(f"fitted in {t_fit:.0f} s ({t_fit / max(1, args.steps):.2f} s/step, {args.threads} threads); "
          f"loss first 50 steps {np.mean(losses[:50]):.4f}, last 50 {np.mean(losses[-50:]):.4f}")
    out = Path(args.out)
    if out.resolve() != Path(args.checkpoint).resolve():  # a copy of the checkpoint holds the prior
        shutil.copytree(args.checkpoint, out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("texture_diffusion.*", "train_state*"))
    save_texture_diffusion(diff, out, extra={"checkpoint": str(args.checkpoint), "dataset": str(args.dataset),
                                                  "n_pairs": int(len(codes)), "fit_seconds": t_fit,
                                                  "loss_last50": float(np.mean(losses[-50:]))})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
