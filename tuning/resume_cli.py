"""``python -m tuning resume``: see :mod:`tuning.study`."""
from tuning.study import main_resume as main  # noqa: F401
