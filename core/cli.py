"""Verb dispatch shared by every stage's ``python -m <stage> <verb> ...``.

Each verb lives in its own module exposing ``main(argv: list[str] | None) -> int`` with an
argparse parser of its own (so ``--help`` works on every verb); a module is imported only when
its verb runs, so a slow import (torch, ray) never slows down another verb.
"""
from __future__ import annotations

import argparse
import importlib
import sys


def dispatch(stage: str, verbs: dict[str, tuple[str, str]], argv: list[str] | None = None) -> int:
    """Run ``verbs[argv[0]]``: a mapping verb -> (module, one-line help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, verbs))
        lines = [f"usage: python -m {stage} <verb> [options]   (python -m {stage} <verb> --help)", "", "verbs:"]
        lines += [f"  {v:<{width}}  {h}" for v, (_, h) in verbs.items()]
        print("\n".join(lines))
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in verbs:
        print(f"python -m {stage}: unknown verb {verb!r}; choose from {', '.join(verbs)}", file=sys.stderr)
        return 2
    module = importlib.import_module(verbs[verb][0])
    return int(module.main(rest) or 0)


def failed(prog: str, exc: BaseException) -> int:
    """A verb's exit on bad input: ``<prog>: <exc>`` as one line on stderr; returns the status, 2."""
    print(f"{prog}: {exc}", file=sys.stderr)
    return 2


def stage_main(stage: str, verbs: dict[str, tuple[str, str]]) -> None:
    """The whole body of a stage's ``__main__``: dispatch ``sys.argv`` and exit with its status."""
    sys.exit(dispatch(stage, verbs))


def add_training_arguments(p: argparse.ArgumentParser, config_class: str, set_example: str,
                           out_help: str = "output folder") -> None:
    """The options of a model's ``train`` verb: --dataset, --config (flat ``config_class`` fields),
    --out, --set KEY=VALUE (repeatable; ``set_example`` shows one), --resume, --no-eval."""
    p.add_argument("--dataset", required=True, help="dataset folder (dataset.yaml, volumes/, properties.csv)")
    p.add_argument("--config", help=f"YAML config (flat {config_class} fields); defaults when omitted")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, e.g. --set {set_example} (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last if it exists")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation and figures")


def add_checkpoint_arguments(p: argparse.ArgumentParser, split: str) -> None:
    """--checkpoint, --dataset and --split (default ``split``) of a verb that reads a checkpoint
    and a split of a dataset (evaluate, latent)."""
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (e.g. runs/x/best)")
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--split", default=split, choices=["train", "val", "test", "all"])
