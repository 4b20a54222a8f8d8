"""The property vocabulary, stated once: ``porosity`` and the permeability components ``k_ij``.

A component ``k_ij`` (i, j in x, y, z) is the (i, j) entry of the permeability tensor (lattice
units, voxel^2); the diagonal ``k_xx, k_yy, k_zz`` is learned and scored as log10 k, porosity and
the off-diagonals linearly.
"""
from __future__ import annotations

AXES = "xyz"
#: Permeability tensor components stored per dimensionality, in (x, y, z) tensor indices.
K_COLUMNS = {2: ["k_xx", "k_yy", "k_xy"], 3: ["k_xx", "k_yy", "k_zz", "k_xy", "k_xz", "k_yz"]}


def is_k_component(name: str) -> bool:
    """``k_ij`` with i, j in x, y, z."""
    return isinstance(name, str) and len(name) == 4 and name.startswith("k_") and name[2] in AXES and name[3] in AXES


def is_diagonal(name: str) -> bool:
    """A diagonal permeability ``k_ii`` (the components learned as log10 k)."""
    return is_k_component(name) and name[2] == name[3]


def component_index(name: str) -> tuple[int, int]:
    """Tensor indices (i, j) of ``k_ij``; ValueError for any other name."""
    if not is_k_component(name):
        raise ValueError(f"not a permeability component: {name!r} (expected k_xx, k_xy, ...)")
    return AXES.index(name[2]), AXES.index(name[3])


def component_name(i: int, j: int) -> str:
    """Column name of tensor component (i, j); off-diagonals are stored once, lower axis first
    (k_xy, not k_yx)."""
    i, j = min(i, j), max(i, j)
    return f"k_{AXES[i]}{AXES[j]}"


def diagonal_columns(dims: int) -> list[str]:
    """The diagonal components of a ``dims``-dimensional dataset: k_xx, k_yy(, k_zz)."""
    return [c for c in K_COLUMNS[int(dims)] if is_diagonal(c)]
