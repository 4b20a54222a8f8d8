"""Three predictors of log10 k on the same held-out 2D images, alone and averaged (issue 16).

Is the 2D log10 k R^2 at 120 images bounded by the pVAE or by the images? Scores, on every
percolating image of a held-out dataset, (a) pVAE checkpoints (as ``models evaluate`` does: the
checkpoint's periodic shifts / symmetries), (b) surrogate checkpoints (``models surrogate evaluate
--tta`` writes their ``predictions_log.csv``), (c) the descriptor ridge of ``bench/descriptor_ridge.py``
fitted on the training split of the pVAE's dataset, and the means of their predictions. The i-th
pVAE is paired with the i-th surrogate.

    python bench/heldout_predictors_2d.py --train runs/lc2d/data120 --heldout runs/lc2d/dataheldout \
        --pvae runs/lc2d/p120_s{0,1,2}/best --surrogate runs/lc2d/s120_s{0,1,2}/eval-heldout/predictions_log.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def pvae_predictions(folder, heldout) -> tuple[dict, list[str]]:
    """{sample_id: {property: log10 prediction}} of a pVAE checkpoint on every image of ``heldout``."""
    import torch

    from data_pipeline.dataset import VoxelDataset
    from models.checkpoint import load_model
    from models.evaluate import _encode_all, code_porosity

    model, cfg, norm = load_model(folder)
    model.eval()
    ds = VoxelDataset(heldout, "all", cfg.properties, fractions=tuple(cfg.split_fractions), split_seed=cfg.split_seed)
    x = torch.from_numpy(np.ascontiguousarray(ds.volumes(), dtype=np.uint8)).unsqueeze(1)  # (N, 1, H, W)
    sym = (norm, cfg.properties) if cfg.predict_symmetries else (None, None)
    with torch.no_grad():
        per, _ = _encode_all(model, x, cfg.eval_batch_size, "cpu", code_porosity(norm, cfg.properties),
                             cfg.predict_shifts, *sym)
    pred = norm.inverse_log(per["props_volume"])  # (N, P) evaluation units
    return {i: dict(zip(cfg.properties, row)) for i, row in zip(ds.ids, pred)}, cfg


def main(argv=None) -> int:
    import pandas as pd
    import torch
    from sklearn.metrics import r2_score

    from core.properties import diagonal_columns
    from data_pipeline.dataset import VoxelDataset
    from data_pipeline.io import read_dataset_meta
    from data_pipeline.morphology import LEARNABLE
    from descriptor_ridge import descriptor_ridge, percolating_xy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True, help="the pVAE's training dataset (the ridge is fitted on its train split)")
    ap.add_argument("--heldout", required=True, help="labeled held-out dataset, scored whole")
    ap.add_argument("--pvae", nargs="+", required=True, help="pVAE checkpoint folders")
    ap.add_argument("--surrogate", nargs="+", required=True, help="predictions_log.csv of surrogates on --heldout")
    args = ap.parse_args(argv)
    if len(args.pvae) != len(args.surrogate):
        ap.error("give as many --surrogate files as --pvae folders (paired in order)")
    torch.set_num_threads(1)
    names = ["porosity", *LEARNABLE]
    print(f"{'pair':>4} {'axis':5} {'n':>4} {'pvae':>6} {'surr':>6} {'ridge':>6} {'p+s':>6} {'p+r':>6} {'all3':>6}")
    for i, (pv_dir, sg_csv) in enumerate(zip(args.pvae, args.surrogate)):
        pv, cfg = pvae_predictions(pv_dir, args.heldout)
        sg = pd.read_csv(sg_csv).set_index("sample_id")
        for k in diagonal_columns(int(read_dataset_meta(args.heldout)["dims"])):
            xtr, ytr = percolating_xy(args.train, "train", k, fractions=cfg.split_fractions, split_seed=cfg.split_seed)
            dh = VoxelDataset(args.heldout, "all", names + [k])
            keep = dh.targets[:, -1] > 0  # percolating along k's axis
            y = np.log10(dh.targets[keep, -1])
            ids = np.asarray(dh.ids)[keep]
            r = descriptor_ridge().fit(xtr, ytr).predict(dh.targets[keep, :-1].astype(np.float64))
            p = np.array([pv[j][k] for j in ids])
            s = sg.loc[ids, f"pred_{k}"].to_numpy()
            row = [r2_score(y, v) for v in (p, s, r, (p + s) / 2, (p + r) / 2, (p + s + r) / 3)]
            print(f"{i:>4} {k:5} {len(y):>4} " + " ".join(f"{v:6.3f}" for v in row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
