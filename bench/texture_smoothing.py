"""Is the correlation length of the texture latent's noise a design knob? Measured, not adopted
(bench/RESULTS.md "Smoothed texture noise as a design knob").

A design is a global code z plus the noise field eps of the spatial latent (``PVAE.decode(z,
noise=eps)``). Here eps is low-passed (periodic Gaussian, ``sigma`` in cells of the latent grid)
and brought back to unit variance per channel, then decoded for the best latent of each listed
target of a design run (results.csv: candidate 0), binarized at that candidate's verified porosity
(a threshold only, no cleaning: the decoder's structure as it is, not a delivered design) and solved by the LBM solver along the target's first permeability axis. Per sigma: k, the specific
surface over the training median at that porosity (``ss_ratio_train``, the estimator of the
designs' band), the RMS S2 distance to the nearest training structure and the minority-phase IoU between the structures of different noise seeds
(distinct: <= 0.5).

    python bench/texture_smoothing.py --model runs/img2d/pvae/best --dataset runs/img2d/data \
        --results runs/img2d/design/results.csv --targets t0 --sigmas 0,0.3,0.5,0.7,0.9 --seeds 1-6
    python bench/texture_smoothing.py --model runs/bench32/pvae14sp/best --dataset runs/bench32/data \
        --results runs/exp14/dev_nodiv/design/dev/seed0/results.csv --targets dev_ood_004,dev_ood_001 \
        --sigmas 0,0.5,1 --seeds 1-3 --tol 1e-3
    python bench/texture_smoothing.py --model runs/img2d/pvae/best --dataset runs/img2d/data \
        --train-samples img_042,img_062,img_074,img_102 --porosity 0.736 --sigmas 0 --seeds 0-7
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def smoothed_noise(model, seed: int, sigma: float):
    """The model's noise field of seed ``seed`` (``PVAE.noise_field``, (1, cs, s, s[, s])) low-passed by
    a periodic Gaussian of ``sigma`` latent cells, each channel back at mean 0 and variance 1 (sigma 0:
    unchanged)."""
    import torch
    from scipy.ndimage import gaussian_filter

    eps = model.noise_field(1, int(seed)).cpu().numpy()
    if sigma > 0:
        axes = tuple(range(2, 2 + model.dims))
        eps = gaussian_filter(eps, (0, 0) + (sigma,) * model.dims, mode="wrap")
        eps = (eps - eps.mean(axis=axes, keepdims=True)) / eps.std(axis=axes, keepdims=True)
    return torch.as_tensor(eps, dtype=torch.float32)


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True, help="the model's dataset (training structures for the band)")
    p.add_argument("--results", help="results.csv of a design run (z columns, verified porosity)")
    p.add_argument("--targets", help="comma-separated target ids of that run")
    p.add_argument("--train-samples", help="instead of --results/--targets: comma-separated training sample ids, "
                   "their latent means decoded at --porosity (does the global code carry their texture scale?)")
    p.add_argument("--porosity", type=float, help="with --train-samples: the porosity to binarize at")
    p.add_argument("--axis", default="k_xx", help="with --train-samples: the permeability to solve for")
    p.add_argument("--sigmas", default="0,0.5,1", help="Gaussian sigmas in latent cells (comma-separated)")
    p.add_argument("--seeds", default="1-3", help="noise seeds: 'a-b' or comma-separated")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="texture temperature: z_s = mu_p + T sigma_p eps (PVAE.decode; 1 = the prior)")
    p.add_argument("--tol", type=float, default=1e-4, help="solver tolerance")
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--figure", help="PNG: the structures of the first target, one row per sigma (mid-slices in 3D)")
    args = p.parse_args(argv)

    import pandas as pd
    import torch

    from inverse.delivered import solver_properties
    from inverse.evaluation import phase_iou
    from inverse.model_source import load_bundle
    from inverse.morphology_check import TRAIN_PREFIX, MorphologyReference

    torch.set_num_threads(1)
    bundle = load_bundle(args.model, args.dataset)
    model, names = bundle.model.eval(), list(bundle.norm.names)
    ref = MorphologyReference(bundle.dataset, bundle.ids_train)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    seeds = seeds_arg(args.seeds)
    if args.train_samples:
        if args.porosity is None:
            p.error("--train-samples needs --porosity")
        labels = pd.read_csv(Path(bundle.dataset) / "properties.csv", dtype={"sample_id": str}).set_index("sample_id")
        cases = []
        for sid in args.train_samples.split(","):
            i = bundle.ids_train.index(sid)
            own = ref.columns(ref.sample(TRAIN_PREFIX + sid)[0])
            cases.append((sid, bundle.mu_train[i], args.porosity, args.axis,
                          f"training sample, {args.axis} {labels.loc[sid, args.axis]:.4g} at porosity "
                          f"{labels.loc[sid, 'porosity']:.4f}, ss_ratio_train {own['ss_ratio_train']:.2f}, "
                          f"anisotropy {own['anisotropy']:.2f}; its latent mean decoded"))
    else:
        res = pd.read_csv(args.results)
        cases = []
        for tid in args.targets.split(","):
            row = res[(res.target_id == tid) & (res.candidate == 0)].iloc[0]
            axis = next((c for c in names if c.startswith("k_") and c in str(row.target)), "k_xx")
            cases.append((tid, row[[f"z{i}" for i in range(model.latent_dim)]].to_numpy(np.float64),
                          float(row.verified_porosity), axis,
                          f"{row.target}; verified {axis} of candidate 0: {row[f'verified_{axis}']:.4g} "
                          f"(noise seed {int(row.noise_seed)})"))
    rows = []  # (sigma, structures) of the first target, for --figure
    for n_target, (tid, z, phi, axis, what) in enumerate(cases):
        z = torch.as_tensor(np.asarray(z, np.float32)[None])  # (1, L)
        print(f"== {tid}: {what}; binarized at porosity {phi:.4f}, solved for {axis}")
        for sigma in sigmas:
            t0 = time.perf_counter()
            ims = []
            for seed in seeds:
                with torch.no_grad():
                    prob = torch.sigmoid(model.decode(z, noise=smoothed_noise(model, seed, sigma),
                                                      temperature=args.temperature))[0, 0].numpy()
                ims.append(prob > np.quantile(prob, 1.0 - phi))  # (*shape) bool at the candidate's porosity
            raw, _ = solver_properties(names, np.array(ims), [axis], {"tol": args.tol, "max_steps": args.max_steps},
                                       np.zeros((len(ims), len(names))))
            k = raw[:, names.index(axis)]
            ratio = np.array([ref.ss_ratio(im) for im in ims])
            s2 = np.array([ref.columns(im)["s2_nearest_train"] for im in ims])
            iou = [phase_iou(a, b) for a, b in itertools.combinations(ims, 2)]
            best_in = k[(ratio >= 0.75) & (ratio <= 1.33)]
            if n_target == 0:
                rows.append((sigma, ims, k, ratio))
            print(f"sigma {sigma:4.2f}: {axis} median {np.median(k):.3g} max {k.max():.3g}, in the 0.75-1.33 band "
                  f"max {best_in.max() if best_in.size else float('nan'):.3g} ({best_in.size} of {len(k)}); "
                  f"ss_ratio_train median {np.median(ratio):.2f} ({ratio.min():.2f}-{ratio.max():.2f}); "
                  f"S2 distance to the nearest training structure median {np.median(s2):.3f} (max {s2.max():.3f}); "
                  f"IoU between seeds median {np.median(iou):.2f}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    if args.figure:
        draw(args.figure, rows, cases[0][0], seeds)
    return 0


def draw(path: str, rows: list, target: str, seeds: list[int]) -> None:
    """One row per sigma: the structure of each noise seed (white = pore), its k and ss_ratio_train."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(seeds), figsize=(1.9 * len(seeds), 2.5 * len(rows)), squeeze=False)
    for r, (sigma, ims, k, ratio) in enumerate(rows):
        for c, im in enumerate(ims):
            ax = axes[r, c]
            ax.imshow(im if im.ndim == 2 else im[im.shape[0] // 2], cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"sigma {sigma:g}, seed {seeds[c]}\nk {k[c]:.3g}, surface {ratio[c]:.2f}x", fontsize=7)
    fig.suptitle(f"{target}: the best latent decoded with low-passed texture noise (white = pore)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
