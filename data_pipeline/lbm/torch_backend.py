"""PyTorch backend: the same sparse pull-stream + TRT algorithm as the numba kernel.

Used for CUDA (``device="cuda"``) and tested on the CPU against the numba backend. The step is
a handful of tensor ops over (B, Q, N); on CUDA it is compiled with ``torch.compile`` when that
works (fallback: eager).
"""
from __future__ import annotations

import numpy as np
import torch

from .lattice import Lattice


def _trt_step(f, tab, c, w, opp, g, par, stokes: bool = True):
    """One fused step. f: (B, Q*N) post-collision deviations -> new (B, Q*N)."""
    B = f.shape[0]
    Q, N = tab.shape
    a = f[:, tab]                                   # (B, Q, N) streamed (pull) populations
    drho = a.sum(1)                                 # (B, N)
    if stokes:                                      # linear (Stokes) equilibrium, rho0 = 1
        u = torch.einsum("bqn,qd->bdn", a, c) + 0.5 * g[:, :, None]              # (B, D, N)
        cu = torch.einsum("qd,bdn->bqn", c, u)      # (B, Q, N)
        cF = (c @ g.T).T[:, :, None]                # (B, Q, 1)
        wq = w[None, :, None]
        ab = a[:, opp]
        fp = 0.5 * (a + ab) - wq * drho[:, None]
        fm = 0.5 * (a - ab) - 3.0 * wq * cu
        return (a - par[0] * fp + par[3] * 3.0 * wq * cF - par[1] * fm).reshape(B, Q * N)
    rho = 1.0 + drho
    u = torch.einsum("bqn,qd->bdn", a, c) / rho[:, None] + 0.5 * g[:, :, None]   # (B, D, N)
    F = rho[:, None] * g[:, :, None]                # (B, D, N)
    cu = torch.einsum("qd,bdn->bqn", c, u)          # (B, Q, N)
    cF = torch.einsum("qd,bdn->bqn", c, F)
    usq = (u * u).sum(1)[:, None]                   # (B, 1, N)
    uF = (u * F).sum(1)[:, None]
    wq = w[None, :, None]
    ab = a[:, opp]
    fp = 0.5 * (a + ab) - wq * (drho[:, None] + rho[:, None] * (4.5 * cu * cu - 1.5 * usq))
    fm = 0.5 * (a - ab) - 3.0 * wq * rho[:, None] * cu
    dp = par[2] * wq * (9.0 * cu * cF - 3.0 * uF) - par[0] * fp
    dm = par[3] * 3.0 * wq * cF - par[1] * fm
    return (a + dp + dm).reshape(B, Q * N)


class TorchBackend:
    """State and stepping of one sparse LBM run with torch (same interface as NumbaBackend)."""

    def __init__(self, lat: Lattice, table, g, omega, dtype, device="cpu", compile=None, stokes=True):
        self.stokes = bool(stokes)
        self.lat = lat
        self.device = torch.device(device)
        self.tdtype = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}[np.dtype(dtype)]
        self.B, self.N = g.shape[0], table.shape[1]
        self.tab = torch.as_tensor(np.asarray(table, dtype=np.int64), device=self.device)
        # lattice constants built directly in the run's dtype (exact rational -> dtype)
        self.c = torch.as_tensor(lat.c.astype(np.dtype(dtype)), device=self.device)
        self.w = torch.as_tensor(lat.w(dtype), device=self.device)
        self.opp = torch.as_tensor(lat.opp, device=self.device)
        self.g = torch.as_tensor(np.asarray(g, dtype=np.dtype(dtype)), device=self.device)
        op, om = omega
        self.par = torch.tensor([op, om, 1 - op / 2, 1 - om / 2], dtype=self.tdtype, device=self.device)
        self.f = torch.zeros((self.B, lat.Q * self.N), dtype=self.tdtype, device=self.device)
        self._fn = _trt_step
        if compile is None:
            compile = self.device.type == "cuda"
        if compile:
            try:
                fn = torch.compile(_trt_step, dynamic=False)
                fn(self.f, self.tab, self.c, self.w, self.opp, self.g, self.par, self.stokes)  # compile now
                self._fn = fn
            except Exception:  # noqa: BLE001 - any compiler failure: the eager path is correct
                self._fn = _trt_step

    @torch.no_grad()
    def run(self, nsteps: int) -> None:
        for _ in range(nsteps):
            self.f = self._fn(self.f, self.tab, self.c, self.w, self.opp, self.g, self.par, self.stokes)

    @torch.no_grad()
    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        a = self.f[:, self.tab].double()                                  # (B, Q, N)
        drho = a.sum(1)
        j = torch.einsum("bqn,qd->bdn", a, self.c.double())
        u = (j if self.stokes else j / (1.0 + drho)[:, None]) + 0.5 * self.g.double()[:, :, None]
        return u.cpu().numpy(), drho.cpu().numpy()

    @torch.no_grad()
    def scale(self, factor: float) -> None:
        self.f *= factor
        self.g *= factor

    def set_threads(self, n: int | None) -> None:
        if n and self.device.type == "cpu":
            torch.set_num_threads(n)
