"""io.py and dataset.py: TIFF round trip, splits, nested subsets, the volume cache."""
import numpy as np
import pandas as pd
import pytest
import torch

from data_pipeline.dataset import VoxelDataset, labeled_table, split_ids, subset_ids
from data_pipeline.io import DataError, read_volume, write_volume, write_yaml


@pytest.mark.parametrize("shape", [(7, 9, 11), (13, 5)])
def test_tiff_round_trip_identical(tmp_path, shape):
    im = np.random.default_rng(0).random(shape) < 0.5
    write_volume(tmp_path / "v.tif", im)
    back = read_volume(tmp_path / "v.tif")
    assert back.dtype == bool and back.shape == shape and np.array_equal(back, im)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    assert np.array_equal(read_volume(tmp_path / "v.tif", pore_value=0), ~im)


def test_read_volume_rejects_grey(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "g.tif", np.arange(30, dtype=np.uint8).reshape(5, 6), photometric="minisblack")
    with pytest.raises(DataError, match="g.tif: not binary"):
        read_volume(tmp_path / "g.tif")


def test_split_deterministic_disjoint_order_free():
    ids = [f"s{i:05d}" for i in range(50)]
    a = split_ids(ids, seed=3)
    assert a == split_ids(list(reversed(ids)), seed=3)
    assert a != split_ids(ids, seed=4)
    sets = [set(a[k]) for k in ("train", "val", "test")]
    assert sum(map(len, sets)) == 50 and set.union(*sets) == set(ids)
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (40, 5, 5)


def test_subsets_nested():
    ids = [f"s{i}" for i in range(40)]
    small, mid, full = (subset_ids(ids, n, seed=1) for n in (5, 20, None))
    assert set(small) <= set(mid) <= set(full) and len(small) == 5 and len(full) == 40
    assert subset_ids(ids, 20, seed=1) == mid


def make_dataset(root, n=10, shape=(8, 8, 8)):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        im = rng.random(shape) < 0.5
        write_volume(root / "volumes" / f"s{i:05d}.tif", im)
        rows.append({"sample_id": f"s{i:05d}", "porosity": im.mean(), "k_xx": 0.1 * i, "k_yy": 0.2, "k_zz": 0.3,
                     "status": "failed" if i == 9 else "ok"})
    write_yaml(root / "dataset.yaml", {"dims": 3, "shape": list(shape)})
    pd.DataFrame(rows).to_csv(root / "properties.csv", index=False)


def test_voxel_dataset_items_and_cache_reuse(tmp_path):
    make_dataset(tmp_path)
    assert "s00009" not in set(labeled_table(tmp_path).sample_id)  # failed rows are not training data
    ds = VoxelDataset(tmp_path, split="all")
    assert len(ds) == 9
    x, y = ds[2]
    assert x.shape == (1, 8, 8, 8) and x.dtype == torch.float32 and y.shape == (4,)
    assert torch.equal(x[0].bool(), torch.from_numpy(read_volume(tmp_path / "volumes" / "s00002.tif")))
    assert y[1].item() == pytest.approx(0.2)
    caches = list((tmp_path / "cache").glob("*.npy"))
    assert len(caches) == 1
    mtime = caches[0].stat().st_mtime_ns
    ds2 = VoxelDataset(tmp_path, split="all")
    assert list((tmp_path / "cache").glob("*.npy")) == caches and caches[0].stat().st_mtime_ns == mtime
    assert np.array_equal(ds2.volumes(), ds.volumes())
    train = VoxelDataset(tmp_path, split="train")
    val = VoxelDataset(tmp_path, split="val")
    assert not set(train.ids) & set(val.ids)


def test_cache_follows_a_volume_replaced_under_the_same_id(tmp_path):
    """Issue 15, item 4: a volume rewritten under the same id is read anew, not served from the cache."""
    make_dataset(tmp_path)
    old = VoxelDataset(tmp_path, split="all")
    path = tmp_path / "volumes" / "s00002.tif"
    before = read_volume(path)
    write_volume(path, ~before)  # same id, same shape, new content
    new = VoxelDataset(tmp_path, split="all")
    i = new.ids.index("s00002")
    assert np.array_equal(new.volumes()[i], ~before)
    assert np.array_equal(old.volumes()[i], before)  # an open dataset keeps its own snapshot
    # the other volumes are unchanged
    others = [j for j in range(len(new)) if j != i]
    assert np.array_equal(new.volumes()[others], old.volumes()[others])


def test_a_descriptor_target_is_measured_on_the_volumes_when_properties_csv_lacks_it(tmp_path):
    from data_pipeline.morphology import chord_length, surface_from_faces

    make_dataset(tmp_path)
    ds = VoxelDataset(tmp_path, split="all", properties=["porosity", "specific_surface", "chord_length"])
    assert ds.targets.shape == (9, 3)
    for i, v in enumerate(ds.volumes()):
        assert ds.targets[i, 1] == pytest.approx(surface_from_faces(v), rel=1e-6)
        assert ds.targets[i, 2] == pytest.approx(chord_length(v), rel=1e-6)
    with pytest.raises(DataError, match=r"properties.csv: no column\(s\) \['anisotropy'\]"):
        VoxelDataset(tmp_path, split="all", properties=["porosity", "anisotropy"])
