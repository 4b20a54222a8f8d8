"""Bad input (issue 15, item 5): each case ends `python -m data_pipeline import` with exit code 2 and
ONE line on stderr naming the file, sample or field, and leaves nothing behind (no --out folder, no
temporary folder). The dataset side: a damaged or missing volume of a dataset folder stops the
torch Dataset with an error naming the file and leaves no half-written cache."""
import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from data_pipeline import importers
from data_pipeline.dataset import VoxelDataset
from data_pipeline.io import DataError, write_volume, write_yaml


def vol(seed, shape=(6, 8, 10)):
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(np.uint8)


def make_source(src, ids=(1, 2, 3)):
    src.mkdir()
    for i in ids:
        tifffile.imwrite(src / f"{i:03d}.tif", vol(i), photometric="minisblack")


def write_csv(path, rows):
    pd.DataFrame(rows, columns=["case", "n_F", "Permeability_x"]).to_csv(path, index=False)


def good_rows(ids=(1, 2, 3)):
    return [[i, float(vol(i).mean()), 1.0 * i] for i in ids]


def cut(path, n_bytes):
    data = path.read_bytes()
    path.write_bytes(data[:n_bytes] if n_bytes > 0 else data[:len(data) + n_bytes])


def damage(path):
    data = bytearray(path.read_bytes())
    data[8:] = np.random.default_rng(0).integers(0, 256, len(data) - 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


CASES = {
    # case: (prepare(src, csv) -> extra args, expected message regex)
    "truncated_tiff_half": (lambda src, csv: cut(src / "002.tif", len((src / "002.tif").read_bytes()) // 2),
                            r"002.tif: (truncated or corrupt TIFF|truncated TIFF)"),
    "truncated_tiff_data": (lambda src, csv: cut(src / "002.tif", 300),
                            r"002.tif: (truncated or corrupt TIFF|truncated TIFF)"),
    "corrupt_tiff": (lambda src, csv: damage(src / "003.tif"), r"003.tif: truncated or corrupt TIFF"),
    "not_binary": (lambda src, csv: tifffile.imwrite(src / "002.tif", np.arange(480, dtype=np.uint16).reshape(6, 8, 10)),
                   r"002.tif: not binary \(480 distinct values"),
    "wrong_dims": (lambda src, csv: tifffile.imwrite(src / "002.tif", vol(2)[0]),
                   r"002.tif: wrong dimensionality: --kind stack expects 3D, got shape \(8, 10\)"),
    "nan_in_csv": (lambda src, csv: write_csv(csv, [[1, 0.5, 1.0], [2, float("nan"), 2.0], [3, 0.5, 3.0]]),
                   r"props.csv: NaN or non-numeric value\(s\) in column 'n_F' \(porosity\) for sample\(s\) \['2'\]"),
    "missing_value_in_csv": (lambda src, csv: csv.write_text("case,n_F,Permeability_x\n1,0.5,1\n2,0.5,\n3,0.5,3\n"),
                             r"props.csv: NaN or non-numeric value\(s\) in column 'Permeability_x' \(k_xx\) "
                             r"for sample\(s\) \['2'\]"),
    "ids_without_volumes": (lambda src, csv: write_csv(csv, good_rows((1, 2, 3, 4))),
                            r"props.csv have no volume: \['4'\]"),
    "volumes_without_rows": (lambda src, csv: write_csv(csv, good_rows((1, 2))),
                             r"volume\(s\) have no row in .*props.csv: \['003'\]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_import_bad_input_one_line_error_nothing_written(tmp_path, capsys, case):
    src, csv, out = tmp_path / "src", tmp_path / "props.csv", tmp_path / "ds"
    make_source(src)
    write_csv(csv, good_rows())
    prepare, expect = CASES[case]
    prepare(src, csv)
    args = [str(src), "--out", str(out), "--properties", str(csv),
            "--map", "case=sample_id", "--map", "n_F=porosity", "--map", "Permeability_x=k_xx"]
    rc = importers.main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("import: ")
    import re
    assert re.search(expect, lines[0]), lines[0]
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["props.csv", "src"]  # no temporary folder left behind


def make_dataset(root, n=6, shape=(8, 8, 8)):
    rows = []
    for i in range(n):
        im = vol(i, shape).astype(bool)
        write_volume(root / "volumes" / f"s{i}.tif", im)
        rows.append({"sample_id": f"s{i}", "porosity": im.mean(), "k_xx": 0.1, "k_yy": 0.2, "k_zz": 0.3,
                     "status": "ok"})
    write_yaml(root / "dataset.yaml", {"dims": 3, "shape": list(shape)})
    pd.DataFrame(rows).to_csv(root / "properties.csv", index=False)


@pytest.mark.parametrize("case", ["truncated", "missing"])
def test_dataset_with_a_damaged_or_missing_volume_names_it_and_writes_no_cache(tmp_path, case):
    make_dataset(tmp_path)
    path = tmp_path / "volumes" / "s3.tif"
    if case == "truncated":
        cut(path, len(path.read_bytes()) // 2)
        expect = r"s3.tif: (truncated or corrupt TIFF|truncated TIFF)"
    else:
        path.unlink()
        expect = r"s3.tif: no such file"
    with pytest.raises(DataError, match=expect) as info:
        VoxelDataset(tmp_path, split="all")
    assert "\n" not in str(info.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []  # no cache, no temporary file
