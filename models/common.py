"""Pieces the pVAE and the permeability surrogate share: the batching and optimisation setup of a training run (optimizer, schedule, AMP and memory format on CUDA only) and
the trainer base that owns the epoch loop, the optimizer step, checkpoints and resume."""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches of a (shuffled when generator is given) epoch; a trailing batch of 1 is
    dropped when training (BatchNorm cannot normalise a single sample)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    parts = list(order.split(batch_size))
    if generator is not None and len(parts) > 1 and len(parts[-1]) == 1:
        parts = parts[:-1]
    return parts


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available in this torch build")
    return torch.device(name)


def setup_optimization(trainer, model: torch.nn.Module, cfg) -> None:
    """Attach model, memory_format, amp_dtype, scaler, optimizer and scheduler to ``trainer``.

    channels-last and AMP (bf16 where supported, else fp16 with a gradient scaler) only on CUDA;
    AdamW (a parameter named in the model's ``lr_scales()`` at that multiple of lr, without weight
    decay); cosine (to lr * min_lr_ratio over cfg.epochs), plateau or no schedule.
    """
    trainer.model = model.to(trainer.device)
    trainer.memory_format = torch.preserve_format
    if trainer.cuda and cfg.channels_last:
        trainer.memory_format = torch.channels_last_3d if cfg.dims == 3 else torch.channels_last
        trainer.model = trainer.model.to(memory_format=trainer.memory_format)
    trainer.amp_dtype = None
    if trainer.cuda and cfg.amp:
        trainer.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=trainer.amp_dtype == torch.float16)
    # a parameter the model names in lr_scales() gets its own group: lr times the scale, no decay
    scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
    named = list(trainer.model.named_parameters())
    groups = [{"params": [p for n, p in named if n not in scales]}]
    groups += [{"params": [p for n, p in named if n == name], "lr": cfg.lr * scale, "weight_decay": 0.0}
               for name, scale in scales.items()]
    trainer.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.scheduler == "cosine":
        trainer.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            trainer.optimizer, T_max=max(cfg.epochs, 1), eta_min=cfg.lr * cfg.min_lr_ratio)
    elif cfg.scheduler == "plateau":
        trainer.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            trainer.optimizer, factor=0.5, patience=max(cfg.patience // 2, 1))
    else:
        trainer.scheduler = None


class EpochTrainer:
    """The epoch-loop machinery the pVAE Trainer and the SurrogateTrainer share.

    A subclass sets up data, model (via :func:`setup_optimization`), ``loader_rng`` and
    ``norm`` in ``__init__`` and implements ``train_epoch`` (which updates ``best_val``,
    ``best_epoch``, ``bad_epochs``, ``_improved`` and ``_best_state``), ``_reload_tensors``
    (after the normalization of a checkpoint is restored), ``read_config(folder)`` and
    ``_log_line(metrics)``. Checkpoints, resume, early stopping and ``fit`` live here, once.
    """

    KIND: str | None = None  # written into metrics.json when set
    CHECKPOINT_KIND = "pvae"  # written into config.json: "pvae" | "surrogate" (core/checkpoint.py)

    def _init_runtime(self, cfg, dataset_dir):
        """Config, dataset folder, threads, device and torch seed of a run; returns cfg."""
        self.cfg = cfg
        self.dataset_dir = Path(dataset_dir)
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        torch.manual_seed(cfg.seed)
        return cfg

    def _init_loop_state(self) -> None:
        self.epoch = 0
        self.history: list[dict] = []
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self._improved = False
        self._best_state: dict | None = None

    def _step(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``: backward (scaled under fp16 AMP), gradient clipping, update."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _end_epoch(self, metrics: dict, val: dict, t0: float, n_seen: int, train_time: float, **extra) -> dict:
        """After an epoch's batches: schedule, count the epoch, complete ``metrics`` (val_*, lr,
        throughput, time, ``extra``), update early stopping and the history; returns ``metrics``."""
        lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val["loss"])
        elif self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        metrics = {"epoch": self.epoch, **metrics}
        metrics.update({f"val_{k}": v for k, v in val.items()})
        metrics.update({"lr": lr, **extra, "train_samples_per_s": n_seen / max(train_time, 1e-9),
                        "epoch_time_s": time.perf_counter() - t0})
        self._update_best(metrics[self.select_metric])
        metrics["best_val"] = self.best_val
        self.history.append(metrics)
        return metrics

    @property
    def select_metric(self) -> str:
        """The validation metric that selects the best checkpoint and drives early stopping
        (the config's ``select_metric``; val_loss for configs without one, e.g. the surrogate's)."""
        return getattr(self.cfg, "select_metric", "val_loss")

    def _autocast(self):
        return nullcontext() if self.amp_dtype is None else torch.autocast("cuda", dtype=self.amp_dtype)

    def _update_best(self, val_loss: float) -> None:
        """Early-stopping bookkeeping after an epoch; keeps a copy of the best weights."""
        self._improved = val_loss < self.best_val - self.cfg.min_delta
        if self._improved:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, self.epoch, 0
            self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_epochs += 1

    def should_stop(self) -> bool:
        """True after ``patience`` epochs without improvement of ``select_metric``, or once ``epochs`` are done."""
        if self.epoch >= self.cfg.epochs:
            return True
        return self.cfg.patience > 0 and self.bad_epochs >= self.cfg.patience

    def is_best(self) -> bool:
        """The last completed epoch improved best_val."""
        return self._improved

    # --- checkpoints ---------------------------------------------------------------------
    def _metrics_record(self) -> dict:
        record = {"kind": self.KIND} if self.KIND else {}
        record.update({"epoch": self.epoch, "best_val": self.best_val, "best_epoch": self.best_epoch,
                       "bad_epochs": self.bad_epochs, "improved": self._improved,
                       "dataset_dir": str(self.dataset_dir), "dataset_hash": self.dataset_hash,
                       "n_train": len(self.train_set), "n_val": len(self.val_set),
                       "last": self.history[-1] if self.history else {}, "history": self.history})
        return record

    def _train_state(self) -> dict:
        """Optimizer, scheduler, scaler and RNG state: everything ``resume`` needs to continue exactly."""
        state = {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                 "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                 "loader_rng": self.loader_rng.get_state()}
        if getattr(self, "aug_rng", None) is not None:  # the augmentation draws of the pVAE trainer
            state["aug_rng"] = self.aug_rng.get_state()
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_train_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.loader_rng.set_state(state["loader_rng"])
        if "aug_rng" in state and getattr(self, "aug_rng", None) is not None:
            self.aug_rng.set_state(state["aug_rng"])
        if self.cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch = int(state["epoch"])

    def save_checkpoint(self, folder) -> None:
        """Write weights, config, normalization, metrics and the full training state to ``folder``."""
        from models.checkpoint import write_checkpoint
        write_checkpoint(folder, self.model, self.cfg, self.norm, self._metrics_record(), self._train_state(),
                         kind=self.CHECKPOINT_KIND)

    @classmethod
    def resume(cls, folder, dataset_dir):
        """A trainer that continues the run saved in ``folder`` (its config, weights and state).

        The best weights so far are picked up from the sibling ``best/`` folder when there is one.
        """
        from safetensors.torch import load_file

        from models.checkpoint import Normalizer, read_metrics, read_train_state

        folder = Path(folder)
        trainer = cls(cls.read_config(folder), dataset_dir)
        metrics = read_metrics(folder)
        if metrics.get("dataset_hash") not in (None, trainer.dataset_hash):
            print(f"warning: {dataset_dir} changed since {folder} was written "
                  f"(hash {metrics['dataset_hash']} -> {trainer.dataset_hash})", file=sys.stderr)
        # the normalization the weights were trained with, not one refitted on today's data
        trainer.norm = Normalizer.from_dict(json.loads((folder / "norm.json").read_text()))
        trainer._reload_tensors()
        trainer.model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(trainer.device)))
        trainer._load_train_state(read_train_state(folder))
        trainer.history = list(metrics.get("history", []))
        best = metrics.get("best_val")
        trainer.best_val = math.inf if best is None else float(best)
        trainer.best_epoch = int(metrics.get("best_epoch", 0))
        trainer.bad_epochs = int(metrics.get("bad_epochs", 0))
        trainer._improved = bool(metrics.get("improved", False))
        best_dir = folder.parent / "best"
        if best_dir.is_dir() and best_dir != folder:
            trainer._best_state = load_file(str(best_dir / "model.safetensors"), device=str(trainer.device))
        return trainer

    def load_best_weights(self) -> None:
        """Put the best weights seen so far (lowest ``select_metric``) into the model."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    def fit(self, out_dir, log=print) -> dict:
        """Train until early stopping or ``epochs``; keeps out_dir/best (lowest ``select_metric``) and
        out_dir/last. On return the model holds the BEST weights. Returns a summary dict."""
        out_dir = Path(out_dir)
        t0 = time.perf_counter()
        while not self.should_stop():
            m = self.train_epoch()
            self.save_checkpoint(out_dir / "last")
            if self.is_best():
                self.save_checkpoint(out_dir / "best")
            if log:
                log(self._log_line(m) + ("  *" if self.is_best() else ""))
        self.load_best_weights()
        return {"best_val": self.best_val, "best_epoch": self.best_epoch, "epochs": self.epoch,
                "stopped_early": self.epoch < self.cfg.epochs, "train_time_s": time.perf_counter() - t0,
                "best_dir": str(out_dir / "best"), "last_dir": str(out_dir / "last")}


def open_trainer(trainer_cls, load_config, args):
    """The trainer of a ``train`` verb (:func:`core.cli.add_training_arguments`): resumed from
    OUT/last with --resume when it exists, else new from --config and its --set overrides."""
    from core.config import parse_override

    last = Path(args.out) / "last"
    if args.resume and last.is_dir():
        trainer = trainer_cls.resume(last, args.dataset)
        print(f"resuming from {last} at epoch {trainer.epoch}")
        return trainer
    return trainer_cls(load_config(args.config, **dict(parse_override(s) for s in args.set)), args.dataset)


def fit_and_report(trainer, out: Path, format_metrics=None, note: str = "") -> None:
    """Train to the end (``trainer.fit(out)``), printing the run's size, its best epoch and, when
    ``format_metrics`` is given, the best model's test-split metrics (written under OUT/eval)."""
    n_par = sum(p.numel() for p in trainer.model.parameters())
    print(f"training on {len(trainer.train_set)} samples (val {len(trainer.val_set)}), device {trainer.device}, "
          f"{n_par:,} parameters{note}")
    summary = trainer.fit(out)
    print(f"best {trainer.select_metric} {summary['best_val']:.4f} at epoch {summary['best_epoch']} "
          f"({summary['epochs']} epochs, {summary['train_time_s']:.1f} s)")
    if format_metrics is not None:
        print(format_metrics(trainer.evaluate("test", out_dir=Path(out) / "eval")))
