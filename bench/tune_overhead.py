"""Overhead of a Ray Tune study of the pVAE: share of wall time inside training steps, trials per hour.

    .venv/bin/python bench/tune_overhead.py                      # 32^3, 2 trials of ~60 s, 2 at once
    .venv/bin/python bench/tune_overhead.py --trial-seconds 30 --trials 4 --json

What it does:
1. a 32^3 dataset (``--dataset``, or ``--n-samples`` smoothed-noise volumes with Kozeny-Carman labels
   written to runs/bench/tune32-<n>: timing does not depend on the labels);
2. calibration: one training epoch in this process at 1 torch thread gives the epochs per trial that make
   a trial last about ``--trial-seconds`` of training;
3. a real study (local Ray, SQLite MLflow, per-epoch checkpoints, final evaluation with figures) of
   ``--trials`` trials, ``--concurrent`` at once, 1 CPU each.

Reported:
  in_steps_share = sum over trials and epochs of the trainer's epoch time (training + validation
                   steps) / (Tuner.fit wall time x concurrent slots). The rest is trial start-up
                   (process, imports, dataset load), checkpoints, MLflow logging, final evaluation,
                   scheduling gaps and the tail when fewer trials than slots remain.
  trials_per_hour = trials / Tuner.fit wall time x 3600 (ray.init excluded, reported apart).
Run it alone: on 2 cores any other CPU load distorts both numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN = {"channels": [16, 32, 64], "regressor_width": 64, "batch_size": 8, "patience": 0, "scheduler": "none",
         "eval_batch_size": 32, "n_generate": 16, "latent_dim": 8}


def synthetic_dataset(root: Path, n: int = 48, size: int = 32, seed: int = 0) -> Path:
    """Smoothed-noise volumes, porosity 0.4-0.8, Kozeny-Carman permeability (lattice units)."""
    import numpy as np
    import pandas as pd
    from scipy.ndimage import gaussian_filter

    from data_pipeline.io import write_properties, write_volume, write_yaml

    if (root / "properties.csv").is_file():
        return root
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        field = gaussian_filter(rng.standard_normal((size,) * 3), sigma=2.0, mode="wrap")
        im = field < np.quantile(field, rng.uniform(0.4, 0.8))  # (Z, Y, X) bool, True = pore
        phi = float(im.mean())
        k = phi**3 / (180 * (1 - phi) ** 2) * 6.0**2
        write_volume(root / "volumes" / f"b{i:03d}.tif", im)
        rows.append({"sample_id": f"b{i:03d}", "porosity": phi, "k_xx": k, "k_yy": k, "k_zz": k,
                     "k_xy": 0.0, "k_xz": 0.0, "k_yz": 0.0, "status": "ok"})
    write_properties(root, pd.DataFrame(rows))
    write_yaml(root / "dataset.yaml", {"name": "bench-tune32", "dims": 3, "shape": [size] * 3, "pore": 1})
    return root


def calibrate(dataset: Path, base: dict) -> float:
    """Seconds of one training epoch (train + val) at 1 torch thread, after a warm-up epoch."""
    from models.config import PVAEConfig
    from models.train import Trainer

    trainer = Trainer(PVAEConfig.from_dict({**base, "epochs": 3, "num_threads": 1, "device": "cpu"}), dataset)
    trainer.train_epoch()  # warm-up (allocations, first-call overheads)
    return float(trainer.train_epoch()["epoch_time_s"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", help="a 32^3 dataset folder (default: a synthetic one in runs/bench/tune32)")
    p.add_argument("--n-samples", type=int, default=400, help="size of the synthetic dataset (80%% train)")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--trial-seconds", type=float, default=60.0, help="target training time per trial")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: calibrated from --trial-seconds)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import ray

    from tuning.config import StudyConfig
    from tuning.study import ensure_ray, run_study

    dataset = Path(args.dataset) if args.dataset else synthetic_dataset(ROOT / "runs" / "bench" / f"tune32-{args.n_samples}",
                                                                           n=args.n_samples)
    base = {**TRAIN, "input_size": 32, "dims": 3}
    epoch_s = calibrate(dataset, base)
    epochs = args.epochs or max(1, math.ceil(args.trial_seconds / epoch_s))
    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    try:
        cfg = StudyConfig(name="overhead", dataset=str(dataset), storage_path=str(work / "tune"),
                          train={**TRAIN, "epochs": epochs},
                          search_space={"lr": {"loguniform": [5e-4, 2e-3]}, "beta": {"loguniform": [0.2, 1.0]}},
                          search="random", scheduler="fifo", num_samples=args.trials, max_concurrent=args.concurrent,
                          cpu=1, keep_checkpoints=1, max_failures=0)
        t0 = time.perf_counter()
        ensure_ray(None, num_cpus=args.concurrent)
        init_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        handle = run_study(cfg, tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
        study_s = time.perf_counter() - t1  # includes MLflow setup and the summary (~1 s)
        ray.shutdown()
        in_steps = 0.0
        per_trial = []
        for r in handle.results:
            df = r.metrics_dataframe
            steps = float(df["epoch_time_s"].sum())
            in_steps += steps
            trial_s = float(df["time_total_s"].max())
            setup = float(df["trial_setup_s"].dropna().iloc[0]) if "trial_setup_s" in df else 0.0
            final = float(df["final_eval_s"].dropna().iloc[0]) if "final_eval_s" in df else 0.0
            per_trial.append({"trial_s": round(trial_s, 2), "steps_s": round(steps, 2), "setup_s": round(setup, 2),
                              "final_eval_s": round(final, 2),
                              "per_epoch_overhead_s": round((trial_s - steps - setup - final) / len(df), 3)})
        slots = min(args.concurrent, args.trials)
        record = {"size": 32, "n_train": int(handle.results[0].metrics.get("n_train", 0)), "trials": args.trials, "concurrent": slots, "epochs": epochs,
                  "epoch_s_calibrated": round(epoch_s, 2), "ray_init_s": round(init_s, 1),
                  "study_wall_s": round(study_s, 1), "in_steps_s": round(in_steps, 1),
                  "in_steps_share": round(in_steps / (study_s * slots), 3),
                  "trials_per_hour": round(args.trials / study_s * 3600, 1),
                  "per_trial": per_trial, "cpu_count": os.cpu_count(),
                  "load_avg_1min_at_end": round(os.getloadavg()[0], 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"32^3, {args.trials} trials x {epochs} epochs ({epoch_s:.1f} s/epoch calibrated), {slots} at once, "
              f"1 CPU each")
        print(f"ray.init {init_s:.1f} s; study wall {study_s:.1f} s; inside training steps {in_steps:.1f} s "
              f"-> share {record['in_steps_share']:.1%} of wall x {slots} slots")
        for t in per_trial:
            print(f"  trial {t['trial_s']:.1f} s: steps {t['steps_s']:.1f}, setup {t['setup_s']:.1f}, final evaluation "
                  f"{t['final_eval_s']:.1f}, per-epoch report/checkpoint {t['per_epoch_overhead_s']:.3f} s")
        print(f"trials per hour: {record['trials_per_hour']:.1f}  (load average at end "
              f"{record['load_avg_1min_at_end']}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
