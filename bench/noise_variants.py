"""Texture variants of inverse design (issue 14): the figures behind DesignConfig.noise_variants.

``spread``: k_xx of one global code's structures over noise fields of the spatial latent (8 training
codes x 8 fields, each binarized at its sample's porosity, LBM at tol 1e-3 along x): how far a
variant's k strays from its code's, i.e. why a variant is judged by the solver before it becomes a
candidate. ``candidates``: of a design run's results.csv, per method: candidates that are variants,
their hits, and the pairwise minority-phase IoU of each target's candidates.

    python bench/noise_variants.py spread runs/bench32/pvae/best
    python bench/noise_variants.py candidates runs/bench32/inv_eval_var/design/eval/seed0
    python bench/noise_variants.py correct runs/bench32b/pvae/best

``correct``: can a variant that misses be brought back by moving its global code? For training codes
(rows drawn with seed 1, not those of ``spread``), the target is k_xx of the code's own structure
(noise 0); each variant (noise 1..) is solved, then moved by one Gauss-Newton step of the regressor
(dz = g dp / |g|^2, g the gradient of its normalized log10 k_xx, dp = normalized k* - k_variant) and
solved again with the same noise field: relative k error before and after, and the IoU of the moved
structure with its variant (does the step keep the texture?).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spread(model: str, n_codes: int = 8, n_fields: int = 8, seed: int = 0) -> None:
    from data_pipeline.permeability import permeability
    from inverse.delivered import decode_probabilities
    from inverse.evaluation import phase_iou
    from inverse.model_source import load_bundle
    from inverse.postprocess import binarize_clean

    def kozeny_carman_slope(phi):  # d ln k / d porosity of k ~ phi^3 / (1 - phi)^2
        return 3 / phi + 2 / (1 - phi)

    b = load_bundle(model)
    rows = np.random.default_rng(seed).choice(len(b.mu_train), n_codes, replace=False)
    pi = b.properties.index("porosity")
    cvs = []
    for r in rows:
        phi = float(b.y_train[r, pi])
        ims = [binarize_clean(decode_probabilities(b.model, b.mu_train[r:r + 1], s)[0], "target", phi)[0]
               for s in range(n_fields)]
        ks = np.array([permeability(im, tol=1e-3, axes=[0]).k[0, 0] for im in ims])
        iou = [phase_iou(ims[i], ims[j]) for i in range(n_fields) for j in range(i + 1, n_fields)]
        cvs.append(ks.std() / ks.mean())
        print(f"sample {b.ids_train[r]}: porosity {phi:.2f}  k_xx over {n_fields} fields: mean {ks.mean():.3f} "
              f"CV {cvs[-1]:.2f} [{ks.min():.3f}, {ks.max():.3f}]  minority-phase IoU median {np.median(iou):.2f}",
              flush=True)
    print(f"CV of k_xx over noise fields: {min(cvs):.2f}-{max(cvs):.2f} (median {np.median(cvs):.2f})")


def correct(model: str, n_codes: int = 8, n_fields: int = 4, seed: int = 1, max_dphi: float = 0.01) -> None:
    import torch

    from data_pipeline.permeability import permeability
    from inverse.delivered import decode_probabilities
    from inverse.evaluation import phase_iou
    from inverse.model_source import load_bundle
    from inverse.postprocess import binarize_clean

    def kozeny_carman_slope(phi):  # d ln k / d porosity of k ~ phi^3 / (1 - phi)^2
        return 3 / phi + 2 / (1 - phi)

    b = load_bundle(model)
    rows = np.random.default_rng(seed).choice(len(b.mu_train), n_codes, replace=False)
    pi, kj = b.properties.index("porosity"), b.properties.index("k_xx")

    def k_of(z, s, phi):
        im = binarize_clean(decode_probabilities(b.model, z[None], s)[0], "target", float(phi))[0]
        return permeability(im, tol=1e-3, axes=[0]).k[0, 0], im

    def norm_k(k):  # raw k_xx -> the regressor's normalized column
        row = b.norm.inverse(np.zeros((1, len(b.properties))))
        row[0, kj] = k
        return float(b.norm.transform(row)[0, kj])

    before, after, ious, shifted = [], [], [], []
    for r in rows:
        z = np.asarray(b.mu_train[r], dtype=np.float64)
        phi = float(b.y_train[r, pi])
        k0, _ = k_of(z, 0, phi)
        zt = torch.tensor(z[None], dtype=torch.float32, requires_grad=True)
        b.model.predict_properties(zt)[0, kj].backward()
        g = zt.grad[0].double().numpy()  # (L,) d normalized log10 k_xx / dz
        for s in range(1, n_fields + 1):
            ks, im_s = k_of(z, s, phi)
            dz = g * (norm_k(k0) - norm_k(ks)) / float(g @ g)
            k1, im_1 = k_of(z + dz, s, phi)
            dphi = np.clip(-np.log(ks / k0) / kozeny_carman_slope(phi), -max_dphi, max_dphi)
            k2, _ = k_of(z, s, phi + dphi)
            shifted.append(abs(k2 / k0 - 1))
            before.append(abs(ks / k0 - 1))
            after.append(abs(k1 / k0 - 1))
            ious.append(phase_iou(im_s, im_1))
            print(f"sample {b.ids_train[r]} noise {s}: k* {k0:.3f}  variant {ks:.3f} ({ks / k0 - 1:+.0%})  "
                  f"moved {k1:.3f} ({k1 / k0 - 1:+.0%})  |dz| {np.linalg.norm(dz):.2f}  IoU to variant {ious[-1]:.2f}  "
                  f"porosity {dphi:+.3f}: {k2:.3f} ({k2 / k0 - 1:+.0%})",
                  flush=True)
    before, after, shifted = np.array(before), np.array(after), np.array(shifted)
    print(f"relative k error, median: variant {np.median(before):.1%} -> moved {np.median(after):.1%}; "
          f"within 10%: {np.mean(before <= 0.1):.0%} -> {np.mean(after <= 0.1):.0%} of {len(before)}; "
          f"IoU moved-to-variant median {np.median(ious):.2f}")
    print(f"porosity shifted (|dphi| <= {max_dphi}): median {np.median(shifted):.1%}, "
          f"within 10%: {np.mean(shifted <= 0.1):.0%}")


def candidates(design_dir: str) -> None:
    import pandas as pd

    from data_pipeline.io import read_volume
    from inverse.evaluation import phase_iou

    d = Path(design_dir)
    res = pd.read_csv(d / "results.csv")
    for m, x in res.groupby("method"):
        var = x[x["noise_seed"] > 0]
        ious = []
        for _, g in x.groupby("target_id"):
            ims = [read_volume(d / f) for f in g["tif"]]
            ious += [phase_iou(ims[i], ims[j]) for i in range(len(ims)) for j in range(i + 1, len(ims))]
        ious = np.array(ious)
        print(f"{m}: {len(x)} candidates, {len(var)} texture variants ({int(var['hit'].sum())} hits), "
              f"{len(x) - len(var)} search structures ({int(x[x['noise_seed'] == 0]['hit'].sum())} hits); "
              f"pairwise minority-phase IoU median {np.median(ious):.2f}, {np.mean(ious <= 0.5):.0%} <= 0.5")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("spread").add_argument("model", help="pVAE checkpoint folder")
    sub.add_parser("candidates").add_argument("design_dir", help="a design output folder (results.csv, candidates/)")
    sub.add_parser("correct").add_argument("model", help="pVAE checkpoint folder")
    args = p.parse_args(argv)
    {"spread": lambda: spread(args.model), "candidates": lambda: candidates(args.design_dir),
     "correct": lambda: correct(args.model)}[args.cmd]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
