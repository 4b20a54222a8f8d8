"""Training of the surrogate: :class:`SurrogateTrainer`, the pVAE loop's shape (models/common.py)."""
from __future__ import annotations

import time

import numpy as np
import torch

from models.checkpoint import Normalizer, known_mask
from models.common import EpochTrainer, batches, setup_optimization
from models.surrogate.augment import TensorAugmenter, symmetry_group
from models.surrogate.config import SurrogateConfig
from models.surrogate.net import MultiscaleCNN
from models.surrogate.predict import Surrogate, read_surrogate_config

KIND = "permeability-surrogate"  # written into metrics.json so a folder says what it holds


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
        self.augmenter = (TensorAugmenter(cfg.dims, cfg.components, seed=cfg.seed + 1, symmetries=cfg.augment,
                                          shifts=cfg.augment_shift) if cfg.augment or cfg.augment_shift else None)

        self._init_loop_state()

    # --- data ------------------------------------------------------------------------------
    def _load_tensors(self) -> None:
        def tensors(ds):
            x = torch.from_numpy(np.ascontiguousarray(ds.volumes(), dtype=np.uint8)).unsqueeze(1)  # (N, 1, *shape)
            y = self.norm.to_log(ds.targets)  # (N, P) log space
            known = known_mask(self.cfg.components, ds.targets)  # (N, P) False: k_ii = 0 (not percolating)
            if not np.isfinite(y[known]).all():
                bad = [ds.ids[i] for i in np.flatnonzero(~np.isfinite(np.where(known, y, 0.0)).all(1))[:3]]
                raise ValueError(f"{self.dataset_dir / 'properties.csv'}: non-finite targets (samples {bad})")
            # k = 0 along an axis is a percolation class, not a number: NaN here, left out of the loss
            # (the symmetries permute it with its column); predict() sets it from the topology
            y = torch.from_numpy(np.where(known, y, np.nan).astype(np.float32))
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
        for b, idx in enumerate(batches(len(self.x_train), cfg.batch_size, self.loader_rng)):
            idx = idx.to(self.x_train.device)
            x, y = self._prepare(self.x_train[idx], self.y_train[idx], augment=True)
            with self._autocast():
                pred = model(x)
            known = torch.isfinite(y)  # (B, P); a batch of only blocked k entries gives a zero loss
            loss = torch.where(known, (pred.float() - y.nan_to_num()) ** 2, 0.0).sum() / known.sum().clamp(min=1)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is NaN at epoch {self.epoch + 1}, batch {b + 1} (lr {cfg.lr:g})")
            self._step(loss)
            total += loss.item() * len(idx)
            n_seen += len(idx)
        train_time = time.perf_counter() - t0
        return self._end_epoch({"train_loss": total / max(n_seen, 1)}, self.validate(), t0, n_seen, train_time)

    @torch.no_grad()
    def validate(self) -> dict:
        """MSE of the normalized targets on the validation split (total and per component)."""
        self.model.eval()
        sq = torch.zeros(len(self.cfg.components), device=self.device)
        count = torch.zeros(len(self.cfg.components), device=self.device)
        for idx in batches(len(self.x_val), self.cfg.eval_batch_size, None):
            idx = idx.to(self.x_val.device)
            x, y = self._prepare(self.x_val[idx], self.y_val[idx], augment=False)
            with self._autocast():
                pred = self.model(x)
            known = torch.isfinite(y)  # (B, P): k_ii = 0 is not scored
            sq += torch.where(known, (pred.float() - y) ** 2, 0.0).sum(0)
            count += known.sum(0)
        per = (sq / count.clamp(min=1)).cpu().numpy()
        out = {"loss": float(per.mean())}
        out.update({f"mse_{name}": float(v) for name, v in zip(self.cfg.components, per)})
        return out

    # --- hooks of EpochTrainer ---------------------------------------------------------------
    KIND = KIND  # the module constant: metrics.json says what the folder holds
    CHECKPOINT_KIND = "surrogate"
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
        """Metrics of the current model (the best one after fit) on ``split``; see models.surrogate.evaluate."""
        from models.surrogate.evaluate import evaluate_surrogate
        was_training = self.model.training
        try:
            return evaluate_surrogate(self.surrogate(), self.dataset_dir, split=split, out_dir=out_dir,
                                      history=self.history, tta=self.cfg.tta)
        finally:
            self.model.train(was_training)
