"""Pieces the pVAE and the permeability surrogate share: the flat-config behaviour and the
optimisation setup of a training run (optimizer, schedule, AMP and memory format on CUDA only)."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available in this torch build")
    return torch.device(name)


class FlatConfig:
    """Mixin for a flat config dataclass: from_dict (unknown key -> ValueError naming it),
    to_dict, replace, to_json. Values that searchers hand back as numpy scalars or as floats
    of int fields (hyperopt's quniform) are coerced to plain Python values of the field's type."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict):
        """Build a config from a flat dict; an unknown key raises ValueError naming it."""
        fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        for key in d:
            if key not in fields:
                raise ValueError(f"Unknown config key {key!r}; valid keys: {', '.join(sorted(fields))}")
        kwargs = {}
        for k, v in d.items():
            if hasattr(v, "item") and not isinstance(v, (list, dict, str)):  # numpy scalars
                v = v.item()
            kind = fields[k]
            if kind.startswith("list") and v is not None:
                v = [int(x) for x in v] if kind == "list[int]" else list(v)
            elif kind.startswith("int") and isinstance(v, float) and v.is_integer():
                v = int(v)
            kwargs[k] = v
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        """A copy with some fields changed (unknown keys raise, like from_dict)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_json(self, path: str | Path) -> None:
        from data_pipeline.io import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))


def setup_optimization(trainer, model: torch.nn.Module, cfg) -> None:
    """Attach model, memory_format, amp_dtype, scaler, optimizer and scheduler to ``trainer``.

    channels-last and AMP (bf16 where supported, else fp16 with a gradient scaler) only on CUDA;
    AdamW; cosine (to lr * min_lr_ratio over cfg.epochs), plateau or no schedule.
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
    trainer.optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
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
        """True after ``patience`` epochs without val_loss improvement, or once ``epochs`` are done."""
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
        write_checkpoint(folder, self.model, self.cfg, self.norm, self._metrics_record(), self._train_state())

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
        """Put the best weights seen so far (lowest val_loss) into the model."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    def fit(self, out_dir, log=print) -> dict:
        """Train until early stopping or ``epochs``; keeps out_dir/best (lowest val_loss) and
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
