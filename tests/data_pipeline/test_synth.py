"""Generators: porosity targets, seeds, geometry invariants, the synth command."""
import numpy as np
import pytest
from scipy import ndimage

from data_pipeline import synth
from data_pipeline.io import read_volume

SHAPES = [(24, 24, 24), (48, 48)]
CASES = [
    ("spheres", dict(porosity=0.6, radius=3)),
    ("spheres", dict(porosity=0.4, radius=(2, 5))),                 # polydisperse, overlapping
    ("spheres", dict(porosity=0.8, radius=3, overlap=False)),
    ("spheres", dict(porosity=0.7, radius=(2, 4), overlap=False)),  # polydisperse, apart
    ("blobs", dict(porosity=0.35, blobiness=1.5)),
    ("foam", dict(porosity=0.82, cell_size=8.0)),
    ("foam", dict(porosity=0.48, cell_size=8.0)),
    ("foam", dict(porosity=0.82, cell_size=8.0, periodic=True)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=["3d", "2d"])
@pytest.mark.parametrize("name,params", CASES)
def test_porosity_target_and_seed(name, params, shape):
    im = synth.generate(name, shape, seed=7, **params)
    assert im.dtype == bool and im.shape == shape
    assert abs(im.mean() - params["porosity"]) <= 0.01
    assert abs(im.mean() - params["porosity"]) <= 1.0 / im.size  # exact to one voxel
    assert np.array_equal(im, synth.generate(name, shape, seed=7, **params))
    assert not np.array_equal(im, synth.generate(name, shape, seed=8, **params))


@pytest.mark.parametrize("shape,ncells", [((24, 24, 24), 40), ((20, 28, 24), 7), ((64, 64), 40), ((40, 50), 2)])
def test_voronoi_edges_equal_porespys(shape, ncells):
    """Our rasterization draws exactly PoreSpy's edge voxels (the foam datasets stay the same)
    and leaves numpy's global random state alone."""
    import porespy as ps

    for seed in (0, 3):
        np.random.seed(12345)
        ours = synth.voronoi_edges(shape, ncells, seed)
        assert np.random.rand() == np.random.RandomState(12345).rand()  # global state untouched
        theirs = ps.generators.voronoi_edges(list(shape), ncells=ncells, r=0, flat_faces=True, seed=seed)
        assert ours.shape == shape and ours.dtype == bool
        assert np.array_equal(ours, theirs)
        assert 0.0 < (~ours).mean() < 0.5  # thin edges, some drawn


@pytest.mark.parametrize("shape", [(32, 32, 32), (64, 64)], ids=["3d", "2d"])
def test_periodic_foam_has_no_seam_at_the_box_faces(shape):
    """PoreSpy's mirrored seeds put struts along every box face: at porosity 0.8 the face planes
    are about half solid against a fifth inside, a wall the periodic solver sees every box length.
    The periodic foam continues across the faces: its face planes look like any other plane."""
    def face_and_mean(im):
        solid = ~im
        faces = [solid.take(i, axis=a).mean() for a in range(im.ndim) for i in (0, -1)]
        return np.mean(faces), solid.mean()

    for seed in (1, 2, 3):
        face, mean = face_and_mean(synth.foam(shape, 0.8, 10.0, seed=seed))
        assert face > 1.8 * mean  # the seam of the default (the datasets built so far)
        periodic = synth.foam(shape, 0.8, 10.0, seed=seed, periodic=True)
        face, mean = face_and_mean(periodic)
        assert abs(face - mean) < 0.35 * mean
        # a periodic shift by half the box is another sample of the same medium: the planes that
        # now meet in the middle are no more solid than the rest
        half = np.roll(periodic, [s // 2 for s in shape], axis=tuple(range(len(shape))))
        assert abs(face_and_mean(half)[0] - mean) < 0.35 * mean


def test_blobs_anisotropy_from_per_axis_blobiness():
    im = synth.blobs((32, 32, 32), 0.5, blobiness=(0.5, 2.0, 2.0), seed=1)
    assert abs(im.mean() - 0.5) < 1e-4
    # small blobiness along z = features elongated along z: neighbours along z agree more often
    same = [np.mean(im == np.roll(im, 1, axis=a)) for a in range(3)]
    assert same[0] > same[1] + 0.05 and same[0] > same[2] + 0.05


def test_nonoverlapping_spheres_are_apart_and_jam():
    # clearance = 1 voxel: voxelised balls cannot share a face, so every solid component is one ball
    im = synth.spheres((32, 32, 32), 0.8, radius=4, overlap=False, clearance=1.0, seed=3)
    solid, n = ndimage.label(~im)
    sizes = np.bincount(solid.ravel())[1:]
    assert abs(im.mean() - 0.8) <= 1 / im.size
    assert n >= 15 and sizes.max() <= 4 / 3 * np.pi * 4 ** 3 * 1.1
    with pytest.raises(ValueError, match="too low for non-overlapping"):
        synth.spheres((16, 16, 16), 0.3, radius=3, overlap=False, seed=0, max_rejects=500)


def periodic_components(a: np.ndarray) -> int:
    """Number of face-connected True components of ``a`` on a periodic grid."""
    labels, n = ndimage.label(a)
    parent = list(range(n + 1))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for ax in range(a.ndim):
        first, last = np.take(labels, 0, axis=ax).ravel(), np.take(labels, -1, axis=ax).ravel()
        for i, j in zip(first, last):
            if i and j:
                parent[find(i)] = find(j)
    return len({find(i) for i in range(1, n + 1)})


@pytest.mark.parametrize("section", ["square", "circle"])
def test_channels_straight_and_counted(section):
    im = synth.channels((20, 24, 24), n_range=(3, 3), width_range=(3, 3), section=section,
                        axis=0, overlap=False, seed=2)
    assert np.array_equal(im, np.broadcast_to(im[0], im.shape))  # prismatic along axis 0
    assert periodic_components(im[0]) == 3  # three separate cross-sections
    area = im[0].sum() / 3
    assert area == (9 if section == "square" else pytest.approx(np.pi * 1.5 ** 2, abs=3))


def test_channels_count_range_and_2d():
    counts = set()
    for seed in range(12):
        im = synth.channels((32, 32), n_range=(1, 3), width_range=(2, 2), axis=1, overlap=False, seed=seed)
        counts.add(periodic_components(im[:, 0]))
    assert counts == {1, 2, 3}


def test_generate_rejects_unknown():
    with pytest.raises(ValueError, match="unknown generator"):
        synth.generate("nope", (8, 8), 0)
    with pytest.raises(ValueError, match="unknown parameter"):
        synth.generate("blobs", (8, 8), 0, porosity=0.5, radius=2)
    with pytest.raises(ValueError, match="porosity"):
        synth.generate("blobs", (8, 8), 0, porosity=1.5)


def test_synth_command(tmp_path):
    rc = synth.main(["spheres", "--size", "12", "--n", "2", "--param", "porosity=0.6",
                     "--param", "radius=[2,3]", "--out", str(tmp_path / "ds"), "--dataset"])
    assert rc == 0
    vols = sorted((tmp_path / "ds" / "volumes").glob("*.tif"))
    assert [p.stem for p in vols] == ["s00000", "s00001"]
    assert abs(read_volume(vols[0]).mean() - 0.6) <= 0.01
    assert (tmp_path / "ds" / "dataset.yaml").is_file()
