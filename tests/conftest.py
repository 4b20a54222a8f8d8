"""Shared test settings: a deterministic, small-thread environment on a 2-core machine."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")

# The exit status pytest settled on, kept for the hard exit below.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    """Stop a Ray session left in this process while the interpreter is still whole."""
    _EXIT_STATUS.append(int(exitstatus))
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own exit status, skipping the native teardown of torch/Ray/grpc.

    CI (stop 20) saw "317 passed" followed by a segmentation fault while the interpreter tore
    down extension modules after pytest had finished: the tests were sound, the exit code was not.
    This hook runs last, after the summary is printed and every plugin has written its files,
    so only the interpreter's own teardown is skipped; exit status 5 (no tests) still fails CI.
    """
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])

