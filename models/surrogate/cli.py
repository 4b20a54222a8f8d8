"""The ``train | evaluate | predict`` verbs of the surrogate (``python -m models surrogate ...``,
also ``python -m models.surrogate ...``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.io import json_safe

PROG = "python -m models surrogate"


def _train_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset folder (dataset.yaml, volumes/, properties.csv)")
    p.add_argument("--config", help="YAML config (flat SurrogateConfig fields); defaults when omitted")
    p.add_argument("--out", required=True, help="output folder (OUT/best, OUT/last, OUT/eval)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set epochs=5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last if it exists")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation and figures")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "Multiscale CNN permeability surrogate: train on solver-labeled volumes, evaluate, label folders."))
    sub = p.add_subparsers(dest="verb", required=True)
    _train_parser(sub.add_parser("train", prog=f"{PROG} train", help="train; writes OUT/best, OUT/last, OUT/eval",
                                 description="Train the surrogate; then evaluate the best model on the test split."))
    e = sub.add_parser("evaluate", prog=f"{PROG} evaluate", help="metrics and figures of a checkpoint",
                       description="R2 / MAE (log10 k), median relative error of k, parity and "
                                   "error-vs-porosity figures of a checkpoint on a dataset split.")
    e.add_argument("--checkpoint", required=True, help="checkpoint folder (e.g. runs/x/best)")
    e.add_argument("--dataset", required=True)
    e.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    e.add_argument("--out", help="folder for metrics.json and figures (default CHECKPOINT/../eval-SPLIT)")
    e.add_argument("--tta", action="store_true", help="average over the symmetry group (8 in 2D, 48 in 3D)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    q = sub.add_parser("predict", prog=f"{PROG} predict", help="label every volume of a dataset folder",
                       description="Predict porosity-consistent permeability labels (lattice units) for every "
                                   "volume of a dataset folder.")
    q.add_argument("--checkpoint", required=True)
    q.add_argument("--dataset", required=True)
    q.add_argument("--out", help="CSV of predictions (default DATASET/surrogate_predictions.csv)")
    q.add_argument("--write-properties", action="store_true",
                   help="also write the predictions into properties.csv for samples without an ok label "
                        "(labeler = surrogate:CHECKPOINT)")
    q.add_argument("--overwrite", action="store_true", help="with --write-properties, replace solver labels too")
    q.add_argument("--batch-size", type=int)
    q.add_argument("--tta", action="store_true")
    q.add_argument("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    from core.config import parse_override
    from data_pipeline.io import DataError
    from models.surrogate.config import load_surrogate_config
    from models.surrogate.evaluate import evaluate_surrogate, format_metrics
    from models.surrogate.predict import label_folder, load_surrogate
    from models.surrogate.train import SurrogateTrainer

    args = build_parser().parse_args(argv)
    try:
        if args.verb == "train":
            out = Path(args.out)
            if args.resume and (out / "last").is_dir():
                trainer = SurrogateTrainer.resume(out / "last", args.dataset)
                print(f"resuming from {out / 'last'} at epoch {trainer.epoch}")
            else:
                cfg = load_surrogate_config(args.config, **dict(parse_override(s) for s in args.set))
                trainer = SurrogateTrainer(cfg, args.dataset)
            n_par = sum(p.numel() for p in trainer.model.parameters())
            aug = f", augmentation x{len(trainer.augmenter)}" if trainer.augmenter is not None else ""
            print(f"training on {len(trainer.train_set)} samples (val {len(trainer.val_set)}), device "
                  f"{trainer.device}, {n_par:,} parameters{aug}")
            summary = trainer.fit(out)
            print(f"best val_loss {summary['best_val']:.4f} at epoch {summary['best_epoch']} "
                  f"({summary['epochs']} epochs, {summary['train_time_s']:.1f} s)")
            if not args.no_eval:
                print(format_metrics(trainer.evaluate("test", out_dir=out / "eval")))
        elif args.verb == "evaluate":
            from core.checkpoint import read_metrics
            ckpt = Path(args.checkpoint)
            sur = load_surrogate(ckpt, device=args.device)
            out = Path(args.out) if args.out else ckpt.parent / f"eval-{args.split}"
            m = evaluate_surrogate(sur, args.dataset, args.split, out, read_metrics(ckpt).get("history"), args.tta)
            print(json.dumps(json_safe(m)) if args.json else format_metrics(m))
        else:
            sur = load_surrogate(args.checkpoint, device=args.device)
            df = label_folder(sur, args.dataset, args.out, args.write_properties, args.overwrite,
                              args.batch_size, args.tta)
            print(f"labeled {len(df)} volumes -> {args.out or Path(args.dataset) / 'surrogate_predictions.csv'}"
                  + (" and properties.csv" if args.write_properties else ""))
    except (ValueError, FileNotFoundError, DataError) as exc:
        print(f"{PROG} {args.verb}: {exc}", file=sys.stderr)
        return 2
    return 0
