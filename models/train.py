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
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from core.cli import add_training_arguments, failed
from models.checkpoint import Normalizer, known_mask, read_config
from models.common import EpochTrainer, batches, fit_and_report, open_trainer, setup_optimization
from models.config import PVAEConfig, load_config, load_config_for_dataset  # noqa: F401  (load_config re-exported)
from models.layers import PatchDiscriminator
from models.losses import delivered_like, pvae_loss
from models.pvae import PVAE
from models.surrogate.augment import random_shifts, symmetry_group

TERMS = ("loss", "recon", "kl", "prop", "morph")
ADV_TERMS = ("adv", "disc")  # training only, with cfg.adversarial > 0: generator and discriminator losses


class Trainer(EpochTrainer):
    """Owns model, optimizer, scheduler, data and the epoch loop of one training run.

    Attributes
    ----------
    epoch : epochs completed
    history : one metrics dict per completed epoch
    best_val, best_epoch : lowest ``cfg.select_metric`` (default val_score) so far and its epoch
    norm : Normalizer fitted on the TRAIN subset (log10 for diagonal k, then standardized; with
        augmentation on its whole symmetry orbit, so k_xx, k_yy, k_zz share statistics)
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
        # symmetries of the square/cube that keep the property set closed (tensor columns permuted)
        self.group = symmetry_group(cfg.dims, list(cfg.properties)) if cfg.augment else []
        # the critic's extra views (critic_steps > 1): the same symmetries, built once even without augment
        self.views = self.group or (symmetry_group(cfg.dims, []) if cfg.adversarial > 0 and cfg.critic_steps > 1 else [])
        self.maps = [g.column_map(list(cfg.properties)) for g in self.group]
        orbit = self.train_set.targets
        if self.group:
            orbit = np.concatenate([g.apply_columns(orbit, list(cfg.properties)) for g in self.group])
        self.norm = Normalizer.fit(cfg.properties, orbit, cfg.k_floor)

        self.x_train, self.y_train, self.m_train = self._tensors(self.train_set)  # (N, 1, *shape) uint8, (N, P) x2
        self.x_val, self.y_val, self.m_val = self._tensors(self.val_set)

        setup_optimization(self, PVAE.from_config(cfg), cfg)
        self.disc = self.d_optimizer = None
        if cfg.adversarial > 0:  # the critic of generated structures: training state, not part of the model
            self.disc = PatchDiscriminator(cfg.dims, cfg.channels, cfg.kernel_size,
                                           cond_dim=cfg.latent_dim if cfg.critic_conditional else 0).to(self.device)
            self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=2 * cfg.lr, betas=(0.5, 0.9))
        self.loader_rng = torch.Generator().manual_seed(cfg.seed)
        self.aug_rng = torch.Generator().manual_seed(cfg.seed + 1)

        self._init_loop_state()

    # --- data ------------------------------------------------------------------------------
    def _check_dataset(self, ds) -> None:
        cfg = self.cfg
        expected = (cfg.input_size,) * cfg.dims
        if ds.dims != cfg.dims or tuple(ds.shape) != expected:
            raise ValueError(f"{self.dataset_dir / 'dataset.yaml'}: dims {ds.dims}, shape {list(ds.shape)}; "
                             f"config expects dims {cfg.dims}, input_size {cfg.input_size} "
                             f"(set input_size/dims to match)")

    def _tensors(self, ds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 volumes (N, 1, *shape), normalized targets (N, P) and the known-value mask (N, P)."""
        x = torch.from_numpy(np.ascontiguousarray(ds.volumes(), dtype=np.uint8)).unsqueeze(1)  # (N, 1, *shape)
        mask = torch.from_numpy(known_mask(self.cfg.properties, ds.targets))  # (N, P) bool
        y = torch.from_numpy(self.norm.transform(ds.targets))  # (N, P) normalized
        if not torch.isfinite(y[mask]).all():
            bad = [ds.ids[i] for i in torch.nonzero(~torch.isfinite(y).all(1) & mask.all(1)).flatten()[:3].tolist()]
            raise ValueError(f"{self.dataset_dir / 'properties.csv'}: non-finite normalized targets (samples {bad})")
        y = torch.where(mask, y, torch.zeros_like(y))
        if self.cuda and x.numel() < 2**31:  # small enough: keep the whole split on the GPU
            x, y, mask = x.to(self.device), y.to(self.device), mask.to(self.device)
        return x, y, mask

    def _to_device(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, augment: bool = False):
        """A batch on the device; with ``augment`` one random symmetry for the whole batch, the
        property columns (and their mask) permuted with it, and with ``cfg.augment_shift`` every
        sample rolled by its own random periodic shift (labels unchanged)."""
        x = x.to(self.device, non_blocking=True).float()  # (B, 1, *shape) in {0, 1}
        y, mask = y.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        if augment and self.group:
            i = int(torch.randint(len(self.group), (1,), generator=self.aug_rng))
            g, (src, sign) = self.group[i], self.maps[i]
            if not g.is_identity():
                x = g.apply_volume(x, batch_dims=2).contiguous()  # (B, 1, *shape)
                src_t = torch.as_tensor(src, device=y.device)
                # normalized columns share statistics within a permutation orbit; off-diagonals flip sign
                y = y[:, src_t] * torch.as_tensor(sign, dtype=y.dtype, device=y.device)
                mask = mask[:, src_t]
        if augment and self.cfg.augment_shift:
            x = random_shifts(x, self.aug_rng)
        if self.memory_format is not torch.preserve_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y, mask

    # --- epoch loop ------------------------------------------------------------------------
    def beta_at(self, progress: float, spatial: bool = False) -> float | None:
        """Effective beta (``spatial``: beta_spatial, None when not set) at fractional epoch
        ``progress`` (linear warm-up over beta_warmup_epochs)."""
        full = self.cfg.beta_spatial if spatial else self.cfg.beta
        w = self.cfg.beta_warmup_epochs
        return full if full is None or w <= 0 else full * min(1.0, progress / w)

    def train_epoch(self) -> dict:
        """One epoch of training then validation; returns the epoch's metrics (also in history)."""
        cfg, model = self.cfg, self.model
        t0 = time.perf_counter()
        model.train()
        sums = dict.fromkeys(TERMS + (ADV_TERMS if self.disc is not None else ()), 0.0)
        n_seen = 0
        epoch_batches = batches(len(self.x_train), cfg.batch_size, self.loader_rng)
        beta = cfg.beta
        for b, idx in enumerate(epoch_batches):
            progress = self.epoch + b / len(epoch_batches)
            beta, beta_s = self.beta_at(progress), self.beta_at(progress, spatial=True)
            x, y, m = self._to_device(*self._index(idx, self.x_train, self.y_train, self.m_train), augment=True)
            with self._autocast():
                out = model(x)
                want_gen = (cfg.gamma > 0 or self.disc is not None) and "prior_features" in out
                gen = model.generate_from(out) if want_gen else None
            terms = pvae_loss(out, x, y, beta=beta, alpha=cfg.alpha, y_mask=m, gamma=cfg.gamma, gen_logits=gen,
                              sharpness=cfg.sharpness, morph_binarize=cfg.morph_binarize, beta_spatial=beta_s)
            fake = None
            code = None
            if self.disc is not None and gen is not None:
                fake = self._delivered(gen, x)  # (B, 1, *shape) binary, gradient of the probabilities
                code = out["z"].detach().float() if cfg.critic_conditional else None  # (B, L): x's and fake's
                terms["adv"] = F.softplus(-self.disc(fake, code)).mean()  # non-saturating generator loss
                terms["loss"] = terms["loss"] + cfg.adversarial * terms["adv"]
            if not torch.isfinite(terms["loss"]):
                raise FloatingPointError(f"loss is NaN at epoch {self.epoch + 1}, batch {b + 1} "
                                         f"(recon {terms['recon'].item():.4g}, kl {terms['kl'].item():.4g}, "
                                         f"prop {terms['prop'].item():.4g}; lr {cfg.lr:g})")
            self._step(terms["loss"])
            if fake is not None:
                fake = fake.detach()
                terms["disc"] = self._disc_step(x, fake, code)
                for _ in range(cfg.critic_steps - 1):
                    terms["disc"] = self._disc_step(*self._random_view(x, fake), code)
            n = len(idx)
            n_seen += n
            for k in sums:
                sums[k] += terms[k].item() * n
        train_time = time.perf_counter() - t0
        self.fit_prior()
        train = {f"train_{k}": v / max(n_seen, 1) for k, v in sums.items()}
        return self._end_epoch(train, self.validate(), t0, n_seen, train_time, beta_eff=beta)

    @staticmethod
    def _delivered(gen_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Generated logits (B, 1, *shape) -> the structure a design delivers from them, binarized
        at the sample's porosity (straight-through gradient), (B, 1, *shape)."""
        return delivered_like(torch.sigmoid(gen_logits.float())[:, 0], x).unsqueeze(1)

    def _random_view(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Batches (B, 1, *shape) under one random symmetry of the square/cube, the same for all (the
        critic's extra steps: the same structures seen anew, no labels involved)."""
        g = self.views[int(torch.randint(len(self.views), (1,), generator=self.aug_rng))]
        return xs if g.is_identity() else tuple(g.apply_volume(x, batch_dims=2).contiguous() for x in xs)

    def _disc_step(self, real: torch.Tensor, fake: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """One step of the patch discriminator: real training structures (B, 1, *shape) against
        generated ones (detached), both with ``code`` (B, L) for a conditional critic; returns its
        loss (logistic, mean over patches)."""
        loss = F.softplus(-self.disc(real, code)).mean() + F.softplus(self.disc(fake, code)).mean()
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return loss.detach()

    def _train_state(self) -> dict:
        state = super()._train_state()
        if self.disc is not None:
            state["disc"] = self.disc.state_dict()
            state["d_optimizer"] = self.d_optimizer.state_dict()
        return state

    def _load_train_state(self, state: dict) -> None:
        super()._load_train_state(state)
        if self.disc is not None and "disc" in state:
            self.disc.load_state_dict(state["disc"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss terms on the validation split, decoded from the latent mean, at the full beta
        (so val_loss is one fixed objective across epochs, warm-up or not), and ``score`` =
        recon + prop + morph with unit weights: a figure of reconstruction, properties and
        generated structures that does not depend on beta, alpha or gamma, so that trials of a
        study with different weights can be compared (val_loss cannot: a smaller beta alone
        lowers it)."""
        self.model.eval()
        sums = dict.fromkeys(TERMS, 0.0)
        for idx in batches(len(self.x_val), self.cfg.eval_batch_size, None):
            x, y, m = self._to_device(*self._index(idx, self.x_val, self.y_val, self.m_val))
            with self._autocast():
                out = self.model(x)
            # the generation term with a fixed noise field (self.model.noise), so val_loss is deterministic
            gen = None
            if "prior_features" in out:  # measured whatever gamma is: val_score compares trials
                h, i, mu_p, logvar_p = out["prior_features"]
                eps = self.model.noise_field(len(idx), device=h.device).to(mu_p.dtype)
                gen = self.model._bottom(h, i, self.model.prior_texture(mu_p, logvar_p, eps, z=out["z"]))
            terms = pvae_loss(out, x, y, beta=self.cfg.beta, alpha=self.cfg.alpha, y_mask=m,
                              gamma=self.cfg.gamma, gen_logits=gen, sharpness=self.cfg.sharpness,
                              morph_binarize=self.cfg.morph_binarize, beta_spatial=self.cfg.beta_spatial)
            for k in TERMS:
                sums[k] += terms[k].item() * len(idx)
        val = {k: v / len(self.x_val) for k, v in sums.items()}
        val["score"] = val["recon"] + val["prop"] + val["morph"]
        return val

    @staticmethod
    def _index(idx: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
        return [t[idx.to(t.device)] for t in tensors]

    @torch.no_grad()
    def fit_prior(self) -> None:
        """Fit the Gaussian-mixture prior of the global code to the aggregate posterior (the latent
        means of the training subset) and fill the texture bank (``texture_bank`` seeded training
        structures: their codes and texture residuals, :meth:`PVAE.texture_residuals`); both are
        stored in the model, so every checkpoint carries the priors of its own weights.
        ``prior_components`` 0 keeps N(0, I); ``texture_bank`` 0 (or no spatial latent) keeps no bank."""
        model = self.model
        was = model.training
        model.eval()
        k = min(self.cfg.prior_components, len(self.x_train) // 10)
        if k >= 1:
            from sklearn.mixture import GaussianMixture

            mus = []
            for idx in batches(len(self.x_train), self.cfg.eval_batch_size, None):
                x = self._to_device(*self._index(idx, self.x_train, self.y_train, self.m_train))[0]
                with self._autocast():
                    mus.append(model.encode(x)[0].float().cpu())
            mu = torch.cat(mus).double().numpy()  # (N, L)
            gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=self.cfg.seed,
                                  max_iter=200).fit(mu)
            model.set_prior(gmm.weights_, gmm.means_, gmm.covariances_)
        n_bank = min(self.cfg.texture_bank, len(self.x_train)) if model.spatial_channels else 0
        if n_bank:
            pick = model.bank_rows(len(self.x_train), n_bank, self.cfg.seed)  # (K,) the same structures every epoch
            codes, res = [], []
            for s in range(0, n_bank, self.cfg.eval_batch_size):
                idx = pick[s:s + self.cfg.eval_batch_size]
                x = self._to_device(*self._index(idx, self.x_train, self.y_train, self.m_train))[0]
                with self._autocast():
                    c, r = model.texture_residuals(x)  # (b, L), (b, cs, s, s[, s])
                codes.append(c.float().cpu())
                res.append(r.float().cpu())
            model.set_texture_bank(torch.cat(codes), torch.cat(res))
        model.train(was)

    # --- hooks of EpochTrainer ---------------------------------------------------------------
    read_config = staticmethod(read_config)

    def _reload_tensors(self) -> None:
        # normalized with the restored stats
        self.x_train, self.y_train, self.m_train = self._tensors(self.train_set)
        self.x_val, self.y_val, self.m_val = self._tensors(self.val_set)

    def _log_line(self, m: dict) -> str:
        return (f"epoch {m['epoch']:3d}  train {m['train_loss']:.4f} (recon {m['train_recon']:.4f} "
                f"kl {m['train_kl']:.2e} prop {m['train_prop']:.4f} morph {m['train_morph']:.2e})  "
                f"val {m['val_loss']:.4f} (recon {m['val_recon']:.4f} prop {m['val_prop']:.4f} score {m['val_score']:.4f})  "
                + (f"adv {m['train_adv']:.3f} disc {m['train_disc']:.3f}  " if "train_adv" in m else "")
                + f"lr {m['lr']:.2e}  {m['train_samples_per_s']:.0f} samples/s")

    def evaluate(self, split: str = "test", out_dir=None) -> dict:
        """Metrics of the current model (the best one after fit) on ``split``; see models.evaluate."""
        from models.evaluate import evaluate
        return evaluate(self.model, self.cfg, self.norm, self.dataset_dir, split=split, out_dir=out_dir,
                        history=self.history, device=self.device)


# --- the `train` verb -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models train", description=(
        "Train a pVAE on a dataset folder; writes OUT/best and OUT/last checkpoint folders, "
        "then evaluates the best model on the test split (OUT/eval/metrics.json + PNG figures). "
        "dims, input_size and properties that the config does not set are read from the dataset "
        "(dataset.yaml, properties.csv): one config serves 2D and 3D datasets (configs/pvae_2d.yaml)."))
    add_training_arguments(p, "PVAEConfig", "latent_dim=8")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        # dims, input_size and properties the config leaves out come from the dataset (2D or 3D)
        trainer = open_trainer(Trainer, partial(load_config_for_dataset, dataset_dir=args.dataset), args)
    except (ValueError, FileNotFoundError) as exc:
        return failed("python -m models train", exc)
    from models.evaluate import format_metrics
    fit_and_report(trainer, out, None if args.no_eval else format_metrics)
    return 0
