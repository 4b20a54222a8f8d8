"""transfer.py: a dataset folder packed into one object and unpacked elsewhere is the same dataset."""
import numpy as np
import pandas as pd
import pytest

from data_pipeline.dataset import VoxelDataset, dataset_hash
from data_pipeline.io import DataError, write_properties, write_volume, write_yaml
from data_pipeline.transfer import dataset_files, dataset_size, pack_dataset, unpack_dataset


@pytest.fixture
def tiny_dataset(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        im = rng.random((6, 6, 6)) < 0.6
        write_volume(root / "volumes" / f"s{i:05d}.tif", im)
        rows.append({"sample_id": f"s{i:05d}", "porosity": float(im.mean()), "k_xx": 1.0 + i, "k_yy": 2.0,
                     "k_zz": 3.0, "k_xy": 0.0, "k_xz": 0.0, "k_yz": 0.0, "labeler": "lbm", "status": "ok", "error": ""})
    write_yaml(root / "dataset.yaml", {"dims": 3, "shape": [6, 6, 6]})
    write_properties(root, pd.DataFrame(rows))
    return root


def test_round_trip_is_the_same_dataset_and_skips_the_cache(tiny_dataset, tmp_path):
    VoxelDataset(tiny_dataset, "all")  # writes cache/volumes-<key>.npy: derived, never shipped
    assert (tiny_dataset / "cache").is_dir()
    packed = pack_dataset(tiny_dataset)
    assert not any(name.startswith("cache/") for name in packed["files"])
    assert sum(map(len, packed["files"].values())) == dataset_size(tiny_dataset)
    assert len(dataset_files(tiny_dataset)) == 8  # dataset.yaml, properties.csv, 6 volumes

    copy = unpack_dataset(packed, tmp_path / "node")
    assert copy == tmp_path / "node" / packed["key"]
    assert dataset_hash(copy) == dataset_hash(tiny_dataset)
    a, b = VoxelDataset(tiny_dataset, "all"), VoxelDataset(copy, "all")
    assert a.ids == b.ids and np.array_equal(a.volumes(), b.volumes()) and np.array_equal(a.targets, b.targets)
    assert [p.name for p in (tmp_path / "node").iterdir()] == [packed["key"]]  # no temporary left

    # a second unpack (another trial on the node) reuses the copy; a changed volume gets a new key
    assert unpack_dataset(packed, tmp_path / "node") == copy
    write_volume(tiny_dataset / "volumes" / "s00000.tif", np.ones((6, 6, 6), bool))
    assert pack_dataset(tiny_dataset)["key"] != packed["key"]


def test_unsafe_paths_and_non_datasets_are_refused(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="not a dataset folder"):
        pack_dataset(tmp_path / "nothing")
    with pytest.raises(DataError, match="unsafe path"):
        unpack_dataset({"key": "k", "files": {"../evil": b"x"}}, tmp_path / "node")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "node" / "k").exists()
