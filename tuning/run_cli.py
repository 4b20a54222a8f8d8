"""``python -m tuning run``: see :mod:`tuning.study`."""
from tuning.study import main_run as main  # noqa: F401
