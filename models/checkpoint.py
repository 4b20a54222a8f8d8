"""Checkpoint folders (the format of core/checkpoint.py) and the property normalization that
travels with them; writing one (weights, config with its ``kind``, normalization, metrics, training
state) and loading a pVAE from one."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core.checkpoint import (CONFIG, METRICS, NORM, TRAIN_STATE, WEIGHTS, config_record,  # noqa: F401
                             read_config_dict, read_metrics, require_files)
from core.io import json_safe
from core.properties import is_diagonal as is_log_property  # noqa: F401  (diagonal k: learned as log10 k)
from models.config import PVAEConfig
from models.pvae import PVAE
from models.texture_diffusion import WEIGHTS as DIFFUSION_WEIGHTS
from models.texture_diffusion import load_texture_diffusion


def known_mask(names, y_raw) -> np.ndarray:
    """(N, P) bool: True where a property value is a number to learn; False for k_ii <= 0 (the
    sample does not percolate along i: a class, not a value, scored apart in evaluation)."""
    y = np.asarray(y_raw, dtype=np.float64).reshape(-1, len(list(names)))
    mask = np.isfinite(y)
    for j, name in enumerate(names):
        if is_log_property(name):
            mask[:, j] &= y[:, j] > 0
    return mask


class Normalizer:
    """Maps raw properties (N, P) to normalized targets and back.

    raw -> "log space" (log10 of max(k, k_floor) for diagonal permeabilities, identity otherwise)
    -> standardized with the mean/std of the training subset. ``inverse_log`` stops in log space,
    the space in which evaluation reports R^2 and MAE ("real units (log10 k)").
    """

    def __init__(self, names, mean, std, log, k_floor: float = 1e-6):
        self.names = list(names)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.log = [bool(v) for v in log]
        self.k_floor = float(k_floor)
        if not (len(self.names) == self.mean.size == self.std.size == len(self.log)):
            raise ValueError("Normalizer: names, mean, std and log must have the same length")

    @classmethod
    def fit(cls, names, y_raw: np.ndarray, k_floor: float = 1e-6) -> "Normalizer":
        names = list(names)
        log = [is_log_property(n) for n in names]
        probe = cls(names, np.zeros(len(names)), np.ones(len(names)), log, k_floor)
        y_log = probe.to_log(y_raw)  # (N, P)
        if y_log.shape[0] == 0:
            raise ValueError("Normalizer.fit: no samples")
        # statistics of the known values only: k = 0 (not percolating) has no log10 and would pull
        # the mean and inflate the std by ~log10(k_floor)
        known = known_mask(names, y_raw)  # (N, P)
        mean = np.array([y_log[known[:, j], j].mean() if known[:, j].any() else 0.0 for j in range(len(names))])
        std = np.array([y_log[known[:, j], j].std() if known[:, j].any() else 1.0 for j in range(len(names))])
        std = np.where(std > 1e-12, std, 1.0)  # a constant property stays finite
        return cls(names, mean, std, log, k_floor)

    def to_log(self, y_raw) -> np.ndarray:
        """Raw (N, P) -> log space (log10 k for diagonal k, clamped at k_floor)."""
        y = np.array(y_raw, dtype=np.float64, copy=True).reshape(-1, len(self.names))
        for j, is_log in enumerate(self.log):
            if is_log:
                y[:, j] = np.log10(np.maximum(y[:, j], self.k_floor))
        return y

    def from_log(self, y_log) -> np.ndarray:
        y = np.array(y_log, dtype=np.float64, copy=True).reshape(-1, len(self.names))
        for j, is_log in enumerate(self.log):
            if is_log:
                y[:, j] = 10.0 ** y[:, j]
        return y

    def transform(self, y_raw) -> np.ndarray:
        """Raw (N, P) -> normalized (N, P) float32."""
        return ((self.to_log(y_raw) - self.mean) / self.std).astype(np.float32)

    def inverse_log(self, y_norm) -> np.ndarray:
        """Normalized (N, P) -> log space (log10 k), float64."""
        y = np.asarray(y_norm, dtype=np.float64).reshape(-1, len(self.names))
        return y * self.std + self.mean

    def inverse(self, y_norm) -> np.ndarray:
        """Normalized (N, P) -> raw units (porosity; k in lattice units, voxel^2), float64."""
        return self.from_log(self.inverse_log(y_norm))

    def to_dict(self) -> dict:
        return {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "log": self.log, "k_floor": self.k_floor}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(d["names"], d["mean"], d["std"], d["log"], d.get("k_floor", 1e-6))


def write_checkpoint(folder, model: torch.nn.Module, cfg, norm: Normalizer,
                     metrics: dict, train_state: dict | None = None, kind: str = "pvae") -> Path:
    """Write a checkpoint folder atomically (a crash never leaves a half-written ``folder``);
    ``kind`` ("pvae" | "surrogate") goes into config.json beside the config's fields."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config_record(kind, cfg.to_dict()), indent=2))
        (tmp / NORM).write_text(json.dumps(norm.to_dict(), indent=2))
        (tmp / METRICS).write_text(json.dumps(json_safe(metrics), indent=2))
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_config(folder) -> PVAEConfig:
    d = read_config_dict(folder, "pvae")
    d.setdefault("padding", "zeros")  # checkpoints written before circular padding existed
    d.setdefault("texture_prior", "white")  # checkpoints written before the spectral texture prior
    return PVAEConfig.from_dict(d)


def read_train_state(folder) -> dict:
    path = Path(folder) / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; cannot resume training from {folder}")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(folder, device: str | torch.device = "cpu") -> tuple[PVAE, PVAEConfig, Normalizer]:
    """Load a checkpoint folder -> (model in eval mode on ``device``, config, normalizer). A learned
    texture prior stored in the folder (``texture_diffusion.safetensors``, bench/texture_diffusion.py)
    is attached (``decode(texture="diffusion")``)."""
    folder = Path(folder)
    cfg = read_config(folder)
    require_files(folder, what="pVAE checkpoint")
    norm = Normalizer.from_dict(json.loads((folder / NORM).read_text()))
    model = PVAE.from_config(cfg)
    state = load_file(str(folder / WEIGHTS), device="cpu")
    model.load_state_dict(state)
    model.to(device).eval()
    if (folder / DIFFUSION_WEIGHTS).is_file():
        model.attach_texture_diffusion(load_texture_diffusion(folder, device))
    return model, cfg, norm
