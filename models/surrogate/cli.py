"""The ``train | evaluate | predict`` verbs of the surrogate (``python -m models surrogate ...``,
also ``python -m models.surrogate ...``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli import add_checkpoint_arguments, add_training_arguments, failed
from core.io import json_safe

PROG = "python -m models surrogate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "Multiscale CNN permeability surrogate: train on solver-labeled volumes, evaluate, label folders."))
    sub = p.add_subparsers(dest="verb", required=True)
    add_training_arguments(sub.add_parser("train", prog=f"{PROG} train", help="train; writes OUT/best, OUT/last, OUT/eval",
                                          description="Train the surrogate; then evaluate the best model on the test split."),
                           "SurrogateConfig", "epochs=5", out_help="output folder (OUT/best, OUT/last, OUT/eval)")
    e = sub.add_parser("evaluate", prog=f"{PROG} evaluate", help="metrics and figures of a checkpoint",
                       description="R2 / MAE (log10 k), median relative error of k, parity and "
                                   "error-vs-porosity figures of a checkpoint on a dataset split.")
    add_checkpoint_arguments(e, "test")
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
    from data_pipeline.io import DataError
    from models.common import fit_and_report, open_trainer
    from models.surrogate.config import load_surrogate_config
    from models.surrogate.evaluate import evaluate_surrogate, format_metrics
    from models.surrogate.predict import label_folder, load_surrogate
    from models.surrogate.train import SurrogateTrainer

    args = build_parser().parse_args(argv)
    try:
        if args.verb == "train":
            out = Path(args.out)
            trainer = open_trainer(SurrogateTrainer, load_surrogate_config, args)
            a = trainer.augmenter
            aug = "" if a is None else f", augmentation x{len(a)}" + (" with periodic shifts" if a.shifts else "")
            fit_and_report(trainer, out, None if args.no_eval else format_metrics, aug)
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
        return failed(f"{PROG} {args.verb}", exc)
    return 0
