"""CPU backend: a fused pull-stream + TRT/BGK collision kernel over the sparse fluid-only layout.

The kernel source is generated per (lattice, number of driven directions, dtype) with every
direction unrolled and the lattice constants written as literals of the run's dtype (the loop
over nodes then vectorizes, gathers included), and compiled once by numba
(``parallel=True, fastmath=True``, cached on disk).

Storage: ``f`` holds the deviations ``f_q - w_q`` (rest density 1), shape (B, Q*N), one row per
driven direction b, (Q, N) flattened, so float32 keeps its digits for small velocities.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import numba
from numba import njit, prange

from .lattice import Lattice

_KERNELS: dict = {}


def _lit(x: float) -> str:
    return f"T({float(x)!r})"


def _dot(c, names) -> str:
    terms = []
    for ci, nm in zip(c, names):
        if ci == 1:
            terms.append(f"+{nm}")
        elif ci == -1:
            terms.append(f"-{nm}")
    return "(" + "".join(terms) + ")"


def kernel_source(lat: Lattice, B: int = 1, stokes: bool = True) -> str:
    """Python source of ``step(fi, fo, tab, g, par)`` for one driven direction.

    fi, fo : (Q*N,) post-collision deviations (read / write); tab : (Q, N) pull table;
    g : (D,) body-force acceleration; par : (4,) [omega_plus, omega_minus, 1-omega_plus/2,
    1-omega_minus/2], all in the run's dtype T. ``stokes``: linear equilibrium
    f_eq = w (drho + 3 c.j) and forcing 3 w c.g (the Stokes limit exactly: k independent of the
    force, Onsager-symmetric); else the quadratic Navier-Stokes equilibrium with Guo forcing. (Several directions in one loop body were
    measured 4x slower than one direction per sweep: the body no longer vectorizes.)
    """
    assert B == 1
    Q, D = lat.Q, lat.D
    w = [float(x) for x in lat.w_exact]
    ax = "xyz"[:D]
    L = ["def step(fi, fo, tab, g, par):",
         "    N = tab.shape[1]",
         "    omp = par[0]; omm = par[1]; hp = par[2]; hm = par[3]"]
    for b in range(B):
        for d in range(D):
            L.append(f"    g{b}{ax[d]} = g[{d}]")
    L.append("    for n in prange(N):")
    for q in range(Q):
        L.append(f"        s{q} = tab[{q}, n]")
    for b in range(B):
        I = "        "
        for q in range(Q):
            L.append(f"{I}a{q} = fi[s{q}]")
        L.append(I + "drho = " + " + ".join(f"a{q}" for q in range(Q)))
        if stokes:
            L.append(I + f"rho = {_lit(1.0)}")
            L.append(I + f"inv = {_lit(1.0)}")
        else:
            L.append(I + f"rho = {_lit(1.0)} + drho")
            L.append(I + f"inv = {_lit(1.0)} / rho")
        for d in range(D):
            col = lat.c[:, d]
            j = "".join(f"+a{q}" if col[q] == 1 else f"-a{q}" for q in range(Q) if col[q] != 0)
            if stokes:
                L.append(f"{I}u{ax[d]} = ({j}) + {_lit(0.5)} * g{b}{ax[d]}")
                L.append(f"{I}F{ax[d]} = g{b}{ax[d]}")
            else:
                L.append(f"{I}u{ax[d]} = ({j}) * inv + {_lit(0.5)} * g{b}{ax[d]}")
                L.append(f"{I}F{ax[d]} = rho * g{b}{ax[d]}")
        if stokes:
            L.append(I + "usq = " + _lit(0.0))
            L.append(I + "uF = " + _lit(0.0))
        else:
            L.append(I + "usq = " + " + ".join(f"u{a}*u{a}" for a in ax))
            L.append(I + "uF = " + " + ".join(f"u{a}*F{a}" for a in ax))
        L.append(f"{I}fo[n] = a0 - omp * (a0 - {_lit(w[0])} * (drho - {_lit(1.5)} * rho * usq))"
                 f" - hp * {_lit(3 * w[0])} * uF")
        L.append(f"{I}b15 = {_lit(1.5)} * usq")
        for q, qb in lat.pairs():
            cu = _dot(lat.c[q], [f"u{a}" for a in ax])
            cF = _dot(lat.c[q], [f"F{a}" for a in ax])
            wq = w[q]
            L += [f"{I}cu = {cu}",
                  f"{I}cF = {cF}",
                  (f"{I}fp = {_lit(0.5)} * (a{q} + a{qb}) - {_lit(wq)} * drho" if stokes else
                   f"{I}fp = {_lit(0.5)} * (a{q} + a{qb}) - {_lit(wq)} * (drho + rho * ({_lit(4.5)} * cu * cu - b15))"),
                  f"{I}fm = {_lit(0.5)} * (a{q} - a{qb}) - {_lit(3 * wq)} * rho * cu",
                  (f"{I}dp = - omp * fp" if stokes else
                   f"{I}dp = hp * {_lit(wq)} * ({_lit(9.0)} * cu * cF - {_lit(3.0)} * uF) - omp * fp"),
                  f"{I}dm = hm * {_lit(3 * wq)} * cF - omm * fm",
                  f"{I}fo[{q} * N + n] = a{q} + dp + dm",
                  f"{I}fo[{qb} * N + n] = a{qb} + dp - dm"]
    return "\n".join(L) + "\n"


_RUN_SERIAL = """def run_serial(fa, fb, tab, g, par, nsteps):
    for it in range(nsteps):
        if it % 2 == 0:
            step_serial(fa, fb, tab, g, par)
        else:
            step_serial(fb, fa, tab, g, par)
"""

#: Below this many fluid nodes one thread is faster (no barrier per step; measured on 2 cores).
SERIAL_NODES = 32768


def _cache_dir() -> Path | None:
    root = os.environ.get("PVAE_LBM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pvae-lbm")
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        return Path(root)
    except OSError:
        return None


def get_step(lat: Lattice, B: int, dtype, stokes: bool = True) -> tuple[callable, callable]:
    """The compiled (parallel one-step kernel, serial n-step runner) for (lattice, dtype).


    The generated source is written to a module file in a cache folder (``$PVAE_LBM_CACHE`` or
    ``~/.cache/pvae-lbm``) so that numba's on-disk cache spares later processes the compile
    (a few seconds per kernel); without a writable folder it compiles in memory.
    """
    key = (lat.name, B, np.dtype(dtype).name, stokes)
    if key in _KERNELS:
        return _KERNELS[key]
    src = kernel_source(lat, B, stokes)
    tname = np.dtype(dtype).name
    serial = src.replace("def step(", "def step_serial(").replace("prange(N)", "range(N)")
    module_src = (f"# generated by data_pipeline.lbm.numba_backend; do not edit\n"
                  f"import numpy as np\nfrom numba import njit, prange\nT = np.{tname}\n\n"
                  f"@njit(parallel=True, fastmath=True, boundscheck=False, nogil=True, cache=True)\n"
                  + src + "\n\n"
                  "@njit(fastmath=True, boundscheck=False, nogil=True, cache=True)\n" + serial
                  + "\n\n@njit(nogil=True, cache=True)\n" + _RUN_SERIAL)
    digest = hashlib.sha1((module_src + numba.__version__).encode()).hexdigest()[:12]
    fn = None
    cache = _cache_dir()
    if cache is not None:
        path = cache / f"lbm_{lat.name}_{tname}_{digest}.py"
        try:
            if not path.exists():
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(module_src)
                os.replace(tmp, path)
            if path.stem in sys.modules:
                mod = sys.modules[path.stem]
            else:
                spec = importlib.util.spec_from_file_location(path.stem, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = mod   # numba's cache re-imports the module by name
                spec.loader.exec_module(mod)
            fn = (mod.step, mod.run_serial)
        except OSError:
            fn = None
    if fn is None:
        ns = {"T": np.dtype(dtype).type, "prange": prange}
        exec(compile(src + "\n" + serial, f"<lbm_{lat.name}_{tname}>", "exec"), ns)
        ns["step_serial"] = njit(fastmath=True, boundscheck=False, nogil=True)(ns["step_serial"])
        exec(compile(_RUN_SERIAL, "<lbm_run_serial>", "exec"), ns)
        fn = (njit(parallel=True, fastmath=True, boundscheck=False, nogil=True)(ns["step"]),
              njit(nogil=True)(ns["run_serial"]))
    _KERNELS[key] = fn
    return fn


@njit(parallel=True, fastmath=False, cache=True)
def _moments(f, tab, c, g, u, drho, stokes):  # pragma: no cover - compiled
    """Macroscopic fields of the streamed populations: u (B, D, N) float64, drho (B, N)."""
    B = f.shape[0]
    Q, N = tab.shape
    D = c.shape[1]
    for n in prange(N):
        for b in range(B):
            r = 0.0
            j = np.zeros(3)
            for q in range(Q):
                a = np.float64(f[b, tab[q, n]])
                r += a
                for d in range(D):
                    j[d] += c[q, d] * a
            drho[b, n] = r
            for d in range(D):
                u[b, d, n] = (j[d] if stokes else j[d] / (1.0 + r)) + 0.5 * g[b, d]


class NumbaBackend:
    """State and stepping of one sparse LBM run on the CPU.

    Parameters
    ----------
    lat : the lattice
    table : (Q, N) pull table (see ``topology.neighbour_table``)
    g : (B, D) body-force accelerations, one row per driven direction (lattice units)
    omega : (omega_plus, omega_minus) relaxation rates
    dtype : float32 or float64
    """

    def __init__(self, lat, table, g, omega, dtype, stokes=True):
        self.lat, self.dtype = lat, np.dtype(dtype)
        self.table = np.ascontiguousarray(table)
        self.B = g.shape[0]
        self.N = table.shape[1]
        self.g = np.ascontiguousarray(g, dtype=self.dtype)
        op, om = omega
        self.par = np.array([op, om, 1 - op / 2, 1 - om / 2], dtype=self.dtype)
        self.f = np.zeros((self.B, lat.Q * self.N), dtype=self.dtype)
        self.f2 = np.empty_like(self.f)
        self.stokes = bool(stokes)
        self._step, self._run_serial = get_step(lat, 1, self.dtype, self.stokes)
        self.serial = self.N < SERIAL_NODES
        self._c = lat.c.astype(np.float64)

    def run(self, nsteps: int) -> None:
        # Directions are independent: run each for nsteps in turn, so that one direction's two
        # buffers and the table stay in the last-level cache (measured 3-4x faster at 64^3 than
        # interleaving the directions every step).
        for b in range(self.B):
            src, dst = self.f[b], self.f2[b]
            if self.serial:
                self._run_serial(src, dst, self.table, self.g[b], self.par, nsteps)
                continue
            for _ in range(nsteps):
                self._step(src, dst, self.table, self.g[b], self.par)
                src, dst = dst, src
        if nsteps % 2:
            self.f, self.f2 = self.f2, self.f

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """u (B, D, N) float64 velocity (Guo: includes g/2), drho (B, N) density deviation."""
        u = np.empty((self.B, self.lat.D, self.N))
        drho = np.empty((self.B, self.N))
        _moments(self.f, self.table, self._c, self.g.astype(np.float64), u, drho, self.stokes)
        return u, drho

    def scale(self, factor: float) -> None:
        """Scale force and deviations (Stokes flow is linear in the force)."""
        self.f *= self.dtype.type(factor)
        self.g *= self.dtype.type(factor)

    def set_threads(self, n: int | None) -> None:
        if n:
            numba.set_num_threads(n)
