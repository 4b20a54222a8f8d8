"""Lattice stencils D2Q9 and D3Q19 (velocities in (x, y, z) order; x = last array axis).

Directions are ordered rest first, then opposite pairs (q, q + 1) for odd q, so ``opp[q]`` is
q + 1 for odd q and q - 1 for even q > 0. Weights are exact rationals converted once to the run's
dtype (float32 weights widened to float64 would sum to 1 + 1.5e-8 and create mass every step).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

_D2Q9_C = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]
_D2Q9_W = [Fraction(4, 9)] + [Fraction(1, 9)] * 4 + [Fraction(1, 36)] * 4

_D3Q19_C = [(0, 0, 0),
            (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1),
            (1, 1, 0), (-1, -1, 0), (1, -1, 0), (-1, 1, 0),
            (1, 0, 1), (-1, 0, -1), (1, 0, -1), (-1, 0, 1),
            (0, 1, 1), (0, -1, -1), (0, 1, -1), (0, -1, 1)]
_D3Q19_W = [Fraction(1, 3)] + [Fraction(1, 18)] * 6 + [Fraction(1, 36)] * 12


@dataclass(frozen=True)
class Lattice:
    """A DdQq stencil. ``c``: (Q, D) int, columns (x, y[, z]); ``w_exact``: exact weights."""
    name: str
    c: np.ndarray
    w_exact: tuple
    opp: np.ndarray

    @property
    def D(self) -> int:
        return self.c.shape[1]

    @property
    def Q(self) -> int:
        return self.c.shape[0]

    def w(self, dtype) -> np.ndarray:
        """Weights (Q,) in ``dtype``, each rounded once from the exact rational."""
        return np.array([float(x) for x in self.w_exact], dtype=dtype)

    def pairs(self) -> list[tuple[int, int]]:
        """Opposite pairs (q, opp[q]) for the odd q (each pair once)."""
        return [(q, q + 1) for q in range(1, self.Q, 2)]


def _make(name, c, w) -> Lattice:
    c = np.array(c, dtype=np.int64)
    assert sum(w) == 1
    opp = np.array([0] + [q + 1 if q % 2 else q - 1 for q in range(1, len(c))])
    assert np.all(c[opp] == -c)
    return Lattice(name, c, tuple(w), opp)


D2Q9 = _make("D2Q9", _D2Q9_C, _D2Q9_W)
D3Q19 = _make("D3Q19", _D3Q19_C, _D3Q19_W)


def lattice_for(ndim: int) -> Lattice:
    """D2Q9 for 2D images, D3Q19 for 3D volumes."""
    if ndim == 2:
        return D2Q9
    if ndim == 3:
        return D3Q19
    raise ValueError(f"expected a 2D (Y, X) or 3D (Z, Y, X) image, got {ndim} dimensions")
