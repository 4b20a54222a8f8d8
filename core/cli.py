"""Verb dispatch shared by every stage's ``python -m <stage> <verb> ...``.

Each verb lives in its own module exposing ``main(argv: list[str] | None) -> int`` with an
argparse parser of its own (so ``--help`` works on every verb); a module is imported only when
its verb runs, so a slow import (torch, ray) never slows down another verb.
"""
from __future__ import annotations

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


def stage_main(stage: str, verbs: dict[str, tuple[str, str]]) -> None:
    """The whole body of a stage's ``__main__``: dispatch ``sys.argv`` and exit with its status."""
    sys.exit(dispatch(stage, verbs))
