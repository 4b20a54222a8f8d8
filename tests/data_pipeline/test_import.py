"""Import of TIFF stacks, BMP/PNG slice folders, 2D .tif folders and property CSVs; bad inputs."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from PIL import Image

from data_pipeline import importers
from data_pipeline.io import DataError, read_properties, read_volume

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "foam200_properties.csv"  # copy of shared/reference
FOAM_MAP = Path(__file__).resolve().parents[2] / "configs" / "data_map_foam200.yaml"


def vol(seed, shape=(6, 8, 10)):
    return np.random.default_rng(seed).random(shape) < 0.5


def write_slices(folder: Path, im: np.ndarray, fmt="bmp", names=None):
    folder.mkdir(parents=True)
    for z, sl in enumerate(im):
        name = names[z] if names else f"slice_{z + 1}.{fmt}"
        Image.fromarray((sl * 255).astype(np.uint8)).save(folder / name)


def no_leftovers(parent: Path):
    return not [p for p in parent.iterdir() if p.name.startswith(".")]


def test_tiff_stack_round_trip(tmp_path):
    ims = {f"a{i}": vol(i) for i in range(2)}
    for sid, im in ims.items():
        tifffile.imwrite(tmp_path / f"{sid}.tif", im.astype(np.uint8))
    out = importers.import_volumes("stack", [tmp_path], tmp_path / "ds")
    for sid, im in ims.items():
        assert np.array_equal(read_volume(out / "volumes" / f"{sid}.tif"), im)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["dims"] == 3 and meta["shape"] == [6, 8, 10] and meta["binarization"]["method"] == "binary"


def test_bmp_slice_folders_natural_order(tmp_path):
    im = vol(3, (12, 7, 9))
    write_slices(tmp_path / "src" / "sampleA", im)          # slice_1 ... slice_12 (2 < 10 naturally)
    write_slices(tmp_path / "src" / "sampleB", ~im, fmt="png")
    out = importers.import_volumes("slices", [tmp_path / "src"], tmp_path / "ds")
    assert np.array_equal(read_volume(out / "volumes" / "sampleA.tif"), im)  # 255 = pore (nonzero)
    assert np.array_equal(read_volume(out / "volumes" / "sampleB.tif"), ~im)


def test_2d_tif_folder_with_threshold_and_otsu(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "imgs"
    src.mkdir()
    truth = {}
    for i in range(3):
        pore = rng.random((20, 24)) < 0.4
        grey = np.where(pore, 40, 200) + rng.integers(-20, 20, pore.shape)  # dark pores, noisy
        tifffile.imwrite(src / f"img{i}.tif", grey.astype(np.uint8))
        truth[f"img{i}"] = pore
    out = importers.import_volumes("images2d", [src], tmp_path / "otsu", otsu=True)
    for sid, pore in truth.items():
        assert np.array_equal(read_volume(out / "volumes" / f"{sid}.tif"), pore)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["dims"] == 2 and meta["binarization"]["method"].startswith("otsu")
    assert meta["binarization"]["pore"] == "value <= threshold"
    out = importers.import_volumes("images2d", [src], tmp_path / "thr", threshold=120)
    assert np.array_equal(read_volume(out / "volumes" / "img0.tif"), truth["img0"])
    assert yaml.safe_load((out / "dataset.yaml").read_text())["binarization"]["threshold"] == 120


def test_2d_tif_folder_with_one_shared_otsu_threshold(tmp_path, capsys):
    """--otsu-shared: one Otsu threshold of all images' pooled grey values, the same rule for every
    image (an image that is nearly all solid is not split at its own noise, as per-image Otsu does)."""
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(1)
    src = tmp_path / "imgs"
    src.mkdir()
    greys = {}
    for i, frac in enumerate((0.5, 0.4, 0.02)):  # the last image: 2% pores
        pore = rng.random((20, 24)) < frac
        greys[f"img{i}"] = (np.where(pore, 60, 190) + rng.integers(-25, 25, pore.shape)).astype(np.uint8)
        tifffile.imwrite(src / f"img{i}.tif", greys[f"img{i}"])
    t = threshold_otsu(np.concatenate([g.ravel() for g in greys.values()]))
    assert importers.main(["--kind", "images2d", str(src), "--otsu-shared", "--out", str(tmp_path / "ds")]) == 0
    meta = yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())
    assert meta["binarization"]["method"] == "otsu (shared)" and meta["binarization"]["threshold"] == pytest.approx(t)
    for sid, g in greys.items():
        assert np.array_equal(read_volume(tmp_path / "ds" / "volumes" / f"{sid}.tif"), g <= t)
    assert read_volume(tmp_path / "ds" / "volumes" / "img2.tif").mean() < 0.05  # per-image Otsu: ~half pore
    # one image: the shared threshold is that image's own Otsu threshold
    one = importers.import_volumes("images2d", [src / "img0.tif"], tmp_path / "one", otsu_shared=True)
    per = importers.import_volumes("images2d", [src / "img0.tif"], tmp_path / "per", otsu=True)
    assert np.array_equal(read_volume(one / "volumes" / "img0.tif"), read_volume(per / "volumes" / "img0.tif"))

    # bad input names the file: a NaN in a float image; one grey value in every image
    tifffile.imwrite(src / "img1.tif", np.where(greys["img1"] > 128, np.nan, 1.0).astype(np.float32))
    assert importers.main(["--kind", "images2d", str(src), "--otsu-shared", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "img1.tif: " in err and "non-finite grey value" in err and not (tmp_path / "bad").exists()
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(2):
        tifffile.imwrite(flat / f"f{i}.tif", np.full((8, 8), 7, np.uint8))
    with pytest.raises(DataError, match=r"f0.tif \.\.\. .*f1.tif \(2 files\): a single grey value \(7\) in all images"):
        importers.import_volumes("images2d", [flat], tmp_path / "bad2", otsu_shared=True)
    assert no_leftovers(tmp_path)


def test_reference_table_mapping():
    table = pd.read_csv(REFERENCE, dtype=str)
    mapping = importers.parse_mapping(map_file=FOAM_MAP)
    df = importers.map_properties(table, mapping, dims=3, source=str(REFERENCE))
    assert list(df.columns[:5]) == ["sample_id", "porosity", "k_xx", "k_yy", "k_zz"]
    assert len(df) == len(table)
    first = df.iloc[0]
    assert first.sample_id == "1" and first.porosity == pytest.approx(0.7661625)
    assert (first.k_xx, first.k_yy, first.k_zz) == pytest.approx((2.31237, 2.48692, 2.77601))
    assert df.porosity.between(0.4, 0.9).all() and (df.labeler == "imported").all()
    # the same mapping given on the command line
    assert importers.parse_mapping(["case=sample_id", "n_F=porosity", "Permeability_x=k_xx",
                                    "Permeability_y=k_yy", "Permeability_z=k_zz"]) == mapping


def test_csv_with_volumes_and_missing_ids(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ims = {}
    for case in (1, 2, 3):  # volumes named 001.tif ... match CSV cases 1, 2, 3 numerically
        ims[case] = vol(case)
        tifffile.imwrite(src / f"{case:03d}.tif", ims[case].astype(np.uint8))
    csv = tmp_path / "props.csv"
    pd.DataFrame({"case": [1, 2, 3, 4], "n_F": [float(ims.get(c, vol(0)).mean()) for c in (1, 2, 3, 4)],
                  "Permeability_x": [1.0, 2, 3, 4], "Permeability_y": [1.0, 2, 3, 4],
                  "Permeability_z": [1.0, 2, 3, 4]}).to_csv(csv, index=False)
    mapping = importers.parse_mapping(map_file=FOAM_MAP)
    with pytest.raises(DataError, match=r"1 id\(s\) in .*props.csv have no volume: \['4'\]"):
        importers.import_volumes("stack", [src], tmp_path / "ds", properties=csv, mapping=mapping)
    assert not (tmp_path / "ds").exists() and no_leftovers(tmp_path)
    with pytest.warns(UserWarning, match="have no volume"):
        out = importers.import_volumes("stack", [src], tmp_path / "ds", properties=csv, mapping=mapping,
                                       allow_missing=True)
    props = read_properties(out)
    assert list(props.sample_id) == ["001", "002", "003"] and list(props.k_zz) == [1.0, 2.0, 3.0]
    # the reverse: a volume without a row
    tifffile.imwrite(src / "009.tif", vol(9).astype(np.uint8))
    with pytest.raises(DataError, match=r"volume\(s\) have no row in .*: \['009'\]"):
        importers.import_volumes("stack", [src], tmp_path / "ds2", properties=csv, mapping=mapping)


def test_csv_nan_names_column_and_sample(tmp_path):
    table = pd.DataFrame({"case": ["1", "2"], "n_F": ["0.5", "nan"], "Permeability_x": ["1", "2"]})
    with pytest.raises(DataError, match=r"NaN .* column 'n_F' \(porosity\) for sample\(s\) \['2'\]"):
        importers.map_properties(table, {"case": "sample_id", "n_F": "porosity", "Permeability_x": "k_xx"}, 3)
    with pytest.raises(DataError, match="not properties.csv columns"):
        importers.map_properties(table, {"case": "sample_id", "n_F": "phi"}, 3)
    with pytest.raises(DataError, match="column\\(s\\) \\['n_G'\\] not found"):
        importers.map_properties(table, {"case": "sample_id", "n_G": "porosity"}, 3)


@pytest.mark.parametrize("case", ["not_image", "not_binary", "wrong_dims", "unequal", "gap", "mixed_slices"])
def test_bad_input_messages(tmp_path, case):
    src = tmp_path / "src"
    src.mkdir()
    kind = "stack"
    if case == "not_image":
        (src / "bad.tif").write_text("hello")
        expect = r"bad.tif: not a readable image"
    elif case == "not_binary":
        tifffile.imwrite(src / "grey.tif", np.arange(210, dtype=np.uint8).reshape(5, 6, 7))
        expect = r"grey.tif: not binary \(210 distinct values.*give --threshold T, --otsu or --otsu-shared"
    elif case == "wrong_dims":
        tifffile.imwrite(src / "flat.tif", vol(0)[0].astype(np.uint8))
        expect = r"flat.tif: wrong dimensionality: --kind stack expects 3D, got shape \(8, 10\); use --kind images2d"
    elif case == "unequal":
        tifffile.imwrite(src / "a.tif", vol(0).astype(np.uint8))
        tifffile.imwrite(src / "b.tif", vol(1, (6, 8, 11)).astype(np.uint8))
        expect = r"b.tif: shape \(6, 8, 11\) differs from .*a.tif \(6, 8, 10\)"
    elif case == "gap":
        kind = "slices"
        write_slices(src / "s", vol(0), names=[f"slice_{i:03d}.png" for i in (1, 2, 4, 5, 6, 7)])
        expect = r"s: gap in slice numbers \(missing 3..3\) between slice_002.png and slice_004.png"
    else:
        kind = "slices"
        write_slices(src / "s", vol(0))
        Image.fromarray(np.zeros((9, 10), np.uint8)).save(src / "s" / "slice_7.bmp")
        expect = r"slice_7.bmp: slice size \(9, 10\) differs from slice_1.bmp \(8, 10\)"
    with pytest.raises(DataError, match=expect):
        importers.import_volumes(kind, [src], tmp_path / "ds")
    assert not (tmp_path / "ds").exists() and no_leftovers(tmp_path)


def test_import_command(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "x.tif", vol(0).astype(np.uint8))
    assert importers.main([str(tmp_path / "x.tif"), "--out", str(tmp_path / "ds")]) == 0
    assert importers.main([str(tmp_path / "x.tif"), "--out", str(tmp_path / "ds")]) == 2
    assert "already exists" in capsys.readouterr().err
    csv = tmp_path / "p.csv"
    pd.DataFrame({"case": ["x"], "n_F": [0.5]}).to_csv(csv, index=False)
    assert importers.main(["--properties", str(csv), "--map", "case=sample_id", "--map", "n_F=porosity",
                           "--out", str(tmp_path / "ds")]) == 0
    assert read_properties(tmp_path / "ds").porosity.tolist() == [0.5]
