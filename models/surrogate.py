"""Multiscale CNN permeability surrogate: volume -> porosity and log10 of the permeability tensor.

After Heider, Aldakheel and Ehlers (Applied Sciences 15(5):2589, 2025): the solver gives the ground
truth on part of a dataset, a CNN that sees the volume at several resolutions labels the rest.

Model (:class:`MultiscaleCNN`, one definition for 2D and 3D). The input (B, 1, *shape) in {0, 1} is
average-pooled into ``scales`` copies (full grid, 1/2, 1/4, ...: the coarse copies hold the local
porosity). Each copy has its own encoder of stride-2 stages [conv -> norm -> act -> conv -> norm ->
act] with CIRCULAR padding (the volumes and the solver are periodic). The global mean of every
stage's features of every branch (a feature pyramid) and the input porosity are concatenated into
an MLP head that predicts the normalized targets. Targets: log10 k for the diagonal components,
linear off-diagonals and porosity, standardized with the training statistics (the pVAE's
:class:`models.checkpoint.Normalizer`).

Training (:class:`SurrogateTrainer`) follows the pVAE loop (models/train.py): one epoch per call,
seeds, early stopping, best/last checkpoint folders (safetensors + config.json + norm.json +
metrics.json + weights-only train_state.pt). Augmentation draws one symmetry of the cube per batch
and maps volume and tensor together (models/surrogate_augment.py).

Inference: ``load_surrogate(folder).predict(ims)`` -> one dict per volume with the properties.csv
columns (porosity measured exactly on the volume; k_* in lattice units, voxel^2).

Command line: ``python -m models.surrogate train|evaluate|predict`` (see models/surrogate_cli.py).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from data_pipeline.io import K_COLUMNS
from models.common import EpochTrainer, FlatConfig, setup_optimization
from models.checkpoint import Normalizer
from models.pvae import _act, _norm
from models.surrogate_augment import TensorAugmenter, symmetry_group
from models.common import resolve_device
from models.train import _batches

NORMS = ("batch", "group", "none")
SCHEDULERS = ("cosine", "plateau", "none")
ACTIVATIONS = ("relu", "silu", "leaky_relu")
KIND = "permeability-surrogate"  # written into metrics.json so a folder says what it holds


# ================================================================================================
# config
# ================================================================================================
@dataclass
class SurrogateConfig(FlatConfig):
    """Configuration of one surrogate training run (flat; every field a plain value).

    Model
        dims (2 | 3), input_size (edge of the cubic/square input, voxels; divisible by
        2**(scales-1)), components (target columns of properties.csv: "porosity" and k_* ; None =
        porosity + the full tensor of ``dims``), scales (input resolutions: full grid and
        scales-1 average-pooled copies), channels (one entry per stride-2 stage of each branch; a
        coarse branch stops when its grid reaches 1 voxel), kernel_size, norm, activation,
        dropout (before the head), head_depth (hidden layers of the head, 0 = linear),
        head_width, k_floor (k below it, lattice units, is clamped before log10: non-percolating
        samples have k = 0).
    Optimisation
        AdamW (lr, weight_decay), scheduler, min_lr_ratio, grad_clip, early stopping after
        ``patience`` epochs without val_loss improving by more than min_delta; loss = MSE of the
        normalized targets.
    Data
        augment (one random symmetry of the square/cube per batch, tensor mapped with it),
        dataset_size (seeded nested subset of the TRAIN split; None = all), seed, split_seed,
        split_fractions (the same split as the pVAE's for a given split_seed).
    Runtime
        device ("auto" = CUDA when available), num_threads, amp / channels_last (CUDA only),
        eval_batch_size, tta (evaluate with the prediction averaged over the symmetry group).
    """

    # model
    dims: int = 3
    input_size: int = 32
    components: list[str] | None = None
    scales: int = 3
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    kernel_size: int = 3
    norm: str = "batch"
    activation: str = "silu"
    dropout: float = 0.0
    head_depth: int = 1
    head_width: int = 128
    k_floor: float = 1e-6
    # optimisation
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    epochs: int = 40
    scheduler: str = "cosine"
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    patience: int = 8
    min_delta: float = 0.0
    # data
    augment: bool = True
    dataset_size: int | None = None
    seed: int = 0
    split_seed: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    # runtime
    device: str = "auto"
    num_threads: int | None = None
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 64
    tta: bool = False

    def __post_init__(self) -> None:
        if self.components is None:
            self.components = ["porosity"] + list(K_COLUMNS.get(int(self.dims), []))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        def bad(name, why):
            raise ValueError(f"config field {name!r} = {getattr(self, name)!r}: {why}")

        if self.dims not in (2, 3):
            bad("dims", "must be 2 or 3")
        allowed = ["porosity"] + K_COLUMNS[self.dims]
        if not self.components:
            bad("components", "must name at least one target column")
        for c in self.components:
            if c not in allowed:
                bad("components", f"unknown column {c!r} for dims {self.dims}; allowed: {allowed}")
        if len(set(self.components)) != len(self.components):
            bad("components", "has duplicates")
        if self.scales < 1:
            bad("scales", "must be >= 1")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            bad("channels", "must be a non-empty list of positive channel counts")
        step = 2 ** (self.scales - 1)
        if self.input_size % step or self.input_size // step < 2:
            bad("input_size", f"must be divisible by 2**(scales-1) = {step} with a coarsest grid of >= 2 voxels")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            bad("kernel_size", "must be a positive odd number")
        for name, allowed_values in (("norm", NORMS), ("activation", ACTIVATIONS), ("scheduler", SCHEDULERS)):
            if getattr(self, name) not in allowed_values:
                bad(name, f"must be one of {allowed_values}")
        if not 0 <= self.dropout < 1:
            bad("dropout", "must be in [0, 1)")
        for name in ("head_width", "batch_size", "eval_batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be >= 1")
        if self.head_depth < 0:
            bad("head_depth", "must be >= 0")
        for name in ("weight_decay", "grad_clip", "k_floor", "min_delta", "min_lr_ratio"):
            if float(getattr(self, name)) < 0:
                bad(name, "must be >= 0")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if self.dataset_size is not None and self.dataset_size < 1:
            bad("dataset_size", "must be >= 1 or None")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            bad("device", "must be 'auto', 'cpu' or 'cuda[:N]'")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6:
            bad("split_fractions", "must be three fractions summing to 1")


def load_surrogate_config(path=None, **overrides) -> SurrogateConfig:
    """Flat YAML/JSON config file + keyword overrides -> SurrogateConfig (unknown keys name the file)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must be a flat mapping of key: value")
    data.update(overrides)
    try:
        return SurrogateConfig.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path or '<overrides>'}: {exc}") from None


# ================================================================================================
# model
# ================================================================================================
class _Branch(nn.Module):
    """Stride-2 stages on one resolution; returns the global mean of every stage's output."""

    def __init__(self, dims: int, size: int, channels: list[int], kernel_size: int, norm: str, activation: str):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        pad = kernel_size // 2
        n_stages = max(1, min(len(channels), int(math.floor(math.log2(size)))))  # stop at a 1-voxel grid
        self.stages = nn.ModuleList()
        c_in = 1
        for c in channels[:n_stages]:
            self.stages.append(nn.Sequential(
                conv(c_in, c, kernel_size, stride=2, padding=pad, padding_mode="circular", bias=norm == "none"),
                _norm(norm, dims, c), _act(activation),
                conv(c, c, kernel_size, stride=1, padding=pad, padding_mode="circular", bias=norm == "none"),
                _norm(norm, dims, c), _act(activation)))
            c_in = c
        self.out_features = sum(channels[:n_stages])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)  # (B, C_i, *shape / 2^(i+1))
            feats.append(x.flatten(2).mean(2))  # (B, C_i)
        return torch.cat(feats, dim=1)  # (B, sum C_i)


class MultiscaleCNN(nn.Module):
    """Multiscale CNN regressor: (B, 1, *shape) in {0, 1} -> (B, n_outputs) normalized targets.

    Parameters
    ----------
    dims : 2 or 3
    input_size : edge of the cubic/square input (voxels), divisible by 2**(scales-1)
    n_outputs : number of targets
    scales : number of input resolutions (full grid, then average-pooled by 2, 4, ...)
    channels : channels of the stride-2 stages of each branch
    kernel_size, norm, activation, dropout, head_depth, head_width : see SurrogateConfig
    """

    def __init__(self, dims: int = 3, input_size: int = 32, n_outputs: int = 7, scales: int = 3,
                 channels=(16, 32, 64), kernel_size: int = 3, norm: str = "batch", activation: str = "silu",
                 dropout: float = 0.0, head_depth: int = 1, head_width: int = 128):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        self.dims, self.input_size, self.scales = dims, int(input_size), int(scales)
        channels = [int(c) for c in channels]
        self.branches = nn.ModuleList(
            _Branch(dims, self.input_size // 2 ** s, channels, kernel_size, norm, activation) for s in range(scales))
        n_feat = sum(b.out_features for b in self.branches) + 1  # + input porosity
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        width = n_feat
        for _ in range(head_depth):
            layers += [nn.Linear(width, head_width), _act(activation)]
            width = head_width
        layers.append(nn.Linear(width, n_outputs))
        self.head = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, cfg: SurrogateConfig) -> "MultiscaleCNN":
        return cls(cfg.dims, cfg.input_size, len(cfg.components), cfg.scales, cfg.channels, cfg.kernel_size,
                   cfg.norm, cfg.activation, cfg.dropout, cfg.head_depth, cfg.head_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.input_size,) * self.dims
        if x.ndim != self.dims + 2 or tuple(x.shape[2:]) != expected or x.shape[1] != 1:
            raise ValueError(f"expected input (B, 1, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        pool = F.avg_pool3d if self.dims == 3 else F.avg_pool2d
        feats = [x.flatten(1).mean(1, keepdim=True)]  # (B, 1) porosity
        for s, branch in enumerate(self.branches):
            xs = pool(x, 2 ** s) if s else x  # (B, 1, *shape / 2^s) local porosity
            feats.append(branch(xs))
        return self.head(torch.cat(feats, dim=1))  # (B, n_outputs)


# ================================================================================================
# inference
# ================================================================================================
class Surrogate:
    """A trained surrogate ready to label volumes (model in eval mode, config, normalizer)."""

    def __init__(self, model: MultiscaleCNN, cfg: SurrogateConfig, norm: Normalizer, device="cpu",
                 folder: str | None = None):
        self.model, self.cfg, self.norm = model, cfg, norm
        self.device = torch.device(device)
        self.folder = folder
        self.components = list(cfg.components)

    @torch.no_grad()
    def predict_log(self, ims: np.ndarray, batch_size: int | None = None, tta: bool = False) -> np.ndarray:
        """(N, *shape) bool volumes -> (N, P) targets in log space (log10 k on the diagonal), float64.

        tta : average over the symmetry group (each prediction mapped back by the inverse symmetry).
        """
        x_all = self._check(ims)
        bs = batch_size or self.cfg.eval_batch_size
        group = symmetry_group(self.cfg.dims, self.components) if tta else None
        out = np.empty((len(x_all), len(self.components)))
        for s in range(0, len(x_all), bs):
            x = torch.from_numpy(x_all[s:s + bs]).to(self.device).float().unsqueeze(1)  # (B, 1, *shape)
            if group is None:
                out[s:s + bs] = self.norm.inverse_log(self.model(x).float().cpu().numpy())
                continue
            acc = np.zeros((len(x), len(self.components)))
            for g in group:
                y = self.norm.inverse_log(self.model(g.apply_volume(x, batch_dims=2).contiguous()).float().cpu().numpy())
                acc += g.inverse().apply_columns(y, self.components)
            out[s:s + bs] = acc / len(group)
        return out

    def predict(self, ims: np.ndarray, batch_size: int | None = None, tta: bool = False) -> list[dict]:
        """Label volumes: (N, *shape) bool (True = pore), or one volume of ``shape``.

        Returns
        -------
        list of dict, one per volume: ``porosity`` (measured exactly on the volume, fraction) and every
        predicted k_* component (lattice units, voxel^2); ``pred_porosity`` when porosity is a target.
        """
        x = self._check(ims)
        y = self.norm.from_log(self.predict_log(x, batch_size, tta))  # (N, P) raw units
        phi = x.reshape(len(x), -1).mean(axis=1, dtype=np.float64)
        rows = []
        for i in range(len(x)):
            row = {"porosity": float(phi[i])}
            for j, name in enumerate(self.components):
                row["pred_porosity" if name == "porosity" else name] = float(y[i, j])
            rows.append(row)
        return rows

    def _check(self, ims) -> np.ndarray:
        x = np.asarray(ims)
        shape = (self.cfg.input_size,) * self.cfg.dims
        if x.ndim == self.cfg.dims:
            x = x[None]
        if x.ndim != self.cfg.dims + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"surrogate {self.folder or ''} takes volumes of shape {shape} (one or a batch "
                             f"(N, {', '.join(map(str, shape))})), got {x.shape}")
        return np.ascontiguousarray(x != 0, dtype=np.uint8)


def read_surrogate_config(folder) -> SurrogateConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {folder} is not a surrogate checkpoint folder")
    data = json.loads(path.read_text())
    if "latent_dim" in data:
        raise ValueError(f"{folder} is a pVAE checkpoint, not a permeability surrogate")
    return SurrogateConfig.from_dict(data)


def load_surrogate(folder, device: str = "cpu") -> Surrogate:
    """Load a surrogate checkpoint folder (weights-only: safetensors + JSON) -> Surrogate in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_surrogate_config(folder)
    for name in ("model.safetensors", "norm.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing; incomplete surrogate checkpoint")
    norm = Normalizer.from_dict(json.loads((folder / "norm.json").read_text()))
    model = MultiscaleCNN.from_config(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    dev = resolve_device(device)
    model.to(dev).eval()
    return Surrogate(model, cfg, norm, dev, str(folder))


# ================================================================================================
# training
# ================================================================================================
def fit_normalizer(cfg: SurrogateConfig, y_raw: np.ndarray) -> Normalizer:
    """Normalizer of the training targets; with augmentation, of their whole symmetry orbit, so that
    e.g. k_xx and k_yy share statistics (the network sees them exchanged anyway)."""
    if cfg.augment:
        group = symmetry_group(cfg.dims, cfg.components)
        y_raw = np.concatenate([g.apply_columns(y_raw, cfg.components) for g in group])
    return Normalizer.fit(cfg.components, y_raw, cfg.k_floor)


class SurrogateTrainer(EpochTrainer):
    """Owns model, optimizer, scheduler, data and the epoch loop of one surrogate training run.

    Same shape as models.train.Trainer (one epoch per ``train_epoch`` call, checkpoint folders), so
    the Ray Tune driver can run it. Attributes: epoch, history, best_val, best_epoch, norm.
    """

    def __init__(self, cfg: SurrogateConfig | dict, dataset_dir):
        from data_pipeline.dataset import VoxelDataset, dataset_hash

        cfg = self._init_runtime(SurrogateConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg, dataset_dir)

        # ground truth only: rows labeled by a surrogate (mixed builds) never train a surrogate
        common = dict(properties=cfg.components, fractions=tuple(cfg.split_fractions), split_seed=cfg.split_seed,
                      exclude_labelers=("surrogate",))
        self.train_set = VoxelDataset(self.dataset_dir, "train", dataset_size=cfg.dataset_size,
                                      subset_seed=cfg.seed, **common)
        self.val_set = VoxelDataset(self.dataset_dir, "val", **common)
        expected = (cfg.input_size,) * cfg.dims
        if self.train_set.dims != cfg.dims or tuple(self.train_set.shape) != expected:
            raise ValueError(f"{self.dataset_dir / 'dataset.yaml'}: dims {self.train_set.dims}, shape "
                             f"{list(self.train_set.shape)}; config expects dims {cfg.dims}, input_size "
                             f"{cfg.input_size} (set input_size/dims to match)")
        if len(self.train_set) < 2 or len(self.val_set) < 1:
            raise ValueError(f"{self.dataset_dir}: need >= 2 training and >= 1 validation samples, "
                             f"got {len(self.train_set)} and {len(self.val_set)}")
        self.dataset_hash = dataset_hash(self.dataset_dir)
        self.norm = fit_normalizer(cfg, self.train_set.targets)
        self._load_tensors()

        setup_optimization(self, MultiscaleCNN.from_config(cfg), cfg)
        self.loader_rng = torch.Generator().manual_seed(cfg.seed)
        self.augmenter = TensorAugmenter(cfg.dims, cfg.components, seed=cfg.seed + 1) if cfg.augment else None

        self._init_loop_state()

    # --- data ------------------------------------------------------------------------------
    def _load_tensors(self) -> None:
        def tensors(ds):
            x = torch.from_numpy(np.ascontiguousarray(ds.volumes(), dtype=np.uint8)).unsqueeze(1)  # (N, 1, *shape)
            y = torch.from_numpy(self.norm.to_log(ds.targets).astype(np.float32))  # (N, P) log space
            if not torch.isfinite(y).all():
                raise ValueError(f"{self.dataset_dir / 'properties.csv'}: non-finite targets in split {ds.ids[:3]}...")
            if self.cuda and x.numel() < 2**31:  # small enough: keep the whole split on the GPU
                x, y = x.to(self.device), y.to(self.device)
            return x, y

        self.x_train, self.y_train = tensors(self.train_set)
        self.x_val, self.y_val = tensors(self.val_set)
        self._mean = torch.as_tensor(self.norm.mean, dtype=torch.float32, device=self.device)
        self._std = torch.as_tensor(self.norm.std, dtype=torch.float32, device=self.device)

    def _prepare(self, x: torch.Tensor, y_log: torch.Tensor, augment: bool):
        """uint8 volumes + log-space targets -> float inputs and normalized targets on the device."""
        x = x.to(self.device, non_blocking=True).float()  # (B, 1, *shape)
        y_log = y_log.to(self.device, non_blocking=True)
        if augment and self.augmenter is not None:
            x, y_log = self.augmenter(x, y_log)
        if self.memory_format is not torch.preserve_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, (y_log - self._mean) / self._std  # (B, P) normalized

    # --- epoch loop ------------------------------------------------------------------------
    def train_epoch(self) -> dict:
        """One epoch of training then validation; returns the epoch's metrics (also in history)."""
        cfg, model = self.cfg, self.model
        t0 = time.perf_counter()
        model.train()
        total, n_seen = 0.0, 0
        for b, idx in enumerate(_batches(len(self.x_train), cfg.batch_size, self.loader_rng)):
            idx = idx.to(self.x_train.device)
            x, y = self._prepare(self.x_train[idx], self.y_train[idx], augment=True)
            with self._autocast():
                pred = model(x)
            loss = F.mse_loss(pred.float(), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is NaN at epoch {self.epoch + 1}, batch {b + 1} (lr {cfg.lr:g})")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.item() * len(idx)
            n_seen += len(idx)
        train_time = time.perf_counter() - t0
        val = self.validate()
        lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val["loss"])
        elif self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        metrics = {"epoch": self.epoch, "train_loss": total / max(n_seen, 1)}
        metrics.update({f"val_{k}": v for k, v in val.items()})
        metrics.update({"lr": lr, "train_samples_per_s": n_seen / max(train_time, 1e-9),
                        "epoch_time_s": time.perf_counter() - t0})
        self._update_best(metrics["val_loss"])
        metrics["best_val"] = self.best_val
        self.history.append(metrics)
        return metrics

    @torch.no_grad()
    def validate(self) -> dict:
        """MSE of the normalized targets on the validation split (total and per component)."""
        self.model.eval()
        sq = torch.zeros(len(self.cfg.components), device=self.device)
        for idx in _batches(len(self.x_val), self.cfg.eval_batch_size, None):
            idx = idx.to(self.x_val.device)
            x, y = self._prepare(self.x_val[idx], self.y_val[idx], augment=False)
            with self._autocast():
                pred = self.model(x)
            sq += ((pred.float() - y) ** 2).sum(0)
        per = (sq / len(self.x_val)).cpu().numpy()
        out = {"loss": float(per.mean())}
        out.update({f"mse_{name}": float(v) for name, v in zip(self.cfg.components, per)})
        return out

    # --- hooks of EpochTrainer ---------------------------------------------------------------
    KIND = KIND  # the module constant: metrics.json says what the folder holds
    read_config = staticmethod(read_surrogate_config)

    def _reload_tensors(self) -> None:
        self._load_tensors()  # normalized with the restored statistics

    def _train_state(self) -> dict:
        state = super()._train_state()
        if self.augmenter is not None:
            state["augment_rng"] = self.augmenter.rng.get_state()
        return state

    def _load_train_state(self, state: dict) -> None:
        super()._load_train_state(state)
        if self.augmenter is not None and "augment_rng" in state:
            self.augmenter.rng.set_state(state["augment_rng"])

    def _log_line(self, m: dict) -> str:
        return (f"epoch {m['epoch']:3d}  train {m['train_loss']:.4f}  val {m['val_loss']:.4f}  "
                f"lr {m['lr']:.2e}  {m['train_samples_per_s']:.0f} samples/s")

    def surrogate(self) -> Surrogate:
        """The current model wrapped for inference (shares the weights; switches it to eval mode)."""
        self.model.eval()
        return Surrogate(self.model, self.cfg, self.norm, self.device)

    def evaluate(self, split: str = "test", out_dir=None) -> dict:
        """Metrics of the current model (the best one after fit) on ``split``; see models.surrogate_cli."""
        from models.surrogate_cli import evaluate_surrogate
        was_training = self.model.training
        try:
            return evaluate_surrogate(self.surrogate(), self.dataset_dir, split=split, out_dir=out_dir,
                                      history=self.history, tta=self.cfg.tta)
        finally:
            self.model.train(was_training)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.surrogate train|evaluate|predict ...`` (see models/surrogate_cli.py)."""
    from models.surrogate_cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
