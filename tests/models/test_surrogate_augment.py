"""Tensor-aware augmentation: a symmetry of the box maps volume AND permeability tensor together.

Checked three ways: algebra (column map == A k A^T), geometry without the solver (the Kozeny-Carman
proxy's anisotropic k_ii follow the array axes, which pins the (Z, Y, X) vs (x, y, z) convention),
and physics with the LBM solver (an inclined-channel sample with k_xy, k_xz != 0, re-solved after
permuting/flipping, gives the mapped tensor).
"""
import numpy as np
import pytest
import torch

from data_pipeline.io import K_COLUMNS
from models.surrogate.augment import (Symmetry, TensorAugmenter, all_symmetries, random_shifts,
                                      symmetry_group, tensor_from_row)
from models.toy import kozeny_carman_proxy, toy_volume


def _random_spd(dims, seed):
    a = np.random.default_rng(seed).normal(size=(dims, dims))
    return a @ a.T + dims * np.eye(dims)


def _row(k):
    d = k.shape[0]
    return {c: k["xyz".index(c[2]), "xyz".index(c[3])] for c in K_COLUMNS[d]}


@pytest.mark.parametrize("dims, size", [(2, 8), (3, 48)])
def test_group_is_all_signed_permutations(dims, size):
    group = all_symmetries(dims)
    assert len(group) == size and group[0].is_identity()
    mats = {g.matrix().tobytes() for g in group}
    assert len(mats) == size
    for g in group:  # closed under inverse and composition with the inverse is the identity
        assert np.array_equal(g.matrix() @ g.inverse().matrix(), np.eye(dims))
        assert g.inverse().matrix().tobytes() in mats


@pytest.mark.parametrize("dims", [2, 3])
def test_column_map_equals_A_k_At(dims):
    k = _random_spd(dims, 0)
    names = ["porosity"] + K_COLUMNS[dims]
    y = np.array([[0.37] + [_row(k)[c] for c in K_COLUMNS[dims]]])  # (1, P)
    for g in all_symmetries(dims):
        mapped = g.apply_columns(y, names)[0]
        expected = g.apply_tensor(k)
        assert mapped[0] == 0.37  # porosity invariant
        np.testing.assert_allclose(tensor_from_row(dict(zip(names, mapped)), dims), expected, rtol=1e-12)
        np.testing.assert_allclose(np.diag(expected), np.diag(k)[list(g.perm)])  # diagonal is permuted


def test_known_anisotropic_tensor():
    # k in (x, y, z) indices; all six components distinct
    k = np.array([[9.0, 2.0, 1.0], [2.0, 5.0, 0.5], [1.0, 0.5, 3.0]])
    names = K_COLUMNS[3]  # k_xx, k_yy, k_zz, k_xy, k_xz, k_yz
    y = np.array([[9.0, 5.0, 3.0, 2.0, 1.0, 0.5]])
    flip_x = Symmetry((0, 1, 2), (-1, 1, 1))
    assert flip_x.apply_columns(y, names).tolist() == [[9.0, 5.0, 3.0, -2.0, -1.0, 0.5]]
    swap_xz = Symmetry((2, 1, 0), (1, 1, 1))  # new x = old z
    assert swap_xz.apply_columns(y, names).tolist() == [[3.0, 5.0, 9.0, 0.5, 1.0, 2.0]]
    np.testing.assert_allclose(swap_xz.apply_tensor(k), k[::-1, ::-1])
    # flipping two axes leaves the off-diagonal between them unchanged
    flip_xy = Symmetry((0, 1, 2), (-1, -1, 1))
    assert flip_xy.apply_columns(y, names).tolist() == [[9.0, 5.0, 3.0, 2.0, -1.0, -0.5]]


def test_volume_convention_x_is_last_array_axis():
    im = np.zeros((4, 4, 4), dtype=bool)
    im[1, 2, :] = True  # a channel along x = the last array axis
    swap_xz = Symmetry((2, 1, 0), (1, 1, 1))
    out = swap_xz.apply_volume(im)
    assert out[:, 2, 1].all() and out.sum() == 4  # now along z = array axis 0
    flip_y = Symmetry((0, 1, 2), (1, -1, 1))
    assert flip_y.apply_volume(im)[1, 1, :].all()  # y index 2 -> 4 - 1 - 2 = 1
    batch = torch.from_numpy(np.stack([im, im]))[:, None]  # (2, 1, 4, 4, 4)
    assert torch.equal(swap_xz.apply_volume(batch, batch_dims=2)[0, 0], torch.from_numpy(out))


@pytest.mark.parametrize("dims", [2, 3])
def test_geometry_proxy_follows_every_symmetry(dims):
    """The Kozeny-Carman proxy of an anisotropic volume: k_ii of the mapped volume = mapped k_ii."""
    im = toy_volume(16, dims, np.random.default_rng(3))
    names = ["porosity"] + [f"k_{a}{a}" for a in "xyz"[:dims]]
    base = kozeny_carman_proxy(im)
    y = np.array([[base[n] for n in names]])
    assert np.ptp(y[0, 1:]) > 0.05 * y[0, 1:].mean()  # really anisotropic, else the test is empty
    for g in all_symmetries(dims):
        got = kozeny_carman_proxy(np.ascontiguousarray(g.apply_volume(im)))
        np.testing.assert_allclose([got[n] for n in names], g.apply_columns(y, names)[0], rtol=1e-12)


def test_subgroup_when_only_some_components_are_targets():
    assert len(symmetry_group(3, ["porosity", "k_xx", "k_yy", "k_zz"])) == 48
    assert len(symmetry_group(3, ["porosity"] + K_COLUMNS[3])) == 48
    only_x = symmetry_group(3, ["porosity", "k_xx"])  # k_xx stays k_xx: x may be flipped, not moved
    assert all(g.perm[0] == 0 for g in only_x) and len(only_x) == 16
    assert len(symmetry_group(3, ["k_xx", "k_yy", "k_zz", "k_xy"])) == 16  # keeps z, may swap x and y


def test_augmenter_maps_targets_with_the_volume():
    """Whatever symmetry is drawn, the augmented targets are the proxy of the augmented volumes."""
    rng = np.random.default_rng(0)
    ims = np.stack([toy_volume(12, 3, rng) for _ in range(3)])
    names = ["porosity", "k_xx", "k_yy", "k_zz"]
    y = np.array([[kozeny_carman_proxy(im)[n] for n in names] for im in ims])
    y_log = y.copy()
    y_log[:, 1:] = np.log10(y_log[:, 1:])
    aug = TensorAugmenter(3, names, seed=5)
    x = torch.from_numpy(ims).float()[:, None]
    seen = set()
    for _ in range(12):
        xa, ya = aug(x, torch.from_numpy(y_log))
        seen.add(xa.numpy().tobytes())
        for i in range(len(ims)):
            p = kozeny_carman_proxy(xa[i, 0].numpy() > 0.5)
            np.testing.assert_allclose([p["porosity"]] + [np.log10(p[n]) for n in names[1:]], ya[i].numpy(),
                                       rtol=1e-6, atol=1e-9)
    assert len(seen) > 3  # it draws different symmetries


@pytest.mark.parametrize("dims", [2, 3])
def test_random_shifts_roll_each_sample_on_its_own(dims):
    size = 6
    x = torch.zeros((5, 1) + (size,) * dims)
    x[(slice(None), 0) + (0,) * dims] = 1.0  # one pore voxel per sample, at the origin
    x[:, :, 1] += 0.5  # and a marked first plane, so the whole volume must move with it
    out = random_shifts(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    where = [tuple(torch.nonzero(o[0] == 1.0).flatten().tolist()) for o in out]  # the origin's new place
    for o, w in zip(out, where):
        assert len(w) == dims
        torch.testing.assert_close(o, torch.roll(x[0], w, tuple(range(1, dims + 1))))
    assert len(set(where)) > 1  # samples shifted independently
    again = random_shifts(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, out)  # reproducible from the generator


# --- physics: the lattice Boltzmann solver ------------------------------------------------------
def _inclined_channels(n=12):
    z, y, x = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    im = (((x - 2 * y) % n) < 4) & (z < 9)  # channels along (2, 1, 0): k_xy != 0
    im |= (((x + 2 * z) % n) < 3) & (y >= 10) & (y < 14)  # channels along (2, 0, -1): k_xz != 0
    return im


def test_solver_tensor_maps_under_permutation_and_flip():
    from data_pipeline.permeability import permeability

    im = _inclined_channels()
    k = permeability(im, device="cpu", tol=1e-5).k  # 12^3: k_xx 0.046, k_xy 0.021, k_xz -0.0016 voxel^2
    scale = np.abs(k).max()
    assert abs(k[0, 1]) > 0.2 * scale and abs(k[0, 2]) > 0.02 * scale  # genuinely off-diagonal
    assert np.ptp(np.diag(k)) > 0.5 * scale  # and anisotropic
    # a flip alone, and a cyclic permutation with two flips (every off-diagonal moves, some change sign)
    for g in (Symmetry((0, 1, 2), (-1, 1, 1)), Symmetry((2, 0, 1), (-1, 1, -1))):
        k_g = permeability(np.ascontiguousarray(g.apply_volume(im)), device="cpu", tol=1e-5).k
        np.testing.assert_allclose(k_g, g.apply_tensor(k), atol=1e-3 * scale, err_msg=str(g))  # measured 2e-5


def test_solver_tensor_is_invariant_under_periodic_shift():
    """random_shifts leaves the labels as they are: the solver's box is periodic on every axis."""
    from data_pipeline.permeability import permeability

    im = _inclined_channels()
    k = permeability(im, device="cpu", tol=1e-5).k
    k_s = permeability(np.ascontiguousarray(np.roll(im, (5, -3, 7), (0, 1, 2))), device="cpu", tol=1e-5).k
    np.testing.assert_allclose(k_s, k, atol=1e-3 * np.abs(k).max())


def test_augmenter_with_shifts_only_rolls_and_keeps_the_targets():
    aug = TensorAugmenter(2, ["k_xx", "k_yy", "k_xy"], seed=0, symmetries=False, shifts=True)
    assert len(aug) == 1 and aug.shifts
    x = torch.zeros(4, 1, 8, 8)
    x[:, 0, 0, :3] = 1.0  # a short segment along x at the origin
    y = torch.tensor([[0.1, 0.2, 0.3]] * 4)
    xa, ya = aug(x, y)
    torch.testing.assert_close(ya, y)  # a periodic shift changes no component, off-diagonals included
    for a in xa:
        iy, ix = torch.nonzero(a[0]).T
        assert len(set(iy.tolist())) == 1 and a.sum() == 3  # the same segment, moved, not rotated
