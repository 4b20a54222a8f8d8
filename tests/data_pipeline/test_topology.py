"""Percolation on the periodic box (data_pipeline/lbm/topology.py) against a brute-force search.

The reference walks every pore cluster voxel by voxel along the lattice's own links (D3Q19: faces
and edges; D2Q9: 8 neighbours), giving each voxel a lifted (unwrapped) position; a link that reaches
an already visited voxel at a different lift closes a cycle that winds around the box along the axes
where the lifts differ. Near the percolation threshold (porosity 0.1-0.2 in 3D) clusters merge and
wind in many ways: the union-find must agree with this on every axis, and its active pore space must
be the clusters that wind.
"""
from collections import deque

import numpy as np
import pytest

from data_pipeline.lbm.lattice import lattice_for
from data_pipeline.lbm.topology import active_pore_space, winding_clusters
from data_pipeline.synth import blobs


def brute_force(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(active, percolating (x, y[, z])) by breadth-first search with lifted coordinates."""
    im = np.asarray(im, dtype=bool)
    shape = im.shape
    offsets = [tuple(int(v) for v in c[::-1]) for c in lattice_for(im.ndim).c[1:]]  # array order
    lift: dict = {}
    active = np.zeros(shape, dtype=bool)
    percolating = np.zeros(im.ndim, dtype=bool)  # array order
    for start in zip(*np.nonzero(im)):
        if start in lift:
            continue
        lift[start] = start
        cluster, winds, queue = [start], np.zeros(im.ndim, dtype=bool), deque([start])
        while queue:
            p = queue.popleft()
            for o in offsets:
                q = tuple((pi + oi) % s for pi, oi, s in zip(p, o, shape))
                if not im[q]:
                    continue
                lq = tuple(li + oi for li, oi in zip(lift[p], o))
                if q not in lift:
                    lift[q] = lq
                    cluster.append(q)
                    queue.append(q)
                else:
                    winds |= np.array(lq) != np.array(lift[q])
        if winds.any():
            active[tuple(np.array(cluster).T)] = True
        percolating |= winds
    return active, percolating[::-1]


def _cases():
    rng = np.random.default_rng(0)
    cases = [blobs((16, 16, 16), porosity=float(p), blobiness=0.8, seed=i)
             for i, p in enumerate(rng.uniform(0.15, 0.45, 12))]
    cases += [rng.random((10, 10, 10)) < p for p in rng.uniform(0.1, 0.35, 16)]
    cases += [blobs((24, 24), porosity=float(p), blobiness=1.0, seed=i) for i, p in enumerate(rng.uniform(0.3, 0.6, 16))]
    cases += [rng.random((16, 16)) < p for p in rng.uniform(0.35, 0.6, 12)]
    return cases


def test_percolation_and_active_space_match_the_brute_force_search():
    cases = _cases()
    kinds = set()
    for i, im in enumerate(cases):
        active, perc = active_pore_space(im)
        ref_active, ref_perc = brute_force(im)
        assert perc.tolist() == ref_perc.tolist(), f"case {i} {im.shape} porosity {im.mean():.3f}"
        assert (active == ref_active).all(), f"case {i}: active pore space differs in {(active != ref_active).sum()} voxels"
        kinds.add(tuple(perc.tolist()))
    # the cases cover blocked, partly and fully percolating boxes
    assert any(not any(k) for k in kinds) and any(all(k) for k in kinds) and len(kinds) >= 4, kinds


def test_clusters_touching_at_a_corner_only_are_not_joined_in_3d():
    # two pore rods along x that touch only at the voxel corners: D3Q19 has no (1, 1, 1) link
    im = np.zeros((4, 4, 4), dtype=bool)
    im[0, 0, :] = True
    im[1, 1, :2] = True  # a pocket diagonally (edge) adjacent: joined by an edge link
    im[2, 2, 2] = True  # corner-adjacent to the pocket only: its own cluster
    roots, winds = winding_clusters(im)
    assert roots[1, 1, 0] == roots[0, 0, 0]
    assert roots[2, 2, 2] not in (0, roots[0, 0, 0])
    assert winds[int(roots[0, 0, 0])].tolist() == [True, False, False]
    assert not winds[int(roots[2, 2, 2])].any()
    active, perc = active_pore_space(im)
    assert perc.tolist() == [True, False, False] and not active[2, 2, 2]


@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)])
def test_random_boxes_at_the_percolation_threshold_match_the_brute_force_search(shape):
    """Random sites near the threshold: cycles often close in one cluster before later links merge
    it into another (a winding recorded under a root that stops being one must not be lost)."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(40):
        im = rng.random(shape) < (0.45 if len(shape) == 2 else 0.16)
        ref = brute_force(im)[1]
        assert active_pore_space(im)[1].tolist() == ref.tolist()
        hits += ref.any()
    assert hits >= 5
