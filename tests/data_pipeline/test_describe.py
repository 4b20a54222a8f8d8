"""Descriptors against closed forms, and the describe command."""
import json

import numpy as np
import pandas as pd
import pytest

from data_pipeline import descriptors as d
from data_pipeline import describe, synth
from data_pipeline.io import write_volume, write_yaml


def test_s2_limits_on_uncorrelated_noise():
    rng = np.random.default_rng(0)
    im = rng.random((40, 40, 40)) < 0.3
    r, s2 = d.two_point_correlation(im)
    phi = im.mean()
    assert r[0] == 0 and s2[0] == pytest.approx(phi, abs=1e-12)
    assert np.allclose(s2[1:], phi ** 2, atol=0.005)


@pytest.mark.parametrize("shape", [(6, 8, 10), (12, 9)])
def test_s2_matches_direct_periodic_sum(shape):
    # brute force: S2(v) = mean(im * roll(im, v)) over every lattice vector v, binned by |v|
    im = np.random.default_rng(1).random(shape) < 0.4
    r, s2 = d.two_point_correlation(im)
    sums, counts = np.zeros(len(r)), np.zeros(len(r))
    for v in np.ndindex(*shape):
        v = [vi if vi <= n // 2 else vi - n for vi, n in zip(v, shape)]  # minimum image
        b = int(np.rint(np.sqrt(np.sum(np.square(v)))))
        if b < len(r):
            sums[b] += np.mean(im & np.roll(im, v, axis=tuple(range(im.ndim))))
            counts[b] += 1
    assert np.allclose(s2, sums / counts, atol=1e-12)


def test_specific_surface_slab_and_sphere():
    L = 32
    slab = np.zeros((L, L, L), bool)
    slab[:, :, 8:20] = True
    assert d.specific_surface(slab, "faces") == pytest.approx(2 * L * L / L ** 3)
    assert d.specific_surface(slab) == pytest.approx(2 * L * L / L ** 3, rel=1e-6)
    z, y, x = np.mgrid[:L, :L, :L] - (L - 1) / 2
    r = 9.0
    ball = (x ** 2 + y ** 2 + z ** 2) > r ** 2  # solid sphere in pore
    exact = 4 * np.pi * r ** 2 / L ** 3
    assert d.specific_surface(ball) == pytest.approx(exact, rel=0.01)
    assert d.specific_surface(ball, "faces") == pytest.approx(1.5 * exact, rel=0.1)
    disk = (x[0] ** 2 + y[0] ** 2) > r ** 2
    assert d.specific_surface(disk) == pytest.approx(2 * np.pi * r / L ** 2, rel=0.02)
    # periodic: a sphere split across the box faces has the same area as a centred one
    shifted = np.roll(ball, (L // 2, 5, L // 2), axis=(0, 1, 2))
    assert d.specific_surface(shifted) == pytest.approx(d.specific_surface(ball), rel=0.01)


def test_local_thickness_of_slab():
    slab = np.zeros((20, 20, 20), bool)
    slab[:, :, 5:11] = True
    psd = d.pore_size_distribution(slab)
    assert psd["mean"] == pytest.approx(6.0) and psd["median"] == pytest.approx(6.0)
    assert sum(psd["fraction"]) == pytest.approx(1.0)


def test_percolation_axes():
    im = np.zeros((10, 12, 14), bool)  # (Z, Y, X)
    im[5, 6, :] = True                   # a line along x
    assert d.percolates(im) == {"x": True, "y": False, "z": False}
    im2 = np.zeros((12, 14), bool)       # (Y, X)
    im2[:, 3] = True
    assert d.percolates(im2) == {"x": False, "y": True}


def test_describe_command(tmp_path):
    root = tmp_path / "ds"
    for i in range(3):
        write_volume(root / "volumes" / f"s{i:05d}.tif", synth.blobs((16, 16, 16), 0.4 + 0.1 * i, seed=i))
    write_yaml(root / "dataset.yaml", {"dims": 3, "shape": [16, 16, 16]})
    pd.DataFrame({"sample_id": ["s00000", "s00001", "s00002"], "porosity": [0.4, 0.5, 0.6],
                  "k_xx": [0.01, 0.05, 0.1], "k_yy": [0.01, 0.05, 0.1], "k_zz": [0.01, 0.05, 0.1]}
                 ).to_csv(root / "properties.csv", index=False)
    assert describe.main([str(root), "--no-progress"]) == 0
    out = root / "describe"
    df = pd.read_csv(out / "descriptors.csv")
    assert list(df.sample_id) == ["s00000", "s00001", "s00002"]
    assert np.allclose(df.porosity, [0.4, 0.5, 0.6], atol=1e-3)
    assert {"percolates_x", "specific_surface", "anisotropy", "pore_diameter_mean"} <= set(df.columns)
    assert (df.anisotropy >= 1.0).all() and (df.anisotropy < 1.5).all()  # isotropic blobs
    data = json.loads((out / "descriptors.json").read_text())
    assert len(data["samples"][0]["s2"]) == 9
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert describe.main([str(tmp_path / "missing")]) == 2
