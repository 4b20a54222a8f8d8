"""``python -m data_pipeline import``: external volumes and property tables into a dataset folder.

Sources (``--kind``):
- ``stack``: multi-page TIFF files, one 3D sample each (id = file stem); a folder is expanded to
  its .tif/.tiff files;
- ``slices``: folders of 2D BMP/PNG/TIFF slices, one folder per sample (id = folder name), slices
  in natural numeric order; a folder holding only sub-folders is expanded to them. Gaps in the
  slice numbers and mixed slice sizes are refused;
- ``images2d``: 2D .tif images, one 2D sample each (folders are expanded to their files).

Binary images: nonzero = pore (``--pore-value V``: voxels equal to V are pore). Grayscale images
need ``--threshold T`` (one given threshold), ``--otsu`` (Otsu per sample) or ``--otsu-shared``
(one Otsu threshold of the pooled grey-value histogram of all samples: images of one instrument
setting keep one grey-to-phase rule, and a sample that is mostly one phase is not split at its own
noise); then pore = value <= T (``--pore dark``, the default, as in CT) or > T (``--pore bright``);
dataset.yaml states which, with the threshold(s).

A property CSV (``--properties FILE``) is mapped onto ``sample_id, porosity, k_xx, k_yy, k_zz``
(``--map case=sample_id --map n_F=porosity ...`` or ``--map-file`` YAML, e.g.
configs/data_map_foam200.yaml). Ids in the CSV without a volume, or the reverse, are errors
(``--allow-missing`` turns them into warnings); all-digit ids match numerically (``007`` = ``7``).

Nothing half-written is left behind: the dataset is assembled in a temporary folder beside
``--out`` and renamed onto it at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.cli import failed
from data_pipeline.io import (DATASET_YAML, VOLUMES_DIR, DataError,
                              property_columns, read_dataset_meta, read_properties, volume_path,
                              write_properties, write_volume, write_yaml)

SLICE_SUFFIXES = {".bmp", ".png", ".tif", ".tiff"}
TIFF_SUFFIXES = {".tif", ".tiff"}
KINDS = ("stack", "slices", "images2d")


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically: slice_2 < slice_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file (TIFF via tifffile, BMP/PNG via PIL) as a numeric array, squeezed.

    Colour images whose channels are all equal are reduced to one channel; real colour is refused.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            from data_pipeline.io import read_tiff

            def load(tf):  # strict: a truncated or damaged TIFF is an error, not a partial image
                arr = tf.asarray()
                colour = tf.pages[0].photometric in (2, 6)  # RGB, YCbCr
                if colour and tf.pages[0].planarconfig == 2:  # separate planes: (..., S, Y, X)
                    arr = np.moveaxis(arr, -3, -1)  # (..., Y, X, S)
                return arr, colour

            arr, colour = read_tiff(path, load)
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                colour = img.mode not in ("1", "L", "I", "I;16", "F", "LA")
                if img.mode == "LA":
                    img = img.getchannel(0)
                arr = np.asarray(img.convert("RGB") if colour else img)
    except DataError as exc:
        raise DataError(str(exc).replace("not a readable TIFF image", "not a readable image")) from None
    except Exception as exc:  # each library raises its own types on non-image input
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if colour:
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DataError(f"{path}: colour image (channels differ); convert it to grayscale first "
                            "(tifffile stores a 3- or 4-slice stack as RGB(A) unless written with "
                            "photometric='minisblack')")
        arr = rgb[..., 0]
    return np.squeeze(np.asarray(arr))


def binarize(arr: np.ndarray, path, threshold: float | None = None, otsu: bool = False,
             pore: str = "dark", pore_value: int | None = None) -> tuple[np.ndarray, dict]:
    """Binary volume (True = pore) from a numeric array, and how it was binarized.

    Binary input (at most two distinct values): nonzero = pore, or ``== pore_value``.
    Otherwise ``threshold`` or ``otsu`` is required: pore = value <= t (``pore="dark"``) or > t.
    """
    values = np.unique(arr)
    if threshold is None and not otsu:
        if values.size > 2:
            raise DataError(f"{path}: not binary ({values.size} distinct values, range {values.min()}-{values.max()}); "
                            "give --threshold T, --otsu or --otsu-shared")
        if pore_value is not None:
            return arr == pore_value, {"method": "binary", "pore_value": int(pore_value)}
        return arr != 0, {"method": "binary", "pore": "nonzero"}
    if pore not in ("dark", "bright"):
        raise DataError(f"pore must be 'dark' or 'bright', got {pore!r}")
    if otsu:
        from skimage.filters import threshold_otsu

        if values.size < 2:
            raise DataError(f"{path}: a single grey value ({values[0]}): Otsu needs two phases")
        t = float(threshold_otsu(arr))
    else:
        t = float(threshold)
    im = arr <= t if pore == "dark" else arr > t
    return im, {"method": "otsu" if otsu else "threshold", "threshold": t,
                "pore": "value <= threshold" if pore == "dark" else "value > threshold"}


def grey_histogram(arr: np.ndarray, path) -> tuple[np.ndarray, np.ndarray]:
    """(values, counts) of one sample's grey values, for a pooled histogram; a non-finite value
    (NaN, inf) is an error naming the file."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{path}: {int((~np.isfinite(arr)).sum())} non-finite grey value(s) (NaN or inf); "
                        "a threshold cannot place them")
    if arr.dtype.kind not in "uifb":
        raise DataError(f"{path}: grey values of type {arr.dtype} are not numbers")
    return np.unique(arr, return_counts=True)


def shared_otsu(hists: list[tuple[np.ndarray, np.ndarray]], paths: list) -> float:
    """One Otsu threshold of the pooled grey-value histogram of all samples (skimage's
    ``threshold_otsu`` on (counts, values): for one integer image it is that image's own Otsu
    threshold). Raises DataError when all samples together hold a single grey value."""
    from skimage.filters import threshold_otsu

    values, inverse = np.unique(np.concatenate([v for v, _ in hists]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([c for _, c in hists]).astype(np.float64))
    if values.size < 2:
        where = f"{paths[0]}" if len(paths) == 1 else f"{paths[0]} ... {paths[-1]} ({len(paths)} files)"
        raise DataError(f"{where}: a single grey value ({values[0]}) in all images: Otsu needs two phases")
    return float(threshold_otsu(hist=(counts, values.astype(np.float64))))


# ---------------------------------------------------------------------------------------------
# collecting the samples of each kind
# ---------------------------------------------------------------------------------------------
def _files(sources: list[Path], suffixes: set[str]) -> list[Path]:
    out = []
    for s in sources:
        if s.is_dir():
            found = sorted((p for p in s.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                            and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
            if not found:
                raise DataError(f"{s}: no {'/'.join(sorted(suffixes))} files")
            out += found
        elif s.is_file():
            out.append(s)
        else:
            raise DataError(f"{s}: no such file or folder")
    return out


def slice_files(folder: str | os.PathLike) -> list[Path]:
    """Image slices of one sample folder in natural order; refuses gaps in the slice numbers."""
    folder = Path(folder)
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES
                    and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{folder}: no BMP/PNG/TIFF slices")
    numbers = []
    for p in files:
        m = re.findall(r"\d+", p.stem)
        if not m:
            raise DataError(f"{p}: slice name has no number; cannot order the slices of {folder}")
        numbers.append(int(m[-1]))
    for (a, pa), (b, pb) in zip(zip(numbers, files), zip(numbers[1:], files[1:])):
        if b != a + 1:
            what = "duplicate slice number" if b == a else f"gap in slice numbers (missing {a + 1}..{b - 1})"
            raise DataError(f"{folder}: {what} between {pa.name} and {pb.name}")
    return files


def read_slice_folder(folder: str | os.PathLike) -> np.ndarray:
    """Stack the 2D slices of ``folder`` into a (Z, Y, X) array (raw values)."""
    files = slice_files(folder)
    first = read_image(files[0])
    if first.ndim != 2:
        raise DataError(f"{files[0]}: a slice must be a 2D image, got shape {first.shape}")
    vol = np.empty((len(files), *first.shape), dtype=first.dtype)  # (Z, Y, X)
    vol[0] = first
    for z, p in enumerate(files[1:], start=1):
        arr = read_image(p)
        if arr.shape != first.shape:
            raise DataError(f"{p}: slice size {arr.shape} differs from {files[0].name} {first.shape} "
                            f"(folder {Path(folder)})")
        vol[z] = arr
    return vol


def collect(kind: str, sources: list[str | os.PathLike]) -> list[tuple[str, Path, callable]]:
    """(sample_id, path, reader) per sample; readers return raw numeric arrays."""
    sources = [Path(s) for s in sources]
    if kind == "stack":
        items = [(p.stem, p, read_image) for p in _files(sources, TIFF_SUFFIXES)]
    elif kind == "images2d":
        items = [(p.stem, p, read_image) for p in _files(sources, TIFF_SUFFIXES)]
    elif kind == "slices":
        folders = []
        for s in sources:
            if not s.is_dir():
                raise DataError(f"{s}: --kind slices takes folders (one per sample)")
            subdirs = sorted((d for d in s.iterdir() if d.is_dir() and not d.name.startswith(".")),
                             key=lambda d: natural_key(d.name))
            has_images = any(p.suffix.lower() in SLICE_SUFFIXES for p in s.iterdir() if p.is_file())
            folders += subdirs if subdirs and not has_images else [s]
        items = [(d.name, d, read_slice_folder) for d in folders]
    else:
        raise DataError(f"kind must be one of {KINDS}, got {kind!r}")
    seen = {}
    for sid, p, _ in items:
        if sid in seen:
            raise DataError(f"sample id {sid!r} appears twice: {seen[sid]} and {p}")
        seen[sid] = p
    return items


# ---------------------------------------------------------------------------------------------
# property tables
# ---------------------------------------------------------------------------------------------
def canonical_id(value) -> str:
    """Sample id as a string; all-digit ids (and integral floats) lose leading zeros."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    s = str(value).strip()
    return str(int(s)) if s.isdigit() else s


def parse_mapping(items: list[str] | None = None, map_file: str | os.PathLike | None = None) -> dict[str, str]:
    """Column mapping source -> target from ``SRC=DST`` items and/or a YAML file ``{SRC: DST}``."""
    mapping = {}
    if map_file is not None:
        path = Path(map_file)
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a YAML mapping 'source column: target column'")
        mapping.update({str(k): str(v) for k, v in (data.get("columns", data)).items()})
    for item in items or []:
        if "=" not in item:
            raise DataError(f"--map {item!r}: expected SOURCE=TARGET (e.g. case=sample_id)")
        src, dst = item.split("=", 1)
        mapping[src.strip()] = dst.strip()
    return mapping


def map_properties(table: pd.DataFrame, mapping: dict[str, str], dims: int, source: str = "CSV") -> pd.DataFrame:
    """Rename/select the columns of a property table into properties.csv columns.

    Parameters
    ----------
    table : the raw table
    mapping : source column -> target (``sample_id``, ``porosity``, ``k_xx`` ...); one target
        must be ``sample_id``
    dims : 2 or 3 (which k columns are valid)
    source : the table's name for messages

    Returns
    -------
    DataFrame with sample_id (canonical str), the mapped columns, labeler "imported", status "ok".

    Raises
    ------
    DataError : unknown source/target column, no sample_id, duplicate ids, NaN or non-numeric values.
    """
    valid = set(property_columns(dims)) - {"labeler", "status", "error"}
    missing = [c for c in mapping if c not in table.columns]
    if missing:
        raise DataError(f"{source}: column(s) {missing} not found; it has {list(table.columns)}")
    bad = sorted(set(mapping.values()) - valid)
    if bad:
        raise DataError(f"{source}: mapping target(s) {bad} are not properties.csv columns for {dims}D "
                        f"({sorted(valid)})")
    if "sample_id" not in mapping.values():
        raise DataError(f"{source}: the mapping needs one column mapped to sample_id (e.g. case=sample_id)")
    df = table[list(mapping)].rename(columns=mapping)
    df["sample_id"] = [canonical_id(v) for v in df["sample_id"]]
    dup = df["sample_id"][df["sample_id"].duplicated()].unique().tolist()
    if dup:
        raise DataError(f"{source}: duplicate sample id(s) {dup[:10]}")
    for col in df.columns:
        if col == "sample_id":
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        nan_rows = df["sample_id"][values.isna()].tolist()
        if nan_rows:
            src = [s for s, d in mapping.items() if d == col][0]
            raise DataError(f"{source}: NaN or non-numeric value(s) in column {src!r} ({col}) for sample(s) "
                            f"{nan_rows[:10]}{' ...' if len(nan_rows) > 10 else ''}")
        df[col] = values.astype(float)
    df["labeler"] = "imported"
    df["status"] = "ok"
    df["error"] = ""
    return df


def match_ids(props: pd.DataFrame, volume_ids: list[str], source: str, allow_missing: bool) -> pd.DataFrame:
    """Keep the rows whose id has a volume (renamed to the volume's id); check both directions."""
    by_canon = {canonical_id(v): v for v in volume_ids}
    in_csv = set(props["sample_id"])
    no_volume = sorted((s for s in in_csv if s not in by_canon), key=natural_key)
    no_row = sorted((v for c, v in by_canon.items() if c not in in_csv), key=natural_key)
    problems = []
    if no_volume:
        problems.append(f"{len(no_volume)} id(s) in {source} have no volume: {no_volume[:10]}"
                        f"{' ...' if len(no_volume) > 10 else ''}")
    if no_row:
        problems.append(f"{len(no_row)} volume(s) have no row in {source}: {no_row[:10]}"
                        f"{' ...' if len(no_row) > 10 else ''}")
    if problems:
        if not allow_missing:
            raise DataError("; ".join(problems) + " (--allow-missing keeps only the matching ones)")
        for msg in problems:
            warnings.warn(msg, stacklevel=2)
            print(f"WARNING: {msg}", file=sys.stderr)
    props = props[props["sample_id"].isin(by_canon)].copy()
    props["sample_id"] = [by_canon[s] for s in props["sample_id"]]
    return props


# ---------------------------------------------------------------------------------------------
# the import
# ---------------------------------------------------------------------------------------------
def import_volumes(kind: str, sources: list, out: str | os.PathLike, *, threshold: float | None = None,
                   otsu: bool = False, otsu_shared: bool = False, pore: str = "dark",
                   pore_value: int | None = None, properties: str | os.PathLike | None = None, mapping: dict[str, str] | None = None,
                   allow_missing: bool = False, voxel_size: float | None = None, force: bool = False) -> Path:
    """Import volumes (and optionally a property table) into a new dataset folder ``out``.

    All volumes must share one shape. See the module docstring for ``kind`` and binarization
    (``threshold``, ``otsu`` per sample, ``otsu_shared``: one Otsu threshold over all samples, at
    most one of the three). Returns the dataset folder; nothing is written at ``out`` unless every input is valid.
    """
    out = Path(out)
    if out.exists() and not force:
        raise DataError(f"{out}: already exists (use --force to replace it)")
    items = collect(kind, sources)
    want_dims = 2 if kind == "images2d" else 3
    if properties is not None and not mapping:
        raise DataError("--properties needs a column mapping (--map SRC=DST ... or --map-file)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        if otsu_shared and (otsu or threshold is not None):
            raise DataError("--otsu-shared excludes --otsu and --threshold: give one binarization rule")
        shape, first_path = None, None

        def read(sid, path, reader):
            nonlocal shape, first_path
            arr = reader(path)
            if arr.ndim != want_dims:
                hint = {2: "use --kind images2d", 3: "use --kind stack or slices"}[arr.ndim] if arr.ndim in (2, 3) else ""
                raise DataError(f"{path}: wrong dimensionality: --kind {kind} expects {want_dims}D, got "
                                f"shape {arr.shape}{'; ' + hint if hint else ''}")
            if shape is None:
                shape, first_path = arr.shape, path
            elif arr.shape != shape:
                raise DataError(f"{path}: shape {arr.shape} differs from {first_path} {shape}; "
                                "a dataset holds volumes of one shape")
            return arr

        if otsu_shared:  # first pass: the pooled histogram (values and counts, not the volumes, are kept)
            threshold = shared_otsu([grey_histogram(read(*item), item[1]) for item in items],
                                    [path for _, path, _ in items])
        methods = []
        for sid, path, reader in items:
            im, how = binarize(read(sid, path, reader), path, threshold, otsu, pore, pore_value)
            methods.append(how)
            write_volume(volume_path(tmp, sid), im)
        binarization = methods[0] if all(m.get("method") == methods[0].get("method") for m in methods) else None
        if methods and methods[0]["method"] == "otsu":
            binarization = {"method": "otsu (per sample)", "pore": methods[0]["pore"],
                            "thresholds": {sid: m["threshold"] for (sid, _, _), m in zip(items, methods)}}
        elif otsu_shared:
            binarization = {"method": "otsu (shared)", "threshold": threshold, "pore": methods[0]["pore"],
                            "pooled_samples": len(items)}
        meta = {"dims": want_dims, "shape": list(shape), "voxel_size": voxel_size,
                "pore": "uint8 TIFF, 1 = pore, 0 = solid; 3D as (Z, Y, X) pages",
                "source": {"kind": f"imported {kind}", "paths": [str(s) for s in sources]},
                "binarization": binarization, "label": "none"}
        if properties is not None:
            table = _read_csv(properties)
            props = map_properties(table, mapping, want_dims, str(properties))
            props = match_ids(props, [sid for sid, _, _ in items], str(properties), allow_missing)
            _check_porosity(props, tmp)
            write_properties(tmp, props)
            meta["label"] = "imported"
            meta["properties"] = {"from": str(properties), "mapping": mapping}
        write_yaml(tmp / DATASET_YAML, meta)
        if out.exists():  # --force: swap in the new folder, then remove the old one
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _read_csv(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None


def _check_porosity(props: pd.DataFrame, root: Path, tol: float = 0.02) -> None:
    """Warn when a table's porosity disagrees with the volume's pore fraction by more than tol."""
    if "porosity" not in props.columns:
        return
    from data_pipeline.io import read_volume

    off = []
    for sid, phi in zip(props["sample_id"], props["porosity"]):
        p = volume_path(root, sid)
        if p.is_file():
            phi_vol = float(read_volume(p).mean())
            if abs(phi_vol - phi) > tol:
                off.append(f"{sid} (table {phi:.3f}, volume {phi_vol:.3f})")
    if off:
        msg = f"porosity differs from the volume by > {tol} for {len(off)} sample(s): {off[:5]}"
        warnings.warn(msg, stacklevel=2)
        print(f"WARNING: {msg}", file=sys.stderr)


def import_properties(root: str | os.PathLike, properties: str | os.PathLike, mapping: dict[str, str],
                      allow_missing: bool = False) -> Path:
    """Map a property table onto the volumes of an existing dataset; rows of those ids are replaced."""
    root = Path(root)
    meta = read_dataset_meta(root)
    dims = int(meta["dims"])
    volume_ids = sorted(p.stem for p in (root / VOLUMES_DIR).glob("*.tif"))
    props = map_properties(_read_csv(properties), mapping, dims, str(properties))
    props = match_ids(props, volume_ids, str(properties), allow_missing)
    _check_porosity(props, root)
    old = read_properties(root)
    if not old.empty:
        old = old[~old["sample_id"].isin(props["sample_id"])]
        props = pd.concat([old, props], ignore_index=True)
    write_properties(root, props)
    meta["properties"] = {"from": str(properties), "mapping": mapping}
    write_yaml(root / DATASET_YAML, meta)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_pipeline import",
        description=__doc__.split("\n\n", 1)[1].split("Nothing half-written")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m data_pipeline import --kind stack scans/*.tif --otsu --out data/ct\n"
               "  python -m data_pipeline import --kind slices samples/ --out data/bmp\n"
               "  python -m data_pipeline import --kind stack foams/ --properties foam200_properties.csv "
               "--map-file configs/data_map_foam200.yaml --out data/foam200\n"
               "  python -m data_pipeline import --properties table.csv --map case=sample_id --map n_F=porosity "
               "--out existing_dataset   (no sources: add properties to a dataset)")
    p.add_argument("sources", nargs="*", help="files or folders (see --kind)")
    p.add_argument("--kind", choices=KINDS, default="stack")
    p.add_argument("--out", required=True, help="dataset folder to create (or, without sources, to add properties to)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, help="grey-value threshold for grayscale images")
    g.add_argument("--otsu", action="store_true", help="Otsu threshold per sample (skimage)")
    g.add_argument("--otsu-shared", action="store_true",
                   help="one Otsu threshold of the pooled grey-value histogram of all samples")
    p.add_argument("--pore", choices=("dark", "bright"), default="dark",
                   help="with a threshold: pore = value <= T (dark, default) or > T (bright)")
    p.add_argument("--pore-value", type=int, help="binary images: voxels equal to this are pore (default nonzero)")
    p.add_argument("--properties", help="property CSV to map onto the samples")
    p.add_argument("--map", action="append", default=[], metavar="SRC=DST",
                   help="column mapping, e.g. case=sample_id n_F=porosity Permeability_x=k_xx")
    p.add_argument("--map-file", help="YAML mapping {SRC: DST} (e.g. configs/data_map_foam200.yaml)")
    p.add_argument("--allow-missing", action="store_true",
                   help="ids without volume / volumes without row: warn and keep the matching ones")
    p.add_argument("--voxel-size", type=float, help="voxel edge in metres (recorded in dataset.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    args = p.parse_args(argv)
    try:
        mapping = parse_mapping(args.map, args.map_file) if (args.map or args.map_file) else None
        if not args.sources:
            if args.properties is None:
                p.error("give sources to import, or --properties to add to an existing dataset")
            if not mapping:
                raise DataError("--properties needs a column mapping (--map SRC=DST ... or --map-file)")
            out = import_properties(args.out, args.properties, mapping, args.allow_missing)
        else:
            out = import_volumes(args.kind, args.sources, args.out, threshold=args.threshold, otsu=args.otsu,
                                 otsu_shared=args.otsu_shared, pore=args.pore, pore_value=args.pore_value, properties=args.properties,
                                 mapping=mapping, allow_missing=args.allow_missing,
                                 voxel_size=args.voxel_size, force=args.force)
    except DataError as exc:
        return failed("import", exc)
    n = len(list((Path(out) / VOLUMES_DIR).glob("*.tif")))
    print(f"imported {n} volume(s) into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
