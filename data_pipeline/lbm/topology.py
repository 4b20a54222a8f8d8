"""Pore-space topology on the periodic box: percolation, active pore space, neighbour table.

Connectivity follows the lattice links: 18-connectivity in 3D (D3Q19 links faces and edges),
8-connectivity in 2D (D2Q9). A pore cluster carries a steady mean flow along an axis only if it
*winds* around the periodic box along that axis (a closed path in the torus with a nonzero
winding number along the axis). We find that with ``scipy.ndimage.label`` on the box and a
union-find with offsets over the links that cross the periodic faces.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from .lattice import Lattice, lattice_for


def _array_shift(c_xyz: np.ndarray) -> tuple[int, ...]:
    """Lattice velocity (x, y[, z]) -> array offset in (..., y, x) axis order."""
    return tuple(int(v) for v in c_xyz[::-1])


@functools.lru_cache(maxsize=16)
def _periodic_links(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lattice links that cross a periodic face of a box of ``shape`` (array order).

    Returns flat indices ``src`` and ``dst`` (M,) and ``code`` (M,): the translation (x, y[, z]) of
    the periodic copy that ``dst`` belongs to, each component in {-1, 0, 1}, as a base-3 number
    (x the most significant digit). Only face cells can start such a link (|c_i| <= 1); the arrays
    depend on the shape alone, so they are built once per shape."""
    D = len(shape)
    lat = lattice_for(D)
    dims = np.array(shape)
    on_face = np.zeros(shape, dtype=bool)
    for a in range(D):
        on_face[(slice(None),) * a + (0,)] = on_face[(slice(None),) * a + (-1,)] = True
    face_flat = np.flatnonzero(on_face)
    face_idx = np.column_stack(np.unravel_index(face_flat, shape))  # (F, D) array order
    digits = 3 ** np.arange(D - 1, -1, -1)
    src, dst, code = [], [], []
    for q in range(1, lat.Q):
        sh = np.array(_array_shift(lat.c[q]))
        if not sh.any():
            continue
        to = face_idx + sh  # (F, D) array order
        wrap = np.floor_divide(to, dims)  # (F, D) in {-1, 0, 1}
        cross = np.any(wrap != 0, axis=1)
        src.append(face_flat[cross])
        dst.append(np.ravel_multi_index(tuple((to[cross] % dims).T), shape))
        code.append((wrap[cross][:, ::-1] + 1) @ digits)  # translation in (x, y[, z]) order
    return tuple(np.concatenate(v).astype(np.int64) for v in (src, dst, code))


def winding_clusters(im: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Label pore clusters of the periodic box and the axes each one winds along.

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore

    Returns
    -------
    roots : int array of the image shape; 0 = solid, else the id of the periodic cluster
    winds : {cluster id: bool array (D,) in (x, y[, z]) order}, True where it winds along the axis
    """
    lattice_for(im.ndim)  # 2D or 3D only: a ValueError naming the dimension otherwise
    D = im.ndim
    # the lattice's own links: faces and edges (18 neighbours in 3D, D3Q19; 8 in 2D, D2Q9). Connectivity
    # D (26 neighbours in 3D) joined clusters that touch at a corner only, which no D3Q19 link crosses
    labels, n = ndimage.label(im, structure=ndimage.generate_binary_structure(D, 2))
    # union-find over labels in plain Python lists (a few hundred edges; numpy scalars cost more here)
    parent = list(range(n + 1))
    pot = [(0,) * D] * (n + 1)  # translation (x, y[, z]) of a label relative to its parent
    windvec: dict[int, list[tuple]] = {}

    def find(a):
        path = []
        while parent[a] != a:
            path.append(a)
            a = parent[a]
        # path compression with accumulated offsets
        acc = (0,) * D
        for node in reversed(path):
            acc = tuple(u + v for u, v in zip(acc, pot[node]))
            pot[node] = acc
            parent[node] = a
        return a

    # every link x -> x + c that crosses a periodic face, with the translation of the copy it reaches
    src, dst, code = _periodic_links(im.shape)  # (M,) each; code: base-3 translation, (x, y[, z])
    lab = labels.ravel()
    l1, l2 = lab[src], lab[dst]
    ok = (l1 > 0) & (l2 > 0)
    # distinct (l1, l2, translation) triples via one int64 key (np.unique(axis=0) on rows is slow)
    key = np.unique((l1[ok].astype(np.int64) * (n + 1) + l2[ok]) * 3 ** D + code[ok])
    digits = 3 ** np.arange(D - 1, -1, -1)
    pair, code_u = key // 3 ** D, key % 3 ** D
    edges = np.column_stack([pair // (n + 1), pair % (n + 1), (code_u[:, None] // digits) % 3 - 1])
    # one pass over all edges: the winding flags do not depend on their order (the cycles found
    # generate the same winding vectors)
    for e in edges.tolist():
        a, b, sv = e[0], e[1], e[2:]
        ra, rb = find(a), find(b)
        # copy of b translated by sv touches a: t_b = t_a + sv
        w = tuple(pa + v - pb for pa, v, pb in zip(pot[a], sv, pot[b]))
        if ra != rb:
            parent[rb] = ra
            pot[rb] = w
        elif any(w):
            windvec.setdefault(ra, []).append(w)
    roots_of = np.array([find(i) for i in range(n + 1)]) if n else np.zeros(1, dtype=np.int64)
    roots = roots_of[labels]
    roots[labels == 0] = 0
    winds = {int(r): np.zeros(D, dtype=bool) for r in (np.unique(roots_of[1:]) if n else [])}
    # a cycle was recorded under the root of its cluster at that time; that root may have been
    # merged under another since (a winding vector does not depend on the frame it was found in)
    for r, ws in windvec.items():
        winds[int(roots_of[r])] |= np.any(np.array(ws) != 0, axis=0)
    return roots, winds


def active_pore_space(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pores that can carry a mean flow and the percolation flags per axis.

    Returns
    -------
    active : bool array like ``im``: the clusters that wind along at least one axis
    percolating : (D,) bool in (x, y[, z]) order
    """
    roots, winds = winding_clusters(im)
    D = im.ndim
    percolating = np.zeros(D, dtype=bool)
    keep = [r for r, w in winds.items() if w.any()]
    for r in keep:
        percolating |= winds[r]
    active = np.isin(roots, keep) if keep else np.zeros_like(im, dtype=bool)
    return active, percolating


def neighbour_table(fluid: np.ndarray, lat: Lattice, index_dtype=np.int32) -> np.ndarray:
    """Pull-streaming table for the fluid-only (sparse) layout with halfway bounce-back.

    Fluid nodes are numbered in C order of ``fluid``. For node n and direction q the incoming
    population after streaming is ``f_post.flat[table[q, n]]`` of the (Q, N) post-collision array:
    ``q*N + m`` with m the node at x - c_q (periodic), or ``opp[q]*N + n`` when x - c_q is solid
    (halfway bounce-back: the wall sits half-way between the nodes).

    Returns
    -------
    table : (Q, N) int
    """
    N = int(fluid.sum())
    Q = lat.Q
    if Q * N >= np.iinfo(index_dtype).max:
        index_dtype = np.int64
    idx = np.full(fluid.shape, -1, dtype=np.int64)
    idx[fluid] = np.arange(N)
    coords = np.nonzero(fluid)  # array order
    node = np.arange(N)
    table = np.empty((Q, N), dtype=index_dtype)
    for q in range(Q):
        sh = _array_shift(lat.c[q])
        src = tuple((coords[a] - sh[a]) % fluid.shape[a] for a in range(fluid.ndim))
        m = idx[src]
        table[q] = np.where(m >= 0, q * N + m, lat.opp[q] * N + node)
    return table
