"""Training of the pVAE: a Trainer that Ray Tune can drive epoch by epoch, and the `train` verb.

    trainer = Trainer(cfg, dataset_dir)
    while not trainer.should_stop():
        metrics = trainer.train_epoch()          # one epoch of training + validation
        trainer.save_checkpoint(out / "last")
        if trainer.is_best():
            trainer.save_checkpoint(out / "best")

``Trainer.fit(out_dir)`` is exactly that loop. ``Trainer.resume(folder, dataset_dir)`` continues
from a checkpoint folder with the same optimizer, scheduler and RNG state, so an interrupted run
and an uninterrupted one give the same numbers (on CPU).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import Normalizer, read_config
from models.common import EpochTrainer, batches, setup_optimization
from core.config import parse_override
from models.config import PVAEConfig, load_config
from models.losses import pvae_loss
from models.pvae import PVAE

TERMS = ("loss", "recon", "kl", "prop")


class Trainer(EpochTrainer):
    """Owns model, optimizer, scheduler, data and the epoch loop of one training run.

    Attributes
    ----------
    epoch : epochs completed
    history : one metrics dict per completed epoch
    best_val, best_epoch : lowest val_loss so far and its epoch
    norm : Normalizer fitted on the TRAIN subset (log10 for diagonal k, then standardized)
    """

    def __init__(self, cfg: PVAEConfig, dataset_dir):
        from data_pipeline.dataset import VoxelDataset, dataset_hash  # torch Dataset of the data stage

        cfg = self._init_runtime(PVAEConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg, dataset_dir)

        common = dict(properties=cfg.properties, fractions=tuple(cfg.split_fractions), split_seed=cfg.split_seed)
        self.train_set = VoxelDataset(self.dataset_dir, "train", dataset_size=cfg.dataset_size,
                                      subset_seed=cfg.seed, **common)
        self.val_set = VoxelDataset(self.dataset_dir, "val", **common)
        self._check_dataset(self.train_set)
        if len(self.train_set) < 2 or len(self.val_set) < 1:
            raise ValueError(f"{self.dataset_dir}: need >= 2 training and >= 1 validation samples, "
                             f"got {len(self.train_set)} and {len(self.val_set)}")
        self.dataset_hash = dataset_hash(self.dataset_dir)
        self.norm = Normalizer.fit(cfg.properties, self.train_set.targets, cfg.k_floor)

        self.x_train, self.y_train = self._tensors(self.train_set)  # (N, 1, *shape) uint8, (N, P)
        self.x_val, self.y_val = self._tensors(self.val_set)

        setup_optimization(self, PVAE.from_config(cfg), cfg)
        self.loader_rng = torch.Generator().manual_seed(cfg.seed)

        self._init_loop_state()

    # --- data ------------------------------------------------------------------------------
    def _check_dataset(self, ds) -> None:
        cfg = self.cfg
        expected = (cfg.input_size,) * cfg.dims
        if ds.dims != cfg.dims or tuple(ds.shape) != expected:
            raise ValueError(f"{self.dataset_dir / 'dataset.yaml'}: dims {ds.dims}, shape {list(ds.shape)}; "
                             f"config expects dims {cfg.dims}, input_size {cfg.input_size} "
                             f"(set input_size/dims to match)")

    def _tensors(self, ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.volumes(), dtype=np.uint8)).unsqueeze(1)  # (N, 1, *shape)
        y = torch.from_numpy(self.norm.transform(ds.targets))  # (N, P) normalized
        if not torch.isfinite(y).all():
            raise ValueError(f"{self.dataset_dir / 'properties.csv'}: non-finite normalized targets")
        if self.cuda and x.numel() < 2**31:  # small enough: keep the whole split on the GPU
            x, y = x.to(self.device), y.to(self.device)
        return x, y

    def _to_device(self, x: torch.Tensor, y: torch.Tensor):
        x = x.to(self.device, non_blocking=True).float()  # (B, 1, *shape) in {0, 1}
        if self.memory_format is not torch.preserve_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    # --- epoch loop ------------------------------------------------------------------------
    def beta_at(self, progress: float) -> float:
        """Effective beta at fractional epoch ``progress`` (linear warm-up over beta_warmup_epochs)."""
        w = self.cfg.beta_warmup_epochs
        return self.cfg.beta if w <= 0 else self.cfg.beta * min(1.0, progress / w)

    def train_epoch(self) -> dict:
        """One epoch of training then validation; returns the epoch's metrics (also in history)."""
        cfg, model = self.cfg, self.model
        t0 = time.perf_counter()
        model.train()
        sums = dict.fromkeys(TERMS, 0.0)
        n_seen = 0
        epoch_batches = batches(len(self.x_train), cfg.batch_size, self.loader_rng)
        beta = cfg.beta
        for b, idx in enumerate(epoch_batches):
            beta = self.beta_at(self.epoch + b / len(epoch_batches))
            x, y = self._to_device(self.x_train[idx.to(self.x_train.device)], self.y_train[idx.to(self.y_train.device)])
            with self._autocast():
                out = model(x)
            terms = pvae_loss(out, x, y, beta=beta, alpha=cfg.alpha)
            if not torch.isfinite(terms["loss"]):
                raise FloatingPointError(f"loss is NaN at epoch {self.epoch + 1}, batch {b + 1} "
                                         f"(recon {terms['recon'].item():.4g}, kl {terms['kl'].item():.4g}, "
                                         f"prop {terms['prop'].item():.4g}; lr {cfg.lr:g})")
            self._step(terms["loss"])
            n = len(idx)
            n_seen += n
            for k in TERMS:
                sums[k] += terms[k].item() * n
        train_time = time.perf_counter() - t0
        train = {f"train_{k}": sums[k] / max(n_seen, 1) for k in TERMS}
        return self._end_epoch(train, self.validate(), t0, n_seen, train_time, beta_eff=beta)

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss terms on the validation split, decoded from the latent mean, at the full beta
        (so val_loss is one fixed objective across epochs, warm-up or not)."""
        self.model.eval()
        sums = dict.fromkeys(TERMS, 0.0)
        for idx in batches(len(self.x_val), self.cfg.eval_batch_size, None):
            x, y = self._to_device(self.x_val[idx.to(self.x_val.device)], self.y_val[idx.to(self.y_val.device)])
            with self._autocast():
                out = self.model(x)
            terms = pvae_loss(out, x, y, beta=self.cfg.beta, alpha=self.cfg.alpha)
            for k in TERMS:
                sums[k] += terms[k].item() * len(idx)
        return {k: v / len(self.x_val) for k, v in sums.items()}

    # --- hooks of EpochTrainer ---------------------------------------------------------------
    read_config = staticmethod(read_config)

    def _reload_tensors(self) -> None:
        self.x_train, self.y_train = self._tensors(self.train_set)  # normalized with the restored stats
        self.x_val, self.y_val = self._tensors(self.val_set)

    def _log_line(self, m: dict) -> str:
        return (f"epoch {m['epoch']:3d}  train {m['train_loss']:.4f} (recon {m['train_recon']:.4f} "
                f"kl {m['train_kl']:.2e} prop {m['train_prop']:.4f})  val {m['val_loss']:.4f} "
                f"(prop {m['val_prop']:.4f})  lr {m['lr']:.2e}  {m['train_samples_per_s']:.0f} samples/s")

    def evaluate(self, split: str = "test", out_dir=None) -> dict:
        """Metrics of the current model (the best one after fit) on ``split``; see models.evaluate."""
        from models.evaluate import evaluate
        return evaluate(self.model, self.cfg, self.norm, self.dataset_dir, split=split, out_dir=out_dir,
                        history=self.history, device=self.device)


# --- the `train` verb -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models train", description=(
        "Train a pVAE on a dataset folder; writes OUT/best and OUT/last checkpoint folders, "
        "then evaluates the best model on the test split (OUT/eval/metrics.json + PNG figures)."))
    p.add_argument("--dataset", required=True, help="dataset folder (dataset.yaml, volumes/, properties.csv)")
    p.add_argument("--config", help="YAML config (flat PVAEConfig fields); defaults when omitted")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set latent_dim=8 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last if it exists")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation and figures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        if args.resume and (out / "last").is_dir():
            trainer = Trainer.resume(out / "last", args.dataset)
            print(f"resuming from {out / 'last'} at epoch {trainer.epoch}")
        else:
            cfg = load_config(args.config, **dict(parse_override(s) for s in args.set))
            trainer = Trainer(cfg, args.dataset)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m models train: {exc}", file=sys.stderr)
        return 2
    print(f"training on {len(trainer.train_set)} samples (val {len(trainer.val_set)}), device {trainer.device}, "
          f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters")
    summary = trainer.fit(out)
    print(f"best val_loss {summary['best_val']:.4f} at epoch {summary['best_epoch']} "
          f"({summary['epochs']} epochs, {summary['train_time_s']:.1f} s)")
    if not args.no_eval:
        metrics = trainer.evaluate("test", out_dir=out / "eval")
        from models.evaluate import format_metrics
        print(format_metrics(metrics))
    return 0
