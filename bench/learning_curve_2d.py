"""How does the 2D route's log10 k R^2 grow with the number of images? (issue 16)

The README's "2D images" path (``bench/make_2d_images.py`` -> ``import --otsu`` -> ``label`` ->
``models train --config configs/pvae_2d.yaml``) run on the first N images of one seeded series
(N = 120 is the README's own set: image i depends only on (seed, i)), each dataset with its own
70/10/20 split, and every model scored on one large held-out set of images from the same generator
with another seed (``--heldout`` images, all of them: ~300 percolating per axis, where the README's
test split has 12). Beside each model, the descriptor yardstick at the same N: a ridge regression on
porosity and the learnable morphology descriptors (``data_pipeline.morphology.LEARNABLE``) fitted on
the same training split and scored on the same held-out images.

Every stage is the project's command line, run in turn (resumable: a dataset, model or score that
exists is reused). Run it alone: training uses one torch thread, labeling both cores.

    python bench/learning_curve_2d.py --out runs/lc2d --sizes 120 240 480 960 --seeds 0
    python bench/learning_curve_2d.py --out runs/lc2d --sizes 120 --seeds 0 1 2 --name d \
        --set 'descriptors=[specific_surface,chord_length,euler_density]'
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(cmd: list[str], log: Path, stderr=subprocess.STDOUT) -> float:
    """Run one command line of the project (stdout, and stderr unless given, to ``log``); returns
    its wall time (s)."""
    t = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=stderr, cwd=ROOT)
    return time.perf_counter() - t


def make_dataset(out: Path, name: str, n: int, seed: int, series: Path | None = None) -> Path:
    """Images (the first ``n`` of ``series`` when given, linked; else ``n`` fresh ones of ``seed``),
    imported with per-image Otsu and labeled by D2Q9: ``out / f"data{name}"``."""
    py = sys.executable
    data = out / f"data{name}"
    if (data / "properties.csv").is_file():
        return data
    tif = out / f"tif{name}"
    tif.mkdir(parents=True, exist_ok=True)
    if series is None:
        run([py, "bench/make_2d_images.py", "--out", str(tif), "--n", str(n), "--seed", str(seed)], out / f"make{name}.log")
    else:
        for i in range(n):
            link = tif / f"img_{i:03d}.tif"
            if not link.exists():
                link.symlink_to(Path("..") / series.name / link.name)
    run([py, "-m", "data_pipeline", "import", "--kind", "images2d", str(tif), "--otsu", "--out", str(data)],
        out / f"import{name}.log")
    s = run([py, "-m", "data_pipeline", "label", str(data), "--num-cpus", "2", "--no-progress"], out / f"label{name}.log")
    print(f"labeled {data} in {s:.0f} s")
    return data


def ridge_yardstick(train_dir: Path, heldout_xy: dict, split_fractions, split_seed: int) -> dict[str, float]:
    """R^2 of log10 k per diagonal axis on every percolating held-out image (``heldout_xy``: axis ->
    (features, log10 k), :func:`bench.descriptor_ridge.percolating_xy`, measured once), of the
    descriptor ridge (``bench/descriptor_ridge.py``) fitted on the percolating images of the
    training split of ``train_dir``."""
    from sklearn.metrics import r2_score

    from bench.descriptor_ridge import descriptor_ridge, percolating_xy

    out = {}
    for k, (x_h, y_h) in heldout_xy.items():
        x, y = percolating_xy(train_dir, "train", k, split_fractions, split_seed)
        out[k] = float(r2_score(y_h, descriptor_ridge().fit(x, y).predict(x_h)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/lc2d")
    ap.add_argument("--sizes", type=int, nargs="+", default=[120, 240, 480, 960])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--heldout", type=int, default=400, help="held-out images (generator seed 1)")
    ap.add_argument("--config", default="configs/pvae_2d.yaml")
    ap.add_argument("--name", default="p", help="prefix of the model folders (NAME{N}_s{seed})")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE passed to models train")
    args = ap.parse_args(argv)

    from models.config import load_config

    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    series = out / "tif_all"
    if not series.is_dir() or len(list(series.glob("*.tif"))) < max(args.sizes):
        run([py, "bench/make_2d_images.py", "--out", str(series), "--n", str(max(args.sizes)), "--seed", "0"],
            out / "make_all.log")
    heldout = make_dataset(out, "heldout", args.heldout, seed=1)
    cfg = load_config(ROOT / args.config)
    split_seed = int(dict(kv.split("=", 1) for kv in args.set).get("split_seed", cfg.split_seed))
    from bench.descriptor_ridge import percolating_xy

    heldout_xy = {k: percolating_xy(heldout, "all", k) for k in ("k_xx", "k_yy")}  # measured once
    rows = []
    for n in args.sizes:
        data = make_dataset(out, str(n), n, seed=0, series=series)
        ridge = ridge_yardstick(data, heldout_xy, cfg.split_fractions, split_seed)
        for seed in args.seeds:
            name = f"{args.name}{n}_s{seed}"
            model = out / name
            if not (model / "best").is_dir():
                sets = [a for kv in [f"seed={seed}", *args.set] for a in ("--set", kv)]
                s = run([py, "-m", "models", "train", "--config", args.config, "--dataset", str(data),
                         "--out", str(model), *sets], out / f"{name}.train.log")
                print(f"trained {name} in {s:.0f} s")
            score = out / f"{name}.heldout.json"
            if not score.is_file():
                run([py, "-m", "models", "evaluate", "--checkpoint", str(model / "best"), "--dataset", str(heldout),
                     "--split", "all", "--out", str(model / "eval-heldout"), "--json"], score, stderr=None)
            own = json.loads((model / "eval" / "metrics.json").read_text())
            held = json.loads(score.read_text())
            n_train = int(json.loads((model / "best" / "metrics.json").read_text()).get("n_train", 0) or 0)
            rows.append((n, seed, n_train, own, held, ridge))
    print("\n| images (train) | seed | own test split: IoU, R^2 porosity, log10 k_xx / k_yy | held-out: IoU, "
          "R^2 porosity, log10 k_xx / k_yy | ridge on descriptors, held-out |")
    print("| --- | --- | --- | --- | --- |")
    for n, seed, n_train, own, held, ridge in rows:
        def f(m):
            return f"{m['pore_iou']:.3f}, {m['r2_porosity']:.3f}, {m['r2_k_xx']:.3f} / {m['r2_k_yy']:.3f}"
        print(f"| {n} ({n_train or '?'}) | {seed} | {f(own)} (n {own['n_samples']}) | {f(held)} "
              f"(n {held['n_samples']}; k = 0: {held.get('n_zero_k_xx')} / {held.get('n_zero_k_yy')}) | "
              f"{ridge['k_xx']:.3f} / {ridge['k_yy']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
