"""Morphology metrics against closed forms."""
import numpy as np
import pytest

from data_pipeline import morphology as mo


@pytest.mark.parametrize("dims", [2, 3])
def test_s2_limits_random_structure(dims):
    rng = np.random.default_rng(0)
    im = rng.random((64,) * dims) < 0.3
    s2 = mo.s2_curve(im)
    phi = im.mean()
    assert s2[0] == pytest.approx(phi, abs=1e-12)  # S2(0) = porosity
    assert np.abs(s2[2:] - phi ** 2).max() < 0.01  # uncorrelated: S2 -> phi^2 at any lag > 0


def test_specific_surface_slab_and_sphere():
    slab = np.zeros((32, 32, 32), bool)
    slab[:, :, 8:20] = True  # two planes of 32 x 32 in a 32^3 periodic box
    # the face count is exact for axis-aligned planes; the isotropic factor 1.5 is divided out
    assert mo.morphology(slab)["specific_surface"] == pytest.approx(2 * 32 * 32 / 32 ** 3 / 1.5, rel=1e-9)
    z, y, x = np.indices((48, 48, 48)) - 23.5
    r = 12.0
    ball = x ** 2 + y ** 2 + z ** 2 <= r ** 2
    r_vol = (3 * ball.sum() / (4 * np.pi)) ** (1 / 3)  # radius of the voxelised volume
    assert mo.morphology(ball)["specific_surface"] == pytest.approx(4 * np.pi * r_vol ** 2 / 48 ** 3, rel=0.03)
    # voxel-scale speckle is seen: a random field's surface ~ its face count / 1.5, far above 0
    speckle = np.random.default_rng(0).random((32, 32, 32)) < 0.8
    assert mo.morphology(speckle)["specific_surface"] == pytest.approx(
        3 * 2 * 0.8 * 0.2 / 1.5, rel=0.05)


def test_chord_length_and_euler_closed_forms():
    slab = np.zeros((16, 16, 16), bool)
    slab[:, :, 4:10] = True
    # chords along x are 6 long (16*16 lines), along y and z the whole edge 16 (16*6 lines each)
    expected = (256 * 6 + 2 * 96 * 16) / (256 + 2 * 96)
    assert mo.chord_length(slab) == pytest.approx(expected)
    z, y, x = np.indices((24, 24, 24)) - 11.5
    ball = x ** 2 + y ** 2 + z ** 2 <= 6 ** 2
    assert mo.euler_density(ball) * ball.size == pytest.approx(1.0)  # one component, no tunnel
    ring = (np.hypot(x, y) - 7) ** 2 + z ** 2 <= 2.5 ** 2  # a solid torus of pore
    assert mo.euler_density(ring) * ring.size == pytest.approx(0.0)  # one component, one tunnel


def test_anisotropy_closed_forms():
    """Face densities along each axis: a periodic array of w x h rectangles has 2w faces normal to
    y and 2h normal to x per cell, so anisotropy w / h; stripes never cross one axis; a random field
    is isotropic; transposing a structure swaps its face densities and keeps its anisotropy."""
    cell = np.zeros((4, 16), bool)
    cell[1:3, 4:12] = True  # a 2 x 8 pore rectangle (rows x columns)
    rects = np.tile(cell, (8, 4))  # (32, 64)
    assert mo.face_densities(rects) == pytest.approx([2 * 8 / 64, 2 * 2 / 64])
    assert mo.anisotropy(rects) == pytest.approx(4.0)
    assert mo.anisotropy(rects.T) == pytest.approx(4.0)
    assert mo.face_densities(rects.T) == pytest.approx(mo.face_densities(rects)[::-1])
    stripes = np.zeros((16, 16), bool)
    stripes[:, ::3] = True  # pore columns: the interface never crosses the y axis
    assert mo.anisotropy(stripes) == float("inf")
    assert mo.anisotropy(np.zeros((8, 8, 8), bool)) == 1.0  # no interface at all
    speckle = np.random.default_rng(0).random((48, 48, 48)) < 0.4
    assert mo.anisotropy(speckle) == pytest.approx(1.0, abs=0.03)
    assert mo.morphology(rects)["anisotropy"] == pytest.approx(4.0)


def test_set_comparison():
    rng = np.random.default_rng(1)
    a = [rng.random((24, 24, 24)) < p for p in (0.3, 0.5, 0.7)]
    same = mo.compare_sets(mo.describe_set(a), mo.describe_set(a))
    assert same["porosity_wasserstein"] == pytest.approx(0.0, abs=1e-12)
    assert same["s2_nearest_median"] == pytest.approx(0.0, abs=1e-9)
    assert same["specific_surface_ratio"] == pytest.approx(1.0)
    solid_rich = [rng.random((24, 24, 24)) < p for p in (0.1, 0.2, 0.3)]
    far = mo.compare_sets(mo.describe_set(solid_rich), mo.describe_set(a))
    assert far["porosity_wasserstein"] == pytest.approx(0.3, abs=0.01)  # sorted pairs differ by 0.2, 0.3, 0.4
    assert far["s2_nearest_median"] > 0.01
    ref = mo.morphology(a[1])
    own = mo.compare_to(a[1], ref)
    assert own["specific_surface_ratio"] == pytest.approx(1.0) and own["s2_distance"] == 0.0


def test_learnable_descriptors_are_the_morphology_values_and_unchanged_by_symmetries():
    """The targets a pVAE may learn (PVAEConfig.descriptors): the same numbers as morphology(), the
    same for a transposed / mirrored structure (the training augmentation), and only these names."""
    rng = np.random.default_rng(3)
    vols = rng.random((3, 12, 12, 12)) < 0.6
    names = list(mo.LEARNABLE)
    d = mo.learnable_descriptors(vols, names)
    assert d.shape == (3, 3)
    for v, row in zip(vols, d):
        m = mo.morphology(v)
        assert row == pytest.approx([m[n] for n in names], rel=1e-12)
    moved = np.flip(np.transpose(vols, (0, 2, 3, 1)), axis=1)  # a rotation-reflection of each cube
    assert mo.learnable_descriptors(moved, names) == pytest.approx(d, rel=1e-12)
    slab = np.zeros((1, 16, 16, 16), bool)
    slab[0, :, :, 4:10] = True
    assert mo.learnable_descriptors(slab, ["chord_length"])[0, 0] == pytest.approx((256 * 6 + 2 * 96 * 16) / (256 + 2 * 96))
    with pytest.raises(ValueError, match=r"not a learnable descriptor: \['anisotropy'\]"):
        mo.learnable_descriptors(vols, ["anisotropy"])


def test_local_porosity_spread_closed_forms():
    """Uniform: 0. Two slabs of width 8 in a period of 16, window 4: the window porosity is 1 at 5
    positions, 0 at 5 and 3/4, 1/2, 1/4 at each of the two walls: std sqrt(0.421875 - 0.25)."""
    from data_pipeline.morphology import local_porosity_spread

    assert local_porosity_spread(np.ones((16, 16), bool), 4) == 0.0
    slab = np.zeros((16, 16), bool)
    slab[:, :8] = True
    assert local_porosity_spread(slab, 4) == pytest.approx(np.sqrt(0.421875 - 0.25))
    assert local_porosity_spread(slab) == pytest.approx(np.sqrt(0.421875 - 0.25))  # default: a quarter of 16
    cube = np.zeros((16, 16, 16), bool)
    cube[:, :, :8] = True
    assert local_porosity_spread(cube, 4) == pytest.approx(np.sqrt(0.421875 - 0.25))
    # a fine checkerboard of the same porosity: every 4x4 window holds 8 of 16 pores
    check = (np.indices((16, 16)).sum(axis=0) % 2).astype(bool)
    assert local_porosity_spread(check, 4) == pytest.approx(0.0, abs=1e-12)
