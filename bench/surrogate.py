"""Benchmark of the permeability surrogate: labeling throughput against the solver, and accuracy.

    # labeling throughput (volumes/s) at 32^3, surrogate (untrained weights: speed does not depend on
    # them) against the LBM solver, on synthetic blobs volumes, both measured in this one run:
    # each rate is timed --repeats times (median and slowest reported), speedup = ratio of the medians
    python bench/surrogate.py throughput --size 32 --n 256 --n-solver 4 --repeats 3 --json

    # accuracy on a solver-labeled dataset folder: train (or --checkpoint) and score the test split;
    # with --pvae-checkpoint, the pVAE regressor scored on the SAME split with the same metrics
    python bench/surrogate.py accuracy --dataset runs/data32 --config configs/surrogate_32.yaml \
        --out runs/surrogate32 --pvae-checkpoint runs/pvae32/best --json

Run it alone: on 2 shared cores any other CPU-heavy process changes the numbers several-fold.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.properties import is_diagonal  # noqa: E402


def _volumes(n: int, size: int, dims: int, seed: int) -> np.ndarray:
    from data_pipeline.synth import generate
    rng = np.random.default_rng(seed)
    return np.stack([generate("blobs", (size,) * dims, seed=int(s), porosity=float(p))
                     for s, p in zip(rng.integers(1 << 31, size=n), rng.uniform(0.45, 0.8, size=n))])


def throughput(args) -> dict:
    from models.surrogate import MultiscaleCNN, Surrogate, SurrogateConfig, load_surrogate
    from models.checkpoint import Normalizer

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        sur = load_surrogate(args.checkpoint, device=args.device)
        size, dims = sur.cfg.input_size, sur.cfg.dims
    else:
        size, dims = args.size, args.dims
        cfg = SurrogateConfig.from_dict({**_load_yaml(args.config), "dims": dims, "input_size": size})
        norm = Normalizer(cfg.components, np.zeros(len(cfg.components)), np.ones(len(cfg.components)),
                          [is_diagonal(c) for c in cfg.components])
        model = MultiscaleCNN.from_config(cfg).to(args.device).eval()
        sur = Surrogate(model, cfg, norm, args.device)
    ims = _volumes(args.n, size, dims, seed=0)
    repeats = max(1, int(args.repeats))
    sur.predict(ims[: min(8, len(ims))])  # warm-up
    t_sur = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sur.predict(ims, batch_size=args.batch_size)
        t_sur.append(time.perf_counter() - t0)
    med = float(np.median(t_sur))
    t_net = []  # the network alone: predict() adds the exact percolation test of every volume
    for _ in range(repeats):
        t0 = time.perf_counter()
        sur.predict_log(ims, batch_size=args.batch_size)
        t_net.append(time.perf_counter() - t0)
    out = {"network_volumes_per_s": len(ims) / float(np.median(t_net)),
           "size": size, "dims": dims, "device": str(sur.device), "torch_threads": torch.get_num_threads(),
           "repeats": repeats, "surrogate_volumes": len(ims), "surrogate_s": med, "surrogate_s_all": t_sur,
           "surrogate_volumes_per_s": len(ims) / med, "surrogate_volumes_per_s_min": len(ims) / max(t_sur),
           "parameters": sum(p.numel() for p in sur.model.parameters())}
    if args.n_solver > 0:
        from data_pipeline.permeability import permeability
        permeability(ims[0], device="cpu", tol=args.tol)  # compile and warm up (not timed)
        t_sol, steps = [], []
        for _ in range(repeats):  # the same n_solver volumes, one after the other, per repeat
            t0 = time.perf_counter()
            for im in ims[1:1 + args.n_solver]:
                steps.append(permeability(im, device="cpu", tol=args.tol).steps)
            t_sol.append(time.perf_counter() - t0)
        n_sol = len(ims[1:1 + args.n_solver])
        per_volume = float(np.median(t_sol)) / n_sol
        out.update({"solver_volumes": n_sol, "solver_tol": args.tol, "solver_s_per_volume": per_volume,
                    "solver_s_all": t_sol, "solver_volumes_per_s": 1.0 / per_volume,
                    "solver_volumes_per_s_min": n_sol / max(t_sol), "solver_steps_mean": float(np.mean(steps)),
                    "speedup": out["surrogate_volumes_per_s"] * per_volume,
                    "speedup_note": "median surrogate rate / median solver rate, both measured in this run"})
    return out


def _load_yaml(path) -> dict:
    if not path:
        return {}
    import yaml
    return yaml.safe_load(Path(path).read_text()) or {}


@torch.no_grad()
def pvae_scores(checkpoint, dataset, split_cfg, device="cpu") -> dict:
    """The pVAE regressor (encoder mean -> property MLP) scored with the surrogate's metrics."""
    from data_pipeline.dataset import VoxelDataset
    from models.checkpoint import load_model
    from models.surrogate.evaluate import score

    model, cfg, norm = load_model(checkpoint, device=device)
    if (cfg.split_seed, list(cfg.split_fractions)) != (split_cfg.split_seed, list(split_cfg.split_fractions)):
        raise ValueError(f"{checkpoint}: split_seed/split_fractions {cfg.split_seed}/{cfg.split_fractions} differ "
                         f"from the surrogate's {split_cfg.split_seed}/{split_cfg.split_fractions}: not the same test set")
    ds = VoxelDataset(dataset, "test", cfg.properties, fractions=tuple(cfg.split_fractions), split_seed=cfg.split_seed)
    x = torch.from_numpy(ds.volumes().astype(np.float32))[:, None]  # (N, 1, *shape)
    preds = []
    for s in range(0, len(x), 64):
        mu, _ = model.encode(x[s:s + 64].to(device))
        preds.append(model.predict_properties(mu).float().cpu().numpy())
    pred_log = norm.inverse_log(np.concatenate(preds))
    m = score(norm.to_log(ds.targets), pred_log, cfg.properties, norm, cfg.k_floor)
    m["n_samples"] = len(ds)
    return m


def accuracy(args) -> dict:
    from models.surrogate import SurrogateTrainer, load_surrogate, load_surrogate_config
    from models.surrogate.evaluate import evaluate_surrogate

    if args.checkpoint:
        sur = load_surrogate(args.checkpoint, device=args.device)
        train = {}
    else:
        from models.config import parse_override
        overrides = dict(parse_override(x) for x in args.set)
        if args.threads:
            overrides.setdefault("num_threads", args.threads)
        cfg = load_surrogate_config(args.config, **overrides)
        trainer = SurrogateTrainer(cfg, args.dataset)
        summary = trainer.fit(Path(args.out), log=(lambda s: print(s, file=sys.stderr)))
        sur = trainer.surrogate()
        train = {"train_time_s": summary["train_time_s"], "epochs": summary["epochs"],
                 "best_epoch": summary["best_epoch"], "n_train": len(trainer.train_set)}
    m = evaluate_surrogate(sur, args.dataset, "test", out_dir=Path(args.out) / "eval" if args.out else None,
                           tta=args.tta)
    out = {"dataset": str(args.dataset), "surrogate": {k: v for k, v in m.items() if k != "figures"}, **train}
    if args.pvae_checkpoint:
        out["pvae"] = pvae_scores(args.pvae_checkpoint, args.dataset, sur.cfg, args.device)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--size", type=int, default=32)
    t.add_argument("--dims", type=int, default=3)
    t.add_argument("--n", type=int, default=256, help="volumes for the surrogate")
    t.add_argument("--n-solver", type=int, default=4, help="volumes for the solver (0 = skip)")
    t.add_argument("--tol", type=float, default=1e-5, help="solver tolerance (the build's default)")
    t.add_argument("--config", default="configs/surrogate_32.yaml", help="architecture when no --checkpoint")
    t.add_argument("--checkpoint")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--repeats", type=int, default=3, help="timed repeats of each rate (median and slowest)")
    a = sub.add_parser("accuracy")
    a.add_argument("--dataset", required=True)
    a.add_argument("--config", default="configs/surrogate_32.yaml")
    a.add_argument("--checkpoint", help="score this checkpoint instead of training")
    a.add_argument("--out", help="training / evaluation folder")
    a.add_argument("--pvae-checkpoint", help="pVAE checkpoint trained on the same dataset and split")
    a.add_argument("--tta", action="store_true")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    for q in (t, a):
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        q.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.mode == "accuracy" and not (args.checkpoint or args.out):
        p.error("accuracy: give --out (train) or --checkpoint")
    res = throughput(args) if args.mode == "throughput" else accuracy(args)
    print(json.dumps(res, indent=None if args.json else 2, default=float))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
