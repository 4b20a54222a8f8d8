"""Evaluation of a trained pVAE (reconstruction, properties, generation) and the `evaluate` verb.

Units: porosity as a fraction; permeability metrics in log10 of lattice units (log10 voxel^2),
the space in which the model learns it. S2 is the two-point correlation of the pore phase
(periodic, via FFT), averaged over the axis directions, for lags r = 0 .. S//2 voxels.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from core.cli import add_checkpoint_arguments, failed
from core.io import json_safe as _json_safe
from core.properties import is_diagonal, is_k_component
from models import plots
from models.binarize import binarize_at, binarize_expected, porosity_thresholds  # noqa: F401  (re-exported)
from models.checkpoint import Normalizer
from models.latent import slerp
from models.losses import two_point_s2  # noqa: F401  (re-exported)


def r2_score(true: np.ndarray, pred: np.ndarray) -> float:
    ss_res = float(np.sum((true - pred) ** 2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def volume_properties(model, x: torch.Tensor, n_shifts: int = 0, first: torch.Tensor | None = None,
                      norm: Normalizer | None = None, names: list[str] | None = None) -> torch.Tensor:
    """Normalized properties (B, P) of volumes x (B, 1, *shape): :meth:`PVAE.predict_volumes` (the
    mean over x and ``n_shifts`` periodic shifts), and with ``norm`` and ``names`` also over the
    symmetry group of the square / cube that keeps ``names`` closed (8 in 2D, 48 in 3D): each
    element's prediction mapped back by its inverse (k_xx and k_yy swapped for a transpose), averaged
    in evaluation units (log10 k on the diagonal). ``first``: the prediction for x itself."""
    if norm is None:
        return model.predict_volumes(x, n_shifts, first=first)
    from models.surrogate.augment import symmetry_group  # the surrogate's group: one definition

    acc = 0.0
    group = symmetry_group(x.ndim - 2, list(names))
    for g in group:
        xg = x if g.is_identity() else g.apply_volume(x, batch_dims=2).contiguous()
        p = model.predict_volumes(xg, n_shifts, first=first if g.is_identity() else None)
        acc = acc + g.inverse().apply_columns(norm.inverse_log(p.detach().float().cpu().numpy()), list(names))
    return torch.from_numpy(norm.transform(norm.from_log(acc / len(group))).astype(np.float32)).to(x.device)


@torch.no_grad()
def _encode_all(model, x_all: torch.Tensor, batch_size: int, device, porosity_of=None, n_shifts: int = 0,
                norm: Normalizer | None = None, names: list[str] | None = None):
    """Per-sample reconstruction metrics, latent means and property predictions of (N, 1, *shape)
    uint8 volumes.

    ``porosity_of``: normalized properties (B, P) -> the porosity (B,) at which a reconstruction is
    binarized (the regressor's for the code, see :func:`code_porosity`); None: its expected porosity.
    ``props`` is the regressor on the code, ``props_volume`` the volume's prediction averaged over
    ``n_shifts`` periodic shifts too, and over the symmetries when ``norm`` and ``names`` are given
    (:func:`volume_properties`; = props for 0 shifts without symmetries)."""
    out = {k: [] for k in ("bce", "acc", "iou", "phi_true", "phi_rec", "s2_dist", "mu", "props", "props_volume")}
    examples = None
    for start in range(0, len(x_all), batch_size):
        x = x_all[start:start + batch_size].to(device).float()  # (B, 1, *shape)
        out_b = model(x)  # eval mode: posterior means of both latent levels
        mu, logits = out_b["mu"], out_b["logits"].float()  # (B, L), (B, 1, *shape)
        dims = tuple(range(1, x.ndim))
        out["bce"].append(F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(dims))
        # binarized at the porosity of its code, as prior samples are (and designs at their target)
        prob = torch.sigmoid(logits[:, 0])  # (B, *shape)
        pred = binarize_expected(prob) if porosity_of is None else binarize_at(prob, porosity_of(out_b["props"]))
        true = x[:, 0] > 0.5  # (B, *shape) bool
        sdims = tuple(range(1, pred.ndim))
        out["acc"].append((pred == true).float().mean(sdims))
        inter, union = (pred & true).sum(sdims).float(), (pred | true).sum(sdims).float()
        out["iou"].append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)))
        out["phi_true"].append(true.float().mean(sdims))
        out["phi_rec"].append(pred.float().mean(sdims))
        s2_t, s2_r = two_point_s2(true), two_point_s2(pred)  # (B, R)
        out["s2_dist"].append(torch.sqrt(((s2_t - s2_r) ** 2).mean(1)))
        out["mu"].append(mu.float())
        out["props"].append(out_b["props"].float())
        out["props_volume"].append(volume_properties(model, x, n_shifts, out_b["props"], norm, names).float())
        if examples is None:
            examples = (true[:4].cpu().numpy(), torch.sigmoid(logits[:4, 0]).cpu().numpy(), pred[:4].cpu().numpy())
    return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}, examples


@torch.no_grad()
def decode_prior(model, n: int, seed: int, batch_size: int, device) -> tuple[np.ndarray, np.ndarray]:
    """n structures from the model's prior: global codes from its stored prior (the mixture fitted
    to the aggregate posterior), one independent spatial noise field each.

    Returns the pore probabilities (n, *shape) and the normalized properties the regressor
    predicts for each code (n, P)."""
    g = torch.Generator().manual_seed(seed)
    z = model.sample_prior(n, generator=g).cpu()  # (n, L)
    vols, props = [], []
    for s in range(0, n, batch_size):
        zb = z[s:s + batch_size].to(device)
        noise = g if getattr(model, "spatial_channels", 0) else None
        vols.append(torch.sigmoid(model.decode(zb, noise=noise).float())[:, 0].cpu())
        props.append(model.predict_properties(zb).float().cpu())
    return torch.cat(vols).numpy(), torch.cat(props).numpy()


def code_porosity(norm: Normalizer, names: list[str]):
    """A function: normalized properties (B, P) -> the porosity (B,) float32 tensor the regressor
    predicts, or None when porosity is not a regressed property."""
    if "porosity" not in names:
        return None
    j = names.index("porosity")

    def porosity_of(props_norm) -> torch.Tensor:
        y = props_norm.detach().float().cpu().numpy() if torch.is_tensor(props_norm) else props_norm
        return torch.from_numpy(np.ascontiguousarray(norm.inverse(y)[:, j], dtype=np.float32))
    return porosity_of


def s2_nearest(s2_a: torch.Tensor, s2_b: torch.Tensor) -> np.ndarray:
    """Per row of s2_a (n, R): RMS distance over lags to the nearest row of s2_b (m, R); (n,)."""
    d = torch.cdist(s2_a.double(), s2_b.double()) / np.sqrt(s2_a.shape[1])  # (n, m) RMS distances
    return d.min(1).values.numpy()


def evaluate(model, cfg, norm: Normalizer, dataset_dir, split: str = "test", out_dir=None,
             history: list[dict] | None = None, device=None, train_samples: int = 256,
             morphology: bool = True) -> dict:
    """Metrics of ``model`` on ``split`` of ``dataset_dir``; PNG figures under ``out_dir`` when given.

    Returns a flat dict:
      recon_bce (nats/voxel); of reconstructions binarized at the porosity the regressor predicts
      for their code (:func:`binarize_at`; without a porosity property at their expected porosity,
      :func:`binarize_expected`): voxel_accuracy, pore_iou,
      porosity_error (mean |phi_rec - phi|),
      porosity_bias (mean phi_rec - phi), s2_distance (RMS over lags of S2_rec - S2, mean over samples);
      r2_<p>, mae_<p> per property in evaluation units (porosity; log10 k for diagonal k), r2_mean (over the labels,
      not the learned ``cfg.descriptors``),
      of the volume's prediction averaged over ``cfg.predict_shifts`` periodic shifts
      (:meth:`PVAE.predict_volumes`) and, with ``cfg.predict_symmetries``, over the symmetries of the
      square / cube (:func:`volume_properties`), and r2_<p>_single (one pass) when either is on;
      predict_shifts; predict_symmetries;
      n_zero_<k_ii>: test samples with k_ii = 0 (not percolating along i), left out of that k's R^2/MAE;
      gen_porosity_mean/std vs train_porosity_mean/std of prior samples, binarized at the porosity
      the regressor predicts for their code (:func:`binarize_at`; at their expected porosity, the mean
      of their probabilities, when porosity is not a property), gen_porosity_wasserstein and
      gen_porosity_wasserstein_expected (the same with :func:`binarize_expected`), gen_contrast (1 - 4 mean p (1 - p) of their probabilities:
      1 for decisive maps, 0 for p = 0.5 everywhere), gen_s2_distance (RMS between the mean S2
      curves of decoded prior samples and of the training subset), gen_porosity_wasserstein,
      gen_s2_nearest (median over prior samples of the RMS S2 distance to the nearest training
      structure), gen_texture ("bank" when the model decodes with its texture bank, else "prior");
      with ``morphology``: gen_<descriptor>_ratio (median over prior samples / median
      over the training subset) for specific_surface, chord_length, euler_density;
      n_samples, split; "figures": list of PNG paths (when out_dir is given).
    """
    from data_pipeline.dataset import VoxelDataset

    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    fractions = tuple(cfg.split_fractions)
    ds = VoxelDataset(dataset_dir, split, cfg.properties, fractions=fractions, split_seed=cfg.split_seed)
    if len(ds) == 0:
        raise ValueError(f"{dataset_dir}: split {split!r} is empty")
    x_all = torch.from_numpy(np.ascontiguousarray(ds.volumes(), dtype=np.uint8)).unsqueeze(1)  # (N, 1, *shape)
    porosity_of = code_porosity(norm, cfg.properties)
    sym = (norm, cfg.properties) if cfg.predict_symmetries else (None, None)
    per, examples = _encode_all(model, x_all, cfg.eval_batch_size, device, porosity_of, cfg.predict_shifts, *sym)

    metrics: dict = {"split": split, "n_samples": len(ds),
                     "recon_bce": float(per["bce"].mean()), "voxel_accuracy": float(per["acc"].mean()),
                     "pore_iou": float(per["iou"].mean()),
                     "porosity_error": float(np.abs(per["phi_rec"] - per["phi_true"]).mean()),
                     "porosity_bias": float((per["phi_rec"] - per["phi_true"]).mean()),
                     "s2_distance": float(per["s2_dist"].mean())}

    true_log = norm.to_log(ds.targets)  # (N, P) evaluation units
    pred_log = norm.inverse_log(per["props_volume"])  # (N, P)
    single_log = norm.inverse_log(per["props"])  # (N, P) one pass, no shifts
    metrics["predict_shifts"] = int(cfg.predict_shifts)
    metrics["predict_symmetries"] = bool(cfg.predict_symmetries)
    r2 = {}
    scored = np.ones(true_log.shape, dtype=bool)  # (N, P) the entries each R^2 is taken over
    for j, name in enumerate(cfg.properties):
        keep = scored[:, j]
        if is_diagonal(name):
            # k = 0 (no percolating path along the axis) has no log10: scored apart, not floored in
            keep = scored[:, j] = ds.targets[:, j] > 0
            metrics[f"n_zero_{name}"] = int((~keep).sum())
        r2[name] = r2_score(true_log[keep, j], pred_log[keep, j])
        metrics[f"r2_{name}"] = r2[name]
        metrics[f"mae_{name}"] = float(np.abs(true_log[keep, j] - pred_log[keep, j]).mean())
        if cfg.predict_shifts or cfg.predict_symmetries:
            metrics[f"r2_{name}_single"] = r2_score(true_log[keep, j], single_log[keep, j])
    # the mean over the labels: learned descriptors (cfg.descriptors) are reported, not averaged in
    metrics["r2_mean"] = float(np.nanmean([r2[p] for p in cfg.labels]))

    # generation: decoded prior samples vs the training subset the model saw
    # its volumes only: the labels, so that no descriptor of cfg.descriptors is measured again here
    train = VoxelDataset(dataset_dir, "train", cfg.labels, fractions=fractions, split_seed=cfg.split_seed,
                         dataset_size=cfg.dataset_size, subset_seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pick = np.sort(rng.choice(len(train), size=min(train_samples, len(train)), replace=False))
    train_vols = torch.from_numpy(np.asarray(train.volumes()[pick]))  # (n, *shape) bool
    gen, gen_props = decode_prior(model, cfg.n_generate, cfg.seed, cfg.eval_batch_size, device)
    gen_t = torch.from_numpy(gen)
    gen_expected = binarize_expected(gen_t)
    # the code sets the porosity (the regressor reads it off the code), the decoder the arrangement:
    # a prior sample is binarized at the porosity predicted for its code, as a design is at its target
    gen_bin = gen_expected if porosity_of is None else binarize_at(gen_t, porosity_of(gen_props))
    phi_train = train_vols.float().mean(tuple(range(1, train_vols.ndim))).numpy()
    phi_gen = gen_bin.float().mean(tuple(range(1, gen_bin.ndim))).numpy()
    s2_train_all, s2_gen_all = two_point_s2(train_vols), two_point_s2(gen_bin)  # (n, R), (m, R)
    s2_train, s2_gen = s2_train_all.mean(0), s2_gen_all.mean(0)
    metrics.update({"gen_texture": "bank" if getattr(model, "uses_bank", False) else "prior",
                    "gen_porosity_mean": float(phi_gen.mean()), "gen_porosity_std": float(phi_gen.std()),
                    "gen_contrast": float(1.0 - 4.0 * (gen_t * (1 - gen_t)).mean()),
                    "train_porosity_mean": float(phi_train.mean()), "train_porosity_std": float(phi_train.std()),
                    "gen_porosity_wasserstein": _wasserstein_1d(phi_gen, phi_train),
                    "gen_porosity_wasserstein_expected": _wasserstein_1d(
                        gen_expected.float().mean(tuple(range(1, gen_expected.ndim))).numpy(), phi_train),
                    "gen_s2_distance": float(torch.sqrt(((s2_gen - s2_train) ** 2).mean())),
                    "gen_s2_nearest": float(np.median(s2_nearest(s2_gen_all, s2_train_all)))})
    if morphology:
        # specific surface, chord length, Euler density of prior samples vs the training subset
        from data_pipeline import morphology as mo
        cmp = mo.compare_sets(mo.describe_set(gen_bin.numpy()), mo.describe_set(train_vols.numpy()))
        metrics.update({f"gen_{k}_ratio": cmp[f"{k}_ratio"] for k in mo.SCALARS if k != "porosity"})

    if out_dir is not None:
        out_dir = Path(out_dir)
        figs = [plots.plot_reconstruction(out_dir / "reconstruction.png", examples[0], examples[1], ds.ids[:4],
                                          binary=examples[2]),
                plots.plot_parity(out_dir / "parity.png", true_log, pred_log, cfg.properties, r2, scored)]
        colours = {"porosity": true_log[:, cfg.properties.index("porosity")]} if "porosity" in cfg.properties else {}
        k_diag = [p for p in cfg.properties if norm.log[cfg.properties.index(p)]]
        if k_diag:
            colours[f"log10 {k_diag[0]}"] = true_log[:, cfg.properties.index(k_diag[0])]
        if not colours:
            colours[cfg.properties[0]] = true_log[:, 0]
        figs.append(plots.plot_latent(out_dir / "latent.png", per["mu"], colours))
        if len(ds) >= 2:
            # the two test samples farthest apart in the first property: a path with visible change
            a, b = int(np.argmin(true_log[:, 0])), int(np.argmax(true_log[:, 0]))
            t = np.linspace(0, 1, 8)
            path = torch.as_tensor(slerp(per["mu"][a], per["mu"][b], t), dtype=torch.float32)  # (T, L)
            with torch.no_grad():
                probs = torch.sigmoid(model.decode(path.to(device)).float())[:, 0].cpu()  # (T, *shape)
                props_norm = model.predict_properties(path.to(device)).float().cpu().numpy()
                props = norm.inverse_log(props_norm)
            # binarized as prior samples are: at the porosity predicted along the path
            vols = binarize_expected(probs) if porosity_of is None else binarize_at(probs, porosity_of(props_norm))
            vols = vols.float().numpy()
            figs.append(plots.plot_interpolation(out_dir / "interpolation.png", vols, t, props, cfg.properties))
        figs.append(plots.plot_generated(out_dir / "generated.png", gen_bin.numpy(), phi_train, phi_gen,
                                         train_vols[:8].numpy(), s2_train.numpy(), s2_gen.numpy(),
                                         probabilities=gen, texture=metrics["gen_texture"]))
        if history:
            figs.append(plots.plot_loss_curves(out_dir / "loss_curves.png", history))
        metrics["figures"] = figs
        from data_pipeline.io import atomic_path
        with atomic_path(out_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(_json_safe(metrics), indent=2))
    if was_training:
        model.train()
    return metrics


def _wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance
    return float(wasserstein_distance(a, b))


def format_metrics(m: dict) -> str:
    """A short human-readable table of the main metrics."""
    lines = [f"{m['split']} split, {m['n_samples']} samples",
             f"  reconstruction: BCE {m['recon_bce']:.4f} nats/voxel, voxel accuracy {m['voxel_accuracy']:.4f}, "
             f"pore IoU {m['pore_iou']:.4f}, |porosity error| {m['porosity_error']:.4f}, "
             f"S2 distance {m['s2_distance']:.4f}"]
    props = [k[3:] for k in m if k.startswith("r2_") and k != "r2_mean" and not k.endswith("_single")]
    if m.get("predict_shifts") or m.get("predict_symmetries"):
        over = [f"{m['predict_shifts']} periodic shifts"] if m.get("predict_shifts") else []
        over += ["the symmetries of the square / cube"] if m.get("predict_symmetries") else []
        lines.append(f"  properties of each test volume: mean over it and {' and '.join(over)} (one pass in brackets)")
    for p in props:
        unit = " (log10 lattice units)" if is_k_component(p) else ""
        zero = f"  ({m['n_zero_' + p]} with k = 0 left out)" if m.get("n_zero_" + p) else ""
        single = f" ({m['r2_' + p + '_single']:.4f})" if "r2_" + p + "_single" in m else ""
        lines.append(f"  {p:<9} R2 {m['r2_' + p]:.4f}{single}  MAE {m['mae_' + p]:.4f}{unit}{zero}")
    texture = {"bank": "texture of the nearest stored training code", "prior": "Gaussian prior texture"}
    lines.append(f"  generation ({texture.get(m.get('gen_texture'), 'Gaussian prior texture')}): "
                 f"porosity {m['gen_porosity_mean']:.3f} +- {m['gen_porosity_std']:.3f} "
                 f"(train {m['train_porosity_mean']:.3f} +- {m['train_porosity_std']:.3f}), "
                 f"S2 distance of mean curves {m['gen_s2_distance']:.4f}, porosity Wasserstein "
                 f"{m['gen_porosity_wasserstein']:.4f}, S2 distance to the nearest training sample "
                 f"(median) {m['gen_s2_nearest']:.4f}, contrast {m['gen_contrast']:.2f} (prior samples "
                 f"binarized at the porosity of their code; at their expected porosity: Wasserstein "
                 f"{m.get('gen_porosity_wasserstein_expected', float('nan')):.4f})")
    if "gen_specific_surface_ratio" in m:
        lines.append("  generated / training (medians): " + ", ".join(
            f"{k} {m[f'gen_{k}_ratio']:.2f}x" for k in ("specific_surface", "chord_length", "euler_density")))
    if m.get("figures"):
        lines.append(f"  figures: {', '.join(m['figures'])}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models evaluate", description=(
        "Evaluate a pVAE checkpoint: reconstruction (BCE, accuracy, pore IoU, porosity error, S2), "
        "properties (R2, MAE; log10 k), generation statistics; writes metrics.json and PNG figures."))
    add_checkpoint_arguments(p, "test")
    p.add_argument("--out", help="folder for metrics.json and the figures (default CHECKPOINT/../eval-SPLIT)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--predict-shifts", type=int, help="periodic shifts averaged into each volume's properties "
                                                      "(default: the checkpoint's predict_shifts)")
    p.add_argument("--predict-symmetries", choices=["on", "off"],
                   help="average over the symmetries of the square / cube too (default: the checkpoint's)")
    return p


def main(argv: list[str] | None = None) -> int:
    from models.checkpoint import load_model, read_metrics

    args = build_parser().parse_args(argv)
    ckpt = Path(args.checkpoint)
    try:
        model, cfg, norm = load_model(ckpt, device=args.device)
        if args.predict_shifts is not None:
            cfg.predict_shifts = args.predict_shifts
        if args.predict_symmetries:
            cfg.predict_symmetries = args.predict_symmetries == "on"
        cfg.validate()
        out = Path(args.out) if args.out else ckpt.parent / f"eval-{args.split}"
        metrics = evaluate(model, cfg, norm, args.dataset, split=args.split, out_dir=out,
                           history=read_metrics(ckpt).get("history"), device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        return failed("python -m models evaluate", exc)
    print(json.dumps(_json_safe(metrics)) if args.json else format_metrics(metrics))
    return 0
