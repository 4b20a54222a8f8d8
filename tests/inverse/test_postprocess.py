"""Binarization (stated threshold rules) and cleaning of decoded fields."""
import numpy as np
import pytest
from scipy import ndimage

from inverse.postprocess import binarize, binarize_clean, clean, porosity_threshold


@pytest.mark.parametrize("shape", [(24, 24), (12, 12, 12)])
@pytest.mark.parametrize("phi", [0.1, 0.37, 0.8])
def test_target_rule_hits_the_porosity_to_one_voxel(shape, phi):
    prob = np.random.default_rng(0).random(shape)
    im, t = binarize(prob, "target", phi)
    assert abs(im.mean() - phi) <= 0.5 / prob.size + 1e-12
    assert np.array_equal(im, prob > t)


def test_decoded_and_fixed_rules():
    prob = ndimage.gaussian_filter(np.random.default_rng(1).random((20, 20, 20)), 1.5, mode="wrap")
    im, _ = binarize(prob, "decoded")
    assert abs(im.mean() - prob.mean()) <= 1 / prob.size
    im, t = binarize(prob, "fixed", fixed=0.5)
    assert t == 0.5 and np.array_equal(im, prob > 0.5)
    with pytest.raises(ValueError, match="needs a porosity"):
        binarize(prob, "target")
    assert porosity_threshold(prob, 0.0) >= prob.max() and (prob > porosity_threshold(prob, 1.0)).all()


def test_clean_removes_floating_solid_and_isolated_pores_but_keeps_the_channel():
    im = np.zeros((16, 16, 16), dtype=bool)
    im[:, 6:10, 6:10] = True           # a channel spanning z: the flowing pore space
    im[7:9, 7:9, 7:9] = False          # a floating solid speck inside it (8 voxels)
    im[2:4, 1:3, 12:14] = True         # an isolated pore (8 voxels)
    im[:, 0, 0] = False
    out, info = clean(im, max_island=16)
    assert info["spanning"] and info["solid_removed"] == 8 and info["pores_removed"] == 8
    assert out[7:9, 7:9, 7:9].all() and not out[2:4, 1:3, 12:14].any()
    assert out[:, 6:10, 6:10].all()
    # a solid cluster touching the faces (the matrix) is never removed, nor a large one
    out2, info2 = clean(im, max_island=4)
    assert info2["solid_removed"] == 0 and not out2[7:9, 7:9, 7:9].any()


def test_clean_leaves_non_percolating_volumes_alone():
    im = np.zeros((10, 10), dtype=bool)
    im[3:5, 3:5] = True
    out, info = clean(im)
    assert not info["spanning"] and np.array_equal(out, im)


def test_binarize_clean_matches_the_porosity_after_cleaning():
    rng = np.random.default_rng(3)
    prob = ndimage.gaussian_filter(rng.random((16, 16, 16)), 1.0, mode="wrap")
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    for phi in (0.3, 0.5):
        im, t, info = binarize_clean(prob, "target", phi, max_island=64)
        assert abs(im.mean() - phi) <= 0.005, (phi, im.mean(), info)
        again, info2 = clean(im, 64)  # idempotent: nothing left to clean
        assert np.array_equal(again, im) and info2["spanning"]


@pytest.mark.parametrize("shape", [(48, 48), (16, 16, 16)])
@pytest.mark.parametrize("shift", [-40, -7, 7, 40])
def test_flip_to_count_meets_the_pore_count_without_changing_either_phase_topology(shape, shift):
    """binarize_clean's last step: the voxels nearest the threshold are flipped until the pore count
    is exact, only where the flip cuts or makes no cluster of either phase (face connectivity)."""
    from inverse.postprocess import flip_to_count

    structure = ndimage.generate_binary_structure(len(shape), 1)
    prob = ndimage.gaussian_filter(np.random.default_rng(5).random(shape), 1.5, mode="wrap")
    im = prob > np.quantile(prob, 0.5)
    n_pore = int(im.sum()) + shift
    out = flip_to_count(im, prob, n_pore)
    assert int(out.sum()) == n_pore and int((out != im).sum()) == abs(shift)
    assert out[im != out].all() == (shift > 0)  # all flips go one way
    for phase in (True, False):  # the same clusters, each the same or one grown / shrunk
        a, na = ndimage.label(im == phase, structure)
        b, nb = ndimage.label(out == phase, structure)
        assert na == nb
    # among the voxels that could flip, the ones nearest the threshold did (up to the topology test)
    moved = prob[out != im]
    stay = prob[(out == im) & (im != (shift > 0))]
    if shift > 0:
        assert np.median(moved) > np.quantile(stay, 0.9)
    else:
        assert np.median(moved) < np.quantile(stay, 0.1)
    assert flip_to_count(im, prob, int(im.sum())) is not im  # a copy even when nothing flips
