"""pVAE training benchmark: throughput and peak memory on CPU, ours vs the original architecture.

    python bench/train.py                  # speed: 64^3, a few training steps per model (~1-2 min)
    python bench/train.py --json           # the same as JSON records
    python bench/train.py --accuracy runs/toy32 --epochs 10
                                           # also: train both models for the same number of epochs
                                           # on a dataset and compare test metrics

Speed: samples/s of full training steps (forward, loss, backward, AdamW step) after warm-up
steps, and peak resident memory (ru_maxrss) of a fresh child process per model, so the two
measurements do not share an allocator. Run it alone: other CPU-heavy processes on the same
cores make the numbers meaningless (a loaded machine gives other timings).

The original architecture (as published for the 100^3 model): four stride-2 Conv3d layers with
48/48/192/128 channels, kernel 3, ReLU, Dropout3d(0.2), a dense layer to a 250-dimensional latent,
a mirrored ConvTranspose3d decoder and a [16, 16, 4] regressor on the latent mean.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from models.pvae import PVAE, stage_sizes  # noqa: E402


def output_paddings(sizes: list[int], kernel_size: int = 3) -> list[int]:
    """output_padding of each transposed-conv stage of the original decoder (sizes[i+1] -> sizes[i])."""
    pad = kernel_size // 2
    return [big - ((small - 1) * 2 - 2 * pad + kernel_size) for big, small in zip(sizes[:-1], sizes[1:])]


class OriginalPVAE(nn.Module):
    """The original 3D pVAE architecture, with our interface (encode/decode/predict_properties)."""

    def __init__(self, input_size: int = 64, n_properties: int = 4, latent_dim: int = 250,
                 channels=(48, 48, 192, 128), dropout: float = 0.2):
        super().__init__()
        self.dims, self.input_size, self.latent_dim = 3, input_size, latent_dim
        sizes = stage_sizes(input_size, len(channels))
        pads = output_paddings(sizes)
        enc, c_in = [], 1
        for c in channels:
            enc += [nn.Conv3d(c_in, c, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout3d(dropout)]
            c_in = c
        self.encoder = nn.Sequential(*enc)
        self.bottleneck_shape = (channels[-1],) + (sizes[-1],) * 3
        flat = math.prod(self.bottleneck_shape)
        self.fc_mu, self.fc_logvar = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.fc_dec = nn.Linear(latent_dim, flat)
        dec, rev = [], list(channels[::-1])
        outs = rev[1:] + [1]
        for i, (a, b) in enumerate(zip(rev, outs)):
            dec.append(nn.ConvTranspose3d(a, b, 3, stride=2, padding=1, output_padding=pads[len(channels) - 1 - i]))
            if i < len(channels) - 1:
                dec += [nn.ReLU(), nn.Dropout3d(dropout)]
        self.decoder = nn.Sequential(*dec)
        self.regressor = nn.Sequential(nn.Linear(latent_dim, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                                       nn.Linear(16, n_properties))

    def encode(self, x):
        h = self.encoder(x).flatten(1)  # (B, C * s^3)
        return self.fc_mu(h), self.fc_logvar(h)

    reparameterize = staticmethod(PVAE.reparameterize)

    def decode(self, z):
        return self.decoder(self.fc_dec(z).view(z.shape[0], *self.bottleneck_shape))  # (B, 1, S, S, S)

    def predict_properties(self, mu):
        return self.regressor(mu)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return {"logits": self.decode(z), "mu": mu, "logvar": logvar, "z": z, "props": self.predict_properties(mu)}


def build(name: str, size: int):
    if name == "original":
        return OriginalPVAE(input_size=size)
    from models.config import load_config
    cfg = load_config(ROOT / "configs" / "pvae_demo.yaml", input_size=size)
    return PVAE.from_config(cfg)


def _speed_child(name: str, size: int, batch: int, steps: int, warmup: int, threads: int, queue) -> None:
    from models.losses import pvae_loss
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name, size).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = (torch.rand(batch, 1, size, size, size) < 0.4).float()  # (B, 1, S, S, S)
    y = torch.randn(batch, 4)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        out = model(x)
        loss = pvae_loss(out, x, y, beta=1.0, alpha=1.0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    queue.put({"model": name, "size": size, "batch": batch, "steps": steps, "threads": threads,
               "params": sum(p.numel() for p in model.parameters()),
               "samples_per_s": batch * steps / dt, "s_per_step": dt / steps,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "rss_before_mib": rss0 / 1024})


def speed(size: int, batch: int, steps: int, warmup: int, threads: int) -> list[dict]:
    ctx = mp.get_context("spawn")
    records = []
    for name in ("ours", "original"):
        q = ctx.Queue()
        p = ctx.Process(target=_speed_child, args=(name, size, batch, steps, warmup, threads, q))
        p.start()
        records.append(q.get())
        p.join()
    return records


def accuracy(dataset: str, epochs: int, threads: int, out: str) -> list[dict]:
    """Train ours (configs/pvae_demo.yaml) and the original for the same epochs; test metrics."""
    from models.config import load_config
    from models.train import Trainer
    records = []
    for name in ("ours", "original"):
        cfg = load_config(ROOT / "configs" / "pvae_demo.yaml", epochs=epochs, num_threads=threads, patience=0)
        t = Trainer(cfg, dataset)
        if name == "original":
            torch.manual_seed(cfg.seed)
            t.model = OriginalPVAE(input_size=cfg.input_size, n_properties=len(cfg.properties))
            t.optimizer = torch.optim.AdamW(t.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            t.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(t.optimizer, T_max=epochs,
                                                                    eta_min=cfg.lr * cfg.min_lr_ratio)
        t0 = time.perf_counter()
        summary = t.fit(Path(out) / name, log=lambda s, n=name: print(f"[{n}] {s}", flush=True))
        m = t.evaluate("test")
        records.append({"model": name, "epochs": epochs, "train_time_s": time.perf_counter() - t0,
                        "best_epoch": summary["best_epoch"],
                        **{k: m[k] for k in m if k.startswith(("r2_", "mae_")) or k in
                           ("pore_iou", "voxel_accuracy", "recon_bce", "porosity_error", "s2_distance")}})
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--accuracy", metavar="DATASET", help="also train both models on DATASET (32^3)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="runs/bench_train")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    records = speed(args.size, args.batch, args.steps, args.warmup, args.threads)
    if not args.json:
        print(f"training throughput at {args.size}^3, batch {args.batch}, {args.threads} threads, CPU "
              f"({args.steps} timed steps after {args.warmup} warm-up)")
        for r in records:
            print(f"  {r['model']:<9} {r['params']:>11,} params  {r['samples_per_s']:7.2f} samples/s  "
                  f"peak RSS {r['peak_rss_mib']:7.0f} MiB")
        ratio = records[0]["samples_per_s"] / records[1]["samples_per_s"]
        print(f"  ours / original throughput: {ratio:.1f}x")
    if args.accuracy:
        acc = accuracy(args.accuracy, args.epochs, args.threads, args.out)
        records += acc
        if not args.json:
            for r in acc:
                print(f"  {r['model']:<9} {r['epochs']} epochs in {r['train_time_s']:.0f} s: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k.startswith("r2_") or k == "pore_iou"))
    if args.json:
        print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
