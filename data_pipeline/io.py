"""File formats of the on-disk dataset (README.md, "On-disk dataset"): atomic writes, clear errors.

Vocabulary: ``im`` is a bool array, True = pore. On disk a volume is a uint8 TIFF, 1 = pore,
0 = solid, 3D stored as a (Z, Y, X) page stack, 2D as one (Y, X) page.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import yaml

from core.io import atomic_path, write_yaml  # noqa: F401  (re-exported: the stage's writers)
from core.properties import K_COLUMNS  # noqa: F401  (re-exported)

DATASET_YAML = "dataset.yaml"
PROPERTIES_CSV = "properties.csv"
VOLUMES_DIR = "volumes"

#: Columns every properties.csv has (beside the K_COLUMNS of its dims), in this order.
BASE_COLUMNS = ["sample_id", "porosity"]
DIAG_COLUMNS = ["steps", "converged", "residual", "max_mach", "labeler", "status", "error"]


class DataError(ValueError):
    """Bad input data; the message names the file, sample or field."""


def property_columns(dims: int) -> list[str]:
    """All columns of properties.csv for a dataset of ``dims`` dimensions, in order."""
    if dims not in K_COLUMNS:
        raise DataError(f"dims must be 2 or 3, got {dims!r}")
    return BASE_COLUMNS + K_COLUMNS[dims] + DIAG_COLUMNS


def write_volume(path: str | os.PathLike, im: np.ndarray) -> None:
    """Write a bool/0-1 volume as a uint8 TIFF (1 = pore) atomically.

    Parameters
    ----------
    path : path of the .tif file
    im : (Y, X) or (Z, Y, X) array; nonzero = pore
    """
    im = np.asarray(im)
    if im.ndim not in (2, 3):
        raise DataError(f"{path}: a volume must be 2D or 3D, got shape {im.shape}")
    data = (im != 0).astype(np.uint8)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, photometric="minisblack", compression=None)


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_tiff(path: str | os.PathLike, fn=None):
    """Open a TIFF strictly and return ``fn(tif)`` (default: the whole image as an array).

    tifffile reads what it can of a truncated file and only logs the rest ("invalid page offset"):
    here any such complaint, or a page whose data runs past the end of the file, is an error.

    Raises
    ------
    DataError : one line naming the file: not a TIFF, or truncated / corrupt.
    """
    path = Path(path)
    size = path.stat().st_size
    capture = _LogCapture()
    log = logging.getLogger("tifffile")
    log.addHandler(capture)
    try:
        with tifffile.TiffFile(path) as tif:
            out = tif.asarray() if fn is None else fn(tif)
            for page in tif.pages:
                ends = [int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts)]
                if any(e > size for e in ends):
                    raise DataError(f"{path}: truncated TIFF (page data ends at byte {max(ends)}, "
                                    f"the file has {size})")
    except DataError:
        raise
    except Exception as exc:  # tifffile raises several types for non-TIFF or damaged input
        with open(path, "rb") as f:
            magic = f.read(4)
        what = "truncated or corrupt TIFF" if magic[:2] in (b"II", b"MM") else "not a readable TIFF image"
        raise DataError(f"{path}: {what} ({type(exc).__name__}: {_one_line(exc)})") from None
    finally:
        log.removeHandler(capture)
    if capture.messages:
        raise DataError(f"{path}: truncated or corrupt TIFF (tifffile: {_one_line(capture.messages[0])})")
    return out


def read_volume(path: str | os.PathLike, pore_value: int | None = None) -> np.ndarray:
    """Read a binary TIFF volume as a bool array (True = pore).

    Parameters
    ----------
    path : a single- or multi-page TIFF
    pore_value : None (default): nonzero voxels are pore. An integer: voxels equal to it are pore.

    Raises
    ------
    DataError : the file is missing, not a TIFF, not 2D/3D, or not binary.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    arr = np.squeeze(read_tiff(path))
    if arr.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2D image or 3D page stack, got shape {arr.shape}")
    values = np.unique(arr)
    if values.size > 2:
        raise DataError(
            f"{path}: not binary ({values.size} distinct values, e.g. {values[:5].tolist()}); "
            "binarize it first (the import command takes --threshold or --otsu)")
    if pore_value is None:
        return arr != 0
    return arr == pore_value


def read_dataset_meta(root: str | os.PathLike) -> dict:
    """Read ``<root>/dataset.yaml``; raise DataError naming the file if missing or invalid."""
    path = Path(root) / DATASET_YAML
    if not path.is_file():
        raise DataError(f"{path}: missing; {root} is not a dataset folder")
    meta = yaml.safe_load(path.read_text()) or {}
    for key in ("dims", "shape"):
        if key not in meta:
            raise DataError(f"{path}: field {key!r} is missing")
    return meta


def write_properties(root: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write properties.csv atomically, sorted by sample_id."""
    with atomic_path(Path(root) / PROPERTIES_CSV) as tmp:
        df.sort_values("sample_id").to_csv(tmp, index=False)


def read_properties(root: str | os.PathLike) -> pd.DataFrame:
    """Read properties.csv (sample_id as str). Missing file -> empty frame with no rows."""
    path = Path(root) / PROPERTIES_CSV
    if not path.is_file():
        return pd.DataFrame(columns=BASE_COLUMNS)
    return pd.read_csv(path, dtype={"sample_id": str})


def volume_path(root: str | os.PathLike, sample_id: str) -> Path:
    return Path(root) / VOLUMES_DIR / f"{sample_id}.tif"
