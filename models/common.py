"""Pieces the pVAE and the permeability surrogate share: the flat-config behaviour and the
optimisation setup of a training run (optimizer, schedule, AMP and memory format on CUDA only)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch


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
