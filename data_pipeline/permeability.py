"""Intrinsic permeability tensor of a periodic pore space by the lattice Boltzmann method.

Physics (README.md, "Physics"): D2Q9 / D3Q19, periodic box, flow
driven by a body-force acceleration ``g`` (Guo forcing; by default with the linear Stokes
equilibrium, whose steady state is the creeping-flow limit that defines k), halfway bounce-back on solid voxels,
TRT collision with magic parameter Lambda = 3/16 (the wall sits exactly half-way between nodes
and the steady solution does not depend on the viscosity), BGK for comparison. Darcy in
lattice units::

    k_ij = nu * <u_i>_total / g_j          (voxel^2)

with ``<u>`` averaged over the whole box (solid = zero velocity) and ``nu = (tau - 1/2) / 3``.
One run drives every percolating axis at once (one population set per axis, sharing the
neighbour table); the tensor is symmetrised and the raw one is kept in ``k_raw``.

Implementation: a sparse fluid-only layout (only pores that wind around the periodic box along
some axis; isolated pores carry no flow), a precomputed pull table with bounce-back encoded in it,
a fused stream+collide kernel: numba on the CPU, torch on CUDA (``lbm/``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .lbm.lattice import lattice_for
from .lbm.topology import active_pore_space, neighbour_table

#: 1 millidarcy in m^2.
MILLIDARCY_M2 = 9.869233e-16


class SolverError(RuntimeError):
    """Divergence (NaN, Mach number over its bound) or an input the solver cannot label."""


@dataclass
class PermeabilityResult:
    """Permeability tensor and solver diagnostics of one sample (lattice units).

    k : (D, D) float64, voxel^2, symmetric, indices (x, y[, z]); x = last array axis
    porosity : pore fraction of the input (isolated pores included)
    converged : every driven axis met the tolerance (non-percolating axes: k = 0, trivially)
    steps : LBM steps run
    residual : final relative change of the mean velocity over ``check_every`` steps (max over axes)
    max_mach : max |u| / c_s over the fluid, c_s = 1/sqrt(3)
    reynolds : |<u>_pore| * d / nu with d = 2 * (largest inscribed radius), max over axes
    percolating : per axis x, y(, z)
    seconds : wall time of the solve (shared by the samples of one batch)
    """
    k: np.ndarray
    porosity: float
    converged: bool
    steps: int
    residual: float
    max_mach: float
    reynolds: float
    percolating: list
    seconds: float
    k_raw: np.ndarray | None = None        # (D, D) unsymmetrised, column j = drive along j
    mass_drift: float = 0.0                # relative change of the total mass over the run
    force: float = 0.0                     # body-force acceleration used (lattice units)
    tau: float = 1.0
    collision: str = "trt"
    backend: str = "numba"
    extra: dict = field(default_factory=dict)

    def to_dict(self, voxel_size: float | None = None) -> dict:
        """Strict-JSON dict; with ``voxel_size`` (m) adds ``permeability_m2`` and ``permeability_mD``.

        Tensor entries that were not computed (columns of axes not driven, NaN in ``k``) are None
        (JSON null), never NaN: strict parsers (jq, ``json.loads(parse_constant=...)``) refuse NaN."""
        k = np.asarray(self.k, dtype=float)
        out = {
            "porosity": float(self.porosity),
            "permeability": _nullable(k),
            "units": "lattice (voxel^2)",
            "converged": bool(self.converged),
            "steps": int(self.steps),
            "residual": float(self.residual),
            "max_mach": float(self.max_mach),
            "reynolds": float(self.reynolds),
            "percolating": [bool(p) for p in self.percolating],
            "seconds": float(self.seconds),
            "mass_drift": float(self.mass_drift),
            "force": float(self.force),
            "tau": float(self.tau),
            "collision": self.collision,
            "backend": self.backend,
        }
        if voxel_size is not None:
            if not voxel_size > 0:
                raise ValueError(f"voxel_size must be positive (metres), got {voxel_size!r}")
            k_m2 = k * float(voxel_size) ** 2
            out["voxel_size"] = float(voxel_size)
            out["permeability_m2"] = _nullable(k_m2)
            out["permeability_mD"] = _nullable(k_m2 / MILLIDARCY_M2)
        return {key: (None if isinstance(v, float) and not np.isfinite(v) else v) for key, v in out.items()}


def _nullable(a: np.ndarray) -> list:
    """Nested list of ``a`` with non-finite entries as None (JSON null)."""
    return np.where(np.isfinite(a), a, None).tolist()


# ----------------------------------------------------------------------------------------------
def _check_image(im, name="im") -> np.ndarray:
    im = np.asarray(im)
    if im.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D (Y, X) or 3D (Z, Y, X) array, got shape {im.shape}")
    if im.dtype != bool:
        vals = np.unique(im)
        if not np.all(np.isin(vals, [0, 1])):
            raise ValueError(f"{name}: expected a bool array (True = pore), got values {vals[:5].tolist()}")
        im = im.astype(bool)
    if min(im.shape) < 2:
        raise ValueError(f"{name}: every axis needs at least 2 voxels, got shape {im.shape}")
    if not im.any():
        raise SolverError(f"{name}: all solid (porosity 0): no pore space to label")
    if im.all():
        raise SolverError(f"{name}: all pore (porosity 1): a periodic box without solid has no "
                          "finite permeability")
    return im


def _inscribed_radius(im: np.ndarray) -> float:
    """Largest inscribed radius of the pore space (voxels), periodic images included."""
    pad = [(min(s, 32) // 2,) * 2 for s in im.shape]
    dt = ndimage.distance_transform_edt(np.pad(im, pad, mode="wrap"))
    return float(dt.max())


@dataclass
class _Prepared:
    im: np.ndarray
    porosity: float
    active: np.ndarray
    percolating: np.ndarray   # (D,) x, y(, z)
    radius: float


def _prepare(im, name) -> _Prepared:
    im = _check_image(im, name)
    active, perc = active_pore_space(im)
    radius = _inscribed_radius(active) if active.any() else 0.0
    return _Prepared(im, float(im.mean()), active, perc, radius)


def _omegas(collision: str, tau: float, magic: float) -> tuple[float, float]:
    if tau <= 0.5:
        raise ValueError(f"tau must be > 0.5, got {tau}")
    op = 1.0 / tau
    if collision == "bgk":
        return op, op
    if collision == "trt":
        tau_m = 0.5 + magic / (tau - 0.5)
        return op, 1.0 / tau_m
    raise ValueError(f"collision must be 'trt' or 'bgk', got {collision!r}")


def _resolve_device(device: str) -> str:
    if device == "auto":
        try:
            import torch
            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def _make_backend(lat, table, g, omega, dtype, device, backend, stokes):
    if backend == "auto":
        backend = "numba" if device == "cpu" else "torch"
    if backend == "numba":
        if device != "cpu":
            raise ValueError("the numba backend runs on the CPU only")
        from .lbm.numba_backend import NumbaBackend
        return NumbaBackend(lat, table, g, omega, dtype, stokes=stokes), "numba"
    if backend == "torch":
        from .lbm.torch_backend import TorchBackend
        return TorchBackend(lat, table, g, omega, dtype, device=device, stokes=stokes), "torch"
    raise ValueError(f"backend must be auto, numba or torch, got {backend!r}")


def _solve_batch(preps: list[_Prepared], axes: list[int], *, collision, tau, magic, tol, max_steps,
                 check_every, dtype, device, backend, force, mach_target, mach_bound,
                 rescale, equilibrium) -> list[PermeabilityResult]:
    """Drive ``axes`` on every sample of ``preps`` (same dims) in one sparse run."""
    t0 = time.perf_counter()
    D = preps[0].im.ndim
    lat = lattice_for(D)
    dtype = np.dtype(dtype)
    if equilibrium not in ("stokes", "navier-stokes"):
        raise ValueError(f"equilibrium must be 'stokes' or 'navier-stokes', got {equilibrium!r}")
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    nu = (tau - 0.5) / 3.0
    omega = _omegas(collision, tau, magic)

    # concatenated sparse layout: sample s owns nodes offsets[s]:offsets[s+1]
    tables, offsets, n0 = [], [0], 0
    for p in preps:
        t = neighbour_table(p.active, lat, np.int64)
        N = t.shape[1]
        # shift node indices of this sample: q*N + m -> q*Ntot + n0 + m, done after Ntot is known
        tables.append((t // N, t % N + n0))
        n0 += N
        offsets.append(n0)
    Ntot = n0
    idx_dtype = np.int32 if lat.Q * Ntot < np.iinfo(np.int32).max else np.int64
    table = np.concatenate([(q * Ntot + m).astype(idx_dtype) for q, m in tables], axis=1)  # (Q, Ntot)
    offsets = np.array(offsets)
    volumes = np.array([p.im.size for p in preps], dtype=float)

    # force: u_max ~ g R^2 / (2 nu) in a slit of half-width R; aim at Mach mach_target
    if force is None:
        R = max(1.0, min(p.radius for p in preps))
        g = mach_target / math.sqrt(3.0) * 2.0 * nu / R ** 2
    else:
        g = float(force)
    B = len(axes)
    gvec = np.zeros((B, D))
    for b, a in enumerate(axes):
        gvec[b, a] = g
    be, be_name = _make_backend(lat, table, gvec, omega, dtype, device, backend,
                                equilibrium == "stokes")

    S = len(preps)
    prev = None
    steps, rescales = 0, 0
    res = np.full((B, S), np.inf)
    mass0 = None
    history = []                                          # (steps, max residual) per check
    while True:
        n = min(check_every, max_steps - steps)
        if n <= 0:
            break
        be.run(n)
        steps += n
        u, drho = be.moments()                         # (B, D, N), (B, N)
        usum = np.add.reduceat(u, offsets[:-1], axis=2)  # (B, D, S)
        umax2 = np.maximum.reduceat((u * u).sum(1), offsets[:-1], axis=1)  # (B, S)
        mass = drho.sum()
        if mass0 is None:
            mass0 = mass
        if not (np.all(np.isfinite(usum)) and np.all(np.isfinite(umax2))):
            raise SolverError(f"LBM diverged (NaN/inf) after {steps} steps "
                              f"(tau={tau}, collision={collision}, g={g:.3g})")
        mach = math.sqrt(3.0 * float(umax2.max()))
        if mach > mach_bound:
            if rescale and rescales < 3 and force is None:
                factor = 0.5 * mach_bound / mach
                be.scale(factor)
                g *= factor
                rescales += 1
                prev = None
                continue
            raise SolverError(f"Mach number {mach:.3g} over the bound {mach_bound} after {steps} "
                              f"steps (g={g:.3g}, tau={tau}): flow left the Stokes regime or diverged")
        ubar = usum.transpose(0, 2, 1) / volumes[None, :, None]   # (B, S, D) whole-volume mean
        if prev is not None:
            norm = np.linalg.norm(ubar, axis=2)
            res = np.linalg.norm(ubar - prev, axis=2) / np.where(norm > 0, norm, np.inf)
            res = np.where(norm > 0, res, np.inf)
            history.append((steps, float(res.max())))
            if np.all(res <= tol):
                break
        prev = ubar
    seconds = time.perf_counter() - t0

    N_all = float(Ntot)
    mass_drift = float(abs(mass - mass0) / N_all) if mass0 is not None else 0.0
    out = []
    for s, p in enumerate(preps):
        k_raw = np.full((D, D), np.nan)
        for b, a in enumerate(axes):
            k_raw[:, a] = nu * ubar[b, s] / g
        perc = p.percolating
        k_raw[~perc, :] = 0.0
        k_raw[:, ~perc] = 0.0
        k = np.where(np.isnan(k_raw), k_raw.T, k_raw)
        k = np.where(np.isnan(k), np.nan, 0.5 * (k + k.T))
        nd = np.count_nonzero(p.active)
        machs = float(np.sqrt(3.0 * umax2[:, s].max()))
        upore = float(np.linalg.norm(ubar[:, s], axis=1).max()) * p.im.size / max(nd, 1)
        out.append(PermeabilityResult(
            k=k, porosity=p.porosity, converged=bool(np.all(res[:, s] <= tol)), steps=steps,
            residual=float(res[:, s].max()), max_mach=machs, reynolds=upore * 2 * p.radius / nu,
            percolating=[bool(x) for x in perc], seconds=seconds, k_raw=k_raw,
            mass_drift=mass_drift, force=g, tau=tau, collision=collision, backend=be_name,
            extra={"rescales": rescales, "fluid_nodes": nd, "batch_size": S, "history": history}))
    return out


def _trivial(p: _Prepared, collision, tau) -> PermeabilityResult:
    D = p.im.ndim
    return PermeabilityResult(
        k=np.zeros((D, D)), porosity=p.porosity, converged=True, steps=0, residual=0.0,
        max_mach=0.0, reynolds=0.0, percolating=[False] * D, seconds=0.0, k_raw=np.zeros((D, D)),
        tau=tau, collision=collision, backend="none", extra={"fluid_nodes": 0})


# step cap when none is given, per dimensionality: a 64x64 image near its percolation threshold needs
# 23,000-30,000 D2Q9 steps to tol 1e-5 (11 of 120 grayscale images failed at 20,000, k within 0.1% of
# the converged value; bench/RESULTS.md "Percolation and the step cap"), at well under a second each
DEFAULT_MAX_STEPS = {2: 100_000, 3: 20_000}

_DEFAULTS = dict(collision="trt", tau=1.0, magic=3 / 16, tol=1e-5, max_steps=None, check_every=100,
                 dtype="float32", device="auto", axes=None, backend="auto", force=None,
                 mach_target=0.02, mach_bound=0.1, rescale=True, threads=None,
                 equilibrium="stokes")


def permeability_batch(ims, **kwargs) -> list[PermeabilityResult]:
    """Permeability tensors of many samples of one dimensionality, solved in shared runs.

    Samples are concatenated in one sparse node list (one kernel launch per step for the whole
    batch); all take the smallest force among them, and the batch runs until every sample has
    converged. Takes the keyword arguments of :func:`permeability`.

    Returns
    -------
    list of PermeabilityResult, in the order of ``ims``
    """
    opts = dict(_DEFAULTS)
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid: {sorted(opts)}")
    opts.update(kwargs)
    if not (opts["tol"] > 0 and (opts["max_steps"] is None or opts["max_steps"] > 0) and opts["check_every"] > 0):
        raise ValueError("tol, max_steps and check_every must be positive")
    preps = [_prepare(im, f"sample {i}" if len(ims) > 1 else "im") for i, im in enumerate(ims)]
    dims = {p.im.ndim for p in preps}
    if len(dims) > 1:
        raise ValueError(f"a batch must have one dimensionality, got {sorted(dims)}")
    D = dims.pop()
    if opts["max_steps"] is None:
        opts["max_steps"] = DEFAULT_MAX_STEPS[D]
    axes = list(range(D)) if opts["axes"] is None else sorted(set(int(a) for a in opts["axes"]))
    if any(a < 0 or a >= D for a in axes):
        raise ValueError(f"axes must be in 0..{D - 1} (x, y[, z]), got {opts['axes']}")
    device = _resolve_device(opts["device"])
    if opts["threads"]:
        import numba
        numba.set_num_threads(int(opts["threads"]))
    results: list[PermeabilityResult | None] = [None] * len(preps)
    # group samples by which requested axes percolate (each group shares one run)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(preps):
        drive = tuple(a for a in axes if p.percolating[a])
        if not drive:
            results[i] = _trivial(p, opts["collision"], opts["tau"])
            if not p.percolating.any():
                results[i].percolating = [False] * D
            results[i].percolating = [bool(x) for x in p.percolating]
            continue
        groups.setdefault(drive, []).append(i)
    solve_opts = {k: opts[k] for k in ("collision", "tau", "magic", "tol", "max_steps", "check_every",
                                       "dtype", "backend", "force", "mach_target", "mach_bound",
                                       "rescale", "equilibrium")}
    for drive, idx in groups.items():
        res = _solve_batch([preps[i] for i in idx], list(drive), device=device, **solve_opts)
        for i, r in zip(idx, res):
            # axes requested but not percolating: k = 0 there; axes not requested stay NaN
            results[i] = r
    return results


def permeability(im, *, collision="trt", tau=1.0, magic=3 / 16, tol=1e-5, max_steps=None,
                 dtype="float32", device="auto", axes=None, **kwargs) -> PermeabilityResult:
    """Intrinsic permeability tensor of a periodic binary image (lattice units, voxel^2).

    Parameters
    ----------
    im : (Y, X) or (Z, Y, X) bool, True = pore; periodic along every axis
    collision : "trt" (default; k independent of tau) or "bgk"
    tau : relaxation time of the symmetric moments; viscosity nu = (tau - 1/2) / 3 (lattice units)
    magic : TRT magic parameter Lambda (3/16 puts bounce-back walls exactly half-way)
    tol : convergence when the relative change of the whole-volume mean velocity over
        ``check_every`` (default 100) steps is <= tol for every driven axis
    max_steps : step cap; not converged by then -> ``converged=False`` (still a number); None:
        ``DEFAULT_MAX_STEPS`` (100,000 in 2D, 20,000 in 3D)
    dtype : "float32" or "float64"
    device : "auto" (CUDA if available), "cpu" or "cuda"
    axes : driven axes (0=x, 1=y, 2=z); default all. Tensor entries with neither index driven are NaN.
    **kwargs : check_every, backend ("auto"|"numba"|"torch"), force (body-force acceleration,
        lattice units; default scaled with the largest inscribed radius R so that
        u_max ~ mach_target * c_s), mach_target (0.02), mach_bound (0.1: above it the run is
        rescaled, up to 3 times, else SolverError), rescale (True), threads (numba threads),
        equilibrium ("stokes", default: linear equilibrium, the Stokes limit that defines the
        intrinsic permeability, exactly linear in the force and Onsager-symmetric; or
        "navier-stokes": quadratic equilibrium, k then carries O(Re) inertial corrections)

    Returns
    -------
    PermeabilityResult ; ``k`` in voxel^2 (multiply by voxel_size^2 for m^2)

    Raises
    ------
    SolverError : all solid, all pore, divergence (NaN) or Mach number over its bound
    ValueError : bad shape, values or options
    """
    return permeability_batch([im], collision=collision, tau=tau, magic=magic, tol=tol,
                              max_steps=max_steps, dtype=dtype, device=device, axes=axes, **kwargs)[0]
