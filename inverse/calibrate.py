"""Solver-labeled *delivered* structures: the data that makes a surrogate decoder-aware.

Measured on the 16^3 blob model (bench/RESULTS.md): a surrogate trained only on the dataset's
samples underestimates the permeability of decoded-binarized-cleaned structures about as much as
the regressor does (~2x), because the decoder's smoother, coarser pores are outside what it saw.
``python -m inverse calibrate`` fixes the data, not the model:

1. take latents the search will visit: the training latents (the pVAE's own train split) and
   uniform points of the search box (``--n`` in all, half and half, seeded);
2. deliver each exactly as the design does (decode, threshold rule "target", clean), the porosity
   goal being the latent's regressor-predicted porosity plus a seeded jitter (+-``--jitter``),
   clipped to the training label range;
3. label them with the LBM solver (the dataset's solver settings unless ``--solver-tol``);
4. write a dataset folder (the README's "On-disk dataset" layout) holding the pVAE's TRAIN-split samples
   (copied, so the held-out targets stay unseen) and the labeled delivered structures
   (``dec_NNNN``), plus ``delivered.csv`` (latent, goal, kind of each).

Then train the surrogate on it (``python -m models.surrogate train --dataset OUT ...``) and pass it
to the design (``--surrogate OUT_MODEL/best --property-model surrogate``).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.cli import failed
from core.properties import K_COLUMNS, component_index


def delivered_latents(space, mu_train: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """(n, L) latents: up to n/2 training latents (seeded choice), the rest uniform in the box."""
    rng = np.random.default_rng(seed)
    n_tr = min(len(mu_train), n // 2)
    pick = rng.choice(len(mu_train), n_tr, replace=False) if n_tr else np.zeros(0, int)
    z_box = space.lo + rng.random((n - n_tr, space.dim)) * (space.hi - space.lo)  # (n - n_tr, L)
    z = np.concatenate([space.clip(mu_train[pick]), z_box])
    return z, ["train"] * n_tr + ["box"] * (n - n_tr)


def calibrate(model_ref: str, out: str | Path, dataset: str | None = None, n: int = 256, jitter: float = 0.03,
              solver: dict | None = None, seed: int = 0, device: str = "cpu", log=print) -> Path:
    """Write the labeled dataset of delivered structures (see module doc); returns its folder."""
    from data_pipeline.io import read_properties, write_properties, write_volume, write_yaml
    from data_pipeline.permeability import permeability_batch
    from inverse.delivered import Delivery, decode_probabilities
    from inverse.model_source import load_bundle
    from inverse.objective import latent_space
    from inverse.postprocess import binarize_clean

    out = Path(out)
    bundle = load_bundle(model_ref, dataset, device=device)
    meta = dict(bundle.meta)
    solver = {**(meta.get("solver") or {}), **(solver or {})}
    space = latent_space(bundle.mu_train)
    z, kinds = delivered_latents(space, bundle.mu_train, n, seed)
    rng = np.random.default_rng(seed + 1)
    props = bundle.properties
    reg = Delivery(bundle.model, bundle.norm, None).regressor_raw(z)  # (n, P)
    phi_pred = reg[:, props.index("porosity")] if "porosity" in props else None
    y_phi = bundle.y_train[:, props.index("porosity")] if "porosity" in props else None
    probs = decode_probabilities(bundle.model, z)  # (n, *shape)
    ims, goals = [], []
    for i, prob in enumerate(probs):
        base = float(phi_pred[i]) if phi_pred is not None else float(prob.mean())
        goal = base + float(rng.uniform(-jitter, jitter))
        if y_phi is not None:
            goal = float(np.clip(goal, y_phi.min(), y_phi.max()))
        im, _, _ = binarize_clean(prob, "target", goal)
        ims.append(im)
        goals.append(goal)
    t0 = time.perf_counter()
    from data_pipeline.permeability import _DEFAULTS
    solver = {k: v for k, v in solver.items() if k in _DEFAULTS}  # dataset.yaml may hold non-solver notes
    res = permeability_batch(ims, **solver)
    log(f"labeled {len(ims)} delivered structures with the LBM in {time.perf_counter() - t0:.0f} s")

    if out.exists():
        shutil.rmtree(out)
    (out / "volumes").mkdir(parents=True)
    src = read_properties(bundle.dataset).set_index("sample_id")
    rows = []
    for sid in bundle.ids_train:  # the pVAE's training split only: held-out targets stay unseen
        shutil.copyfile(bundle.dataset / "volumes" / f"{sid}.tif", out / "volumes" / f"{sid}.tif")
        rows.append({"sample_id": sid, **src.loc[sid].to_dict()})
    dims = int(bundle.cfg.dims)
    extra = []
    for i, (im, r) in enumerate(zip(ims, res)):
        sid = f"dec_{i:04d}"
        write_volume(out / "volumes" / f"{sid}.tif", im)
        k = np.asarray(r.k)
        row = {"sample_id": sid, "porosity": float(r.porosity)}
        for c in K_COLUMNS[dims]:
            row[c] = float(k[component_index(c)])
        row.update(steps=int(r.steps), converged=bool(r.converged), residual=float(r.residual),
                   max_mach=float(r.max_mach), labeler="lbm", status="ok" if r.converged else "failed",
                   error="" if r.converged else "not converged")
        rows.append(row)
        extra.append({"sample_id": sid, "kind": kinds[i], "porosity_goal": goals[i],
                      **{f"regz_{p}": float(v) for p, v in zip(props, reg[i])},
                      **{f"z{d}": float(v) for d, v in enumerate(z[i])}})
    write_properties(out, pd.DataFrame(rows))
    pd.DataFrame(extra).to_csv(out / "delivered.csv", index=False, float_format="%.8g")
    write_yaml(out / "dataset.yaml", {**{k: v for k, v in meta.items() if k in ("dims", "shape", "voxel_size", "pore")},
                                      "solver": solver,
                                      "made_by": {"command": "python -m inverse calibrate", "model": str(model_ref),
                                                  "source_dataset": str(bundle.dataset), "n_delivered": len(ims),
                                                  "jitter": jitter, "seed": seed}})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inverse calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="pVAE checkpoint folder or MLflow model URI")
    p.add_argument("--dataset", help="dataset the model was trained on (default: recorded in the checkpoint)")
    p.add_argument("--out", required=True, help="output dataset folder (replaced)")
    p.add_argument("--n", type=int, default=256, help="delivered structures to label")
    p.add_argument("--jitter", type=float, default=0.03, help="porosity-goal jitter around the predicted porosity")
    p.add_argument("--solver-tol", type=float, help="LBM tolerance (default: the dataset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from inverse.model_source import ModelSourceError

    try:
        out = calibrate(args.model, args.out, args.dataset, args.n, args.jitter,
                        {"tol": args.solver_tol} if args.solver_tol else None, args.seed, args.device)
    except (ModelSourceError, FileNotFoundError, ValueError) as exc:
        return failed("python -m inverse calibrate: error", exc)
    print(f"dataset of delivered structures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
