"""Texture variants of inverse design (issue 14): the figures behind DesignConfig.noise_variants.

``spread``: k_xx of one global code's structures over noise fields of the spatial latent (8 training
codes x 8 fields, each binarized at its sample's porosity, LBM at tol 1e-3 along x): how far a
variant's k strays from its code's, i.e. why a variant is judged by the solver before it becomes a
candidate. ``candidates``: of a design run's results.csv, per method: candidates that are variants,
their hits, and the pairwise minority-phase IoU of each target's candidates.

    python bench/noise_variants.py spread runs/bench32/pvae/best
    python bench/noise_variants.py candidates runs/bench32/inv_eval_var/design/eval/seed0
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
    args = p.parse_args(argv)
    spread(args.model) if args.cmd == "spread" else candidates(args.design_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
