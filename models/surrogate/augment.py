"""Physics-respecting augmentation: the symmetries of the square/cube act on volume AND tensor.

A symmetry of the periodic cubic (square) box is a signed permutation of the tensor axes: new tensor
axis ``j`` is old axis ``perm[j]``, mirrored when ``signs[j] = -1``, i.e. the matrix
``A[j, perm[j]] = signs[j]`` maps a position r (tensor indices x, y[, z]) to ``r' = A r``. The
permeability of the mapped volume is then

    k' = A k A^T,   k'_jl = signs[j] * signs[l] * k_{perm[j], perm[l]}

so a permutation of axes permutes the diagonal and the off-diagonals, and a flip of axis j flips the
sign of every off-diagonal involving j and leaves the diagonal unchanged. Porosity is invariant.

Array order: volumes are stored (Z, Y, X) (x is the LAST array axis), tensors use (x, y, z); tensor
axis i is array axis ``dims - 1 - i``. The lattice (D2Q9 / D3Q19) has the same symmetry group, so
the solver itself maps exactly (up to its convergence tolerance); tests check that.

The group has 8 elements in 2D and 48 in 3D (all signed permutations); with only part of the tensor
in the targets, the largest subgroup that keeps the target set closed is used (flips only when just
some diagonal components are targets).

Periodic translations (:func:`random_shifts`) are symmetries of the periodic box as well, and they
leave the whole tensor unchanged (the solver's boundaries are periodic on every axis).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from core.properties import AXES, component_index
from core.properties import component_name as tensor_column
from core.properties import is_k_component as is_tensor_column


@dataclass(frozen=True)
class Symmetry:
    """One signed permutation of the tensor axes (see the module docstring)."""

    perm: tuple[int, ...]
    signs: tuple[int, ...]

    @property
    def dims(self) -> int:
        return len(self.perm)

    def matrix(self) -> np.ndarray:
        """A (D, D) with A[j, perm[j]] = signs[j]."""
        a = np.zeros((self.dims, self.dims))
        for j, (p, s) in enumerate(zip(self.perm, self.signs)):
            a[j, p] = s
        return a

    def inverse(self) -> "Symmetry":
        a_inv = self.matrix().T  # orthogonal
        perm = tuple(int(np.flatnonzero(row)[0]) for row in a_inv)
        signs = tuple(int(a_inv[j, perm[j]]) for j in range(self.dims))
        return Symmetry(perm, signs)

    def is_identity(self) -> bool:
        return self.perm == tuple(range(self.dims)) and all(s == 1 for s in self.signs)

    def __str__(self) -> str:
        return "(" + ", ".join(("-" if s < 0 else "") + AXES[p] for p, s in zip(self.perm, self.signs)) + ")"

    # --- volumes ---------------------------------------------------------------------------
    def _array_ops(self, ndim_batch: int) -> tuple[list[int], list[int]]:
        """Axes for transpose and then flip, for an array with ``ndim_batch`` leading batch axes."""
        d = self.dims
        # new array axis a' holds new tensor axis j = d-1-a', i.e. old tensor axis perm[j] = old array axis d-1-perm[j]
        spatial = [d - 1 - self.perm[d - 1 - a] for a in range(d)]
        order = list(range(ndim_batch)) + [ndim_batch + a for a in spatial]
        flips = [ndim_batch + (d - 1 - j) for j in range(d) if self.signs[j] < 0]
        return order, flips

    def apply_volume(self, im: np.ndarray | torch.Tensor, batch_dims: int = 0):
        """Map a volume (``batch_dims`` leading axes, then (Z, Y, X) or (Y, X)); numpy or torch."""
        if im.ndim != batch_dims + self.dims:
            raise ValueError(f"expected {batch_dims} batch axes + {self.dims} spatial axes, got shape {tuple(im.shape)}")
        spatial_shape = tuple(im.shape[batch_dims:])
        if len(set(spatial_shape)) != 1 and self.perm != tuple(range(self.dims)):
            raise ValueError(f"an axis permutation needs a cubic/square volume, got spatial shape {spatial_shape}")
        order, flips = self._array_ops(batch_dims)
        if isinstance(im, torch.Tensor):
            out = im.permute(order)
            return torch.flip(out, flips) if flips else out
        out = np.transpose(im, order)
        return np.flip(out, flips) if flips else out

    # --- tensors ---------------------------------------------------------------------------
    def apply_tensor(self, k: np.ndarray) -> np.ndarray:
        """k' = A k A^T for k of shape (..., D, D)."""
        a = self.matrix()
        return a @ np.asarray(k, dtype=np.float64) @ a.T

    def column_map(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """How property columns map: ``y'[:, j] = sign[j] * y[:, src[j]]`` (raw, log or linear space).

        ``names`` are properties.csv columns ("porosity", "k_xx", "k_xy", ...). Raises ValueError when
        the mapped column is not among ``names`` (the target set is not closed under this symmetry).
        """
        index = {n: i for i, n in enumerate(names)}
        src = np.arange(len(names))
        sign = np.ones(len(names))
        for j, name in enumerate(names):
            if not is_tensor_column(name):
                continue  # porosity and other scalars are invariant
            a, b = component_index(name)
            pa, pb = self.perm[a], self.perm[b]
            source = tensor_column(pa, pb)
            if source not in index:
                raise ValueError(f"symmetry {self} maps {name} from {source}, which is not a target column")
            src[j] = index[source]
            sign[j] = self.signs[a] * self.signs[b]
        return src, sign

    def apply_columns(self, y: np.ndarray, names: list[str]) -> np.ndarray:
        """Map a property table (N, P) in raw units (or log10 for diagonals: the diagonal never changes sign)."""
        src, sign = self.column_map(names)
        return np.asarray(y)[..., src] * sign


def all_symmetries(dims: int) -> list[Symmetry]:
    """All 2^D * D! signed permutations (8 in 2D, 48 in 3D), the identity first."""
    out = [Symmetry(p, s) for p in itertools.permutations(range(dims))
           for s in itertools.product((1, -1), repeat=dims)]
    return sorted(out, key=lambda g: not g.is_identity())


def random_shifts(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every sample of the batch ``x`` (B, C, *spatial) rolled by its own random periodic shift,
    uniform on every spatial axis (drawn on the CPU from ``generator``); same shape and device.

    Porosity and the permeability tensor are unchanged by a periodic translation, so the labels
    stay as they are."""
    spatial = tuple(range(2, x.dim()))
    shifts = torch.stack([torch.randint(x.shape[d], (x.shape[0],), generator=generator) for d in spatial], 1)
    return torch.stack([torch.roll(xi, tuple(s.tolist()), tuple(d - 1 for d in spatial))
                        for xi, s in zip(x, shifts)])  # (B, C, *spatial)


def symmetry_group(dims: int, names: list[str], permute: bool = True) -> list[Symmetry]:
    """The symmetries that keep the target columns ``names`` closed (identity first).

    With every diagonal component (and every off-diagonal or none) among the targets that is the
    full group; otherwise only the flips (which leave each column in place).
    """
    group = []
    for g in all_symmetries(dims):
        if not permute and g.perm != tuple(range(dims)):
            continue
        try:
            g.column_map(names)
        except ValueError:
            continue
        group.append(g)
    return group


def tensor_from_row(row: dict, dims: int) -> np.ndarray:
    """(D, D) symmetric tensor from a properties row (k_xx, k_yy, [k_zz], k_xy, ...)."""
    k = np.zeros((dims, dims))
    for i in range(dims):
        for j in range(dims):
            k[i, j] = float(row[tensor_column(i, j)])
    return k


class TensorAugmenter:
    """Random group elements applied to a training batch: volumes and targets in one step.

    Parameters
    ----------
    dims : 2 or 3
    names : target columns, in order
    seed : seed of the generator that draws the group elements
    symmetries : draw group elements (False: the identity only)
    shifts : also roll every sample by its own random periodic shift (:func:`random_shifts`)

    ``__call__(x, y)`` takes x (B, 1, *shape) and y (B, P) in "log space" (log10 k on the diagonal,
    linear off-diagonal, see models.checkpoint.Normalizer.to_log) and returns mapped copies; one
    element is drawn per batch (so each batch stays a single tensor op; over an epoch every sample
    sees the whole group).
    """

    def __init__(self, dims: int, names: list[str], seed: int = 0, symmetries: bool = True, shifts: bool = False):
        self.dims, self.names, self.shifts = dims, list(names), bool(shifts)
        self.group = symmetry_group(dims, self.names) if symmetries else all_symmetries(dims)[:1]  # identity first
        self.maps = [g.column_map(self.names) for g in self.group]
        self.rng = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.group)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(torch.randint(len(self.group), (1,), generator=self.rng))
        g = self.group[i]
        if not g.is_identity():
            src, sign = self.maps[i]
            x = g.apply_volume(x, batch_dims=2).contiguous()  # (B, 1, *shape)
            y = y[:, torch.as_tensor(src, device=y.device)] * torch.as_tensor(sign, dtype=y.dtype, device=y.device)
        if self.shifts:
            x = random_shifts(x, self.rng)
        return x, y

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
