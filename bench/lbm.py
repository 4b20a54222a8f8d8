"""LBM solver speed: MLUPS of the sparse numba (CPU) / torch (CUDA) kernels vs the project's own
torch backend on CPU (the same sparse TRT algorithm, eager, the same number of steps) and the
memory-bandwidth roofline, plus the time to a converged 3-axis tensor.

    python bench/lbm.py [--json] [--quick] [--sizes 64 128] [--device auto|cpu|cuda] [--repeats 3]

MLUPS = million lattice-cell updates per second. ``mlups`` counts every cell of the box (solid
included: skipping solid cells shows up here); ``mlups_fluid`` counts fluid cells only. Each
figure is timed ``--repeats`` times (after one warm-up): ``mlups`` / ``mlups_fluid`` are the
medians, ``mlups_min`` / ``mlups_fluid_min`` the slowest repeat, ``seconds`` every repeat;
``speedup_vs_torch_cpu`` divides the kernel's median by the baseline's median, both measured in
this run. ``--dense-baseline`` adds the older dense eager-PyTorch BGK (roll streaming). The sample
is a periodic Gaussian random field thresholded at porosity 0.6 (seed 0). The roofline is the
measured copy bandwidth divided by the bytes moved per fluid-cell update (read + write of Q
populations, plus the int32 neighbour table for the sparse layout), converted to all cells.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_pipeline.lbm.lattice import D3Q19  # noqa: E402
from data_pipeline.lbm.topology import active_pore_space, neighbour_table  # noqa: E402
from data_pipeline.permeability import permeability  # noqa: E402

PHI = 0.6


def porous_sample(n: int, seed: int = 0) -> np.ndarray:
    x = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((n, n, n)), 2.0, mode="wrap")
    return x < np.quantile(x, PHI)


def copy_bandwidth(nbytes: int = 256 * 2 ** 20, repeats: int = 5) -> float:
    """Best-of copy bandwidth in bytes/s (read + write counted)."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def time_backend(be, steps: int, repeats: int = 3) -> list[float]:
    """Seconds of ``repeats`` runs of ``steps`` steps each, after a 2-step warm-up (compile)."""
    import torch

    be.run(2)  # warm-up (compile)
    out = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        be.run(steps)
        if isinstance(be.f, torch.Tensor) and be.f.device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def rates(cells: int, fluid: int, steps: int, seconds: list[float]) -> dict:
    """Median and slowest MLUPS over all cells and over fluid cells from the repeats' seconds."""
    med, slow = float(np.median(seconds)), float(np.max(seconds))
    return {"mlups": cells * steps / med / 1e6, "mlups_min": cells * steps / slow / 1e6,
            "mlups_fluid": fluid * steps / med / 1e6, "mlups_fluid_min": fluid * steps / slow / 1e6,
            "seconds": [float(x) for x in seconds], "repeats": len(seconds)}


def bench_sparse(im, dtype, impl, device, steps, repeats=3):
    """The project's sparse TRT kernel: ``numba-sparse`` (CPU) or ``torch-sparse`` on ``device``."""
    active, _ = active_pore_space(im)
    tab = neighbour_table(active, D3Q19)
    g = np.zeros((1, 3))
    g[0, 0] = 1e-6
    omega = (1.0, 1.0 / (0.5 + 0.1875 / 0.5))
    if impl == "numba-sparse":
        from data_pipeline.lbm.numba_backend import NumbaBackend
        be = NumbaBackend(D3Q19, tab, g, omega, dtype)
    else:
        from data_pipeline.lbm.torch_backend import TorchBackend
        be = TorchBackend(D3Q19, tab, g, omega, dtype, device=device)
    nf = tab.shape[1]
    return {**rates(im.size, nf, steps, time_backend(be, steps, repeats)), "fluid_fraction": nf / im.size}


def eager_baseline(im, dtype, device, steps, repeats=1):
    """A straightforward dense D3Q19 BGK in eager PyTorch: roll-streaming, mask bounce-back."""
    import torch
    tdt = getattr(torch, np.dtype(dtype).name)
    dev = torch.device(device)
    c = torch.as_tensor(D3Q19.c, device=dev)
    w = torch.as_tensor(D3Q19.w(dtype), device=dev)
    opp = torch.as_tensor(D3Q19.opp, device=dev)
    solid = torch.as_tensor(~im, device=dev)
    f = w[:, None, None, None].expand(19, *im.shape).clone()         # (Q, Z, Y, X)
    g = torch.tensor([1e-6, 0.0, 0.0], dtype=tdt, device=dev)
    cf = c.to(tdt)

    def step(f):
        rho = f.sum(0)
        u = torch.einsum("qzyx,qd->dzyx", f, cf) / rho + g[:, None, None, None] / 2
        cu = torch.einsum("qd,dzyx->qzyx", cf, u)
        feq = w[:, None, None, None] * rho * (1 + 3 * cu + 4.5 * cu ** 2 - 1.5 * (u * u).sum(0))
        fo = f - (f - feq)                                               # BGK, tau = 1
        fo = fo + 3 * w[:, None, None, None] * (cf @ g)[:, None, None, None] * rho
        fo = torch.where(solid, f[opp], fo)                              # bounce-back (full-way)
        return torch.stack([torch.roll(fo[q], shifts=(int(c[q, 2]), int(c[q, 1]), int(c[q, 0])),
                                       dims=(0, 1, 2)) for q in range(19)])
    f = step(f)
    seconds = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        for _ in range(steps):
            f = step(f)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
    return rates(im.size, int(im.sum()), steps, seconds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="64^3 fp32 only, few steps")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-converge", action="store_true", help="skip the time-to-converged-tensor run")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of every figure (median and slowest)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of both the numba kernel and the torch CPU baseline (default: all cores); "
                        "on a machine shared with another job, 2 torch threads ran 50x slower than 1 here")
    p.add_argument("--dense-baseline", action="store_true",
                   help="also time the dense eager-PyTorch BGK (roll streaming; 3 steps on CPU)")
    args = p.parse_args(argv)
    import numba
    import torch
    threads = int(args.threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)  # the kernel and its baseline get the same threads
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    sizes = [64] if args.quick else args.sizes
    dtypes = ["float32"] if args.quick else ["float32", "float64"]
    steps_fast = 20 if args.quick else (200 if device == "cuda" else 60)
    impl = "numba-sparse" if device == "cpu" else "torch-sparse"
    bw = copy_bandwidth()
    records = []
    info = {"device": device, "threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "copy_GBps": bw / 1e9}
    for n in sizes:
        im = porous_sample(n)
        for dt in dtypes:
            item = np.dtype(dt).itemsize
            bytes_sparse = 19 * 2 * item + 19 * 4
            bytes_dense = 19 * 2 * item
            first = len(records)
            r = bench_sparse(im, dt, impl, device, steps_fast, args.repeats)
            # the baseline: the project's torch backend on CPU, same algorithm, same number of steps
            rb = bench_sparse(im, dt, "torch-sparse", "cpu", steps_fast, args.repeats)
            records.append({"impl": impl, "size": n, "dtype": dt, **r, "steps": steps_fast,
                            "roofline_mlups": bw / bytes_sparse / 1e6 / r["fluid_fraction"],
                            "bytes_per_fluid_update": bytes_sparse,
                            "speedup_vs_torch_cpu": r["mlups"] / rb["mlups"], **info})
            records.append({"impl": "torch-sparse-cpu-baseline", "size": n, "dtype": dt, **rb, "steps": steps_fast,
                            "roofline_mlups": bw / bytes_sparse / 1e6 / rb["fluid_fraction"],
                            "bytes_per_fluid_update": bytes_sparse, **info})
            if args.dense_baseline and (n <= 64 or device == "cuda"):
                nb = 3 if (args.quick or device == "cpu") else 20
                rd = eager_baseline(im, dt, device, nb, args.repeats)
                records.append({"impl": "eager-dense-bgk", "size": n, "dtype": dt, **rd, "steps": nb,
                                "roofline_mlups": bw / bytes_dense / 1e6,
                                "bytes_per_fluid_update": bytes_dense, **info})
            if not args.json:
                for rec in records[first:]:
                    print(f"{rec['impl']:>25} {rec['size']}^3 {rec['dtype']}: {rec['mlups']:8.1f} MLUPS "
                          f"(slowest of {rec['repeats']} {rec['mlups_min']:7.1f}; fluid {rec['mlups_fluid']:7.1f}, "
                          f"slowest {rec['mlups_fluid_min']:7.1f}), {rec['steps']} steps, roofline "
                          f"{rec['roofline_mlups']:7.1f}"
                          + (f", {rec['speedup_vs_torch_cpu']:.1f}x torch CPU" if "speedup_vs_torch_cpu" in rec
                             else ""), flush=True)
    if not args.no_converge:
        im = porous_sample(64)
        permeability(im[:16, :16, :16], tol=1e-3, device=device)        # compile
        seconds = []
        for _ in range(max(1, args.repeats)):
            t = time.perf_counter()
            r = permeability(im, device=device)
            seconds.append(time.perf_counter() - t)
        el = float(np.median(seconds))
        records.append({"impl": f"{impl}:converged-tensor", "size": 64, "dtype": "float32",
                        "mlups": 3 * r.steps * im.size / el / 1e6, "seconds": el, "seconds_min": min(seconds),
                        "seconds_all": seconds, "repeats": len(seconds), "steps": r.steps,
                        "converged": r.converged, "residual": r.residual, "tau": r.tau,
                        "k_diag": np.diag(r.k).tolist(), "porosity": r.porosity, **info})
        if not args.json:
            print(f"converged 3-axis tensor, 64^3 phi={r.porosity:.3f}: median {el:.2f} s (min {min(seconds):.2f} s "
                  f"of {len(seconds)}), {r.steps} steps, converged={r.converged}, "
                  f"k_diag={np.round(np.diag(r.k), 4).tolist()}")
    if args.json:
        print(json.dumps(records))
    else:
        print(f"copy bandwidth {bw / 1e9:.1f} GB/s, device {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
