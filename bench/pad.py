"""Periodic padding in the training step: torch's circular padding vs models.layers.circular_pad.

    .venv/bin/python bench/pad.py                       # configs/pvae_demo.yaml at 32^3, batch 32
    .venv/bin/python bench/pad.py --config configs/pvae_2d.yaml --dims 2 --size 64 --batch 8 --threads 1

Times full pVAE training steps (forward, loss with the generation term, backward, AdamW step) of
one model whose periodic convolutions run either with torch's own ``padding_mode="circular"``
(the baseline: the same modules with their class set back to nn.Conv2d/3d, same weights) or with
:func:`models.layers.circular_pad`, alternating the two so that both see the same machine state.
Prints min / median seconds per step and samples/s of each and the ratio. Run it alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from models.config import load_config  # noqa: E402
from models.layers import PeriodicConv2d, PeriodicConv3d  # noqa: E402
from models.losses import pvae_loss  # noqa: E402
from models.pvae import PVAE  # noqa: E402


def set_padding(model: nn.Module, ours: bool) -> None:
    """Switch every periodic convolution of ``model`` between our padding and torch's (in place)."""
    pairs = {PeriodicConv3d: nn.Conv3d, PeriodicConv2d: nn.Conv2d}
    for m in model.modules():
        for mine, theirs in pairs.items():
            if isinstance(m, (mine, theirs)) and m.padding_mode == "circular":
                m.__class__ = mine if ours else theirs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/pvae_demo.yaml")
    p.add_argument("--dims", type=int, choices=(2, 3), default=None, help="default: the config's dims")
    p.add_argument("--size", type=int, default=None, help="input edge (default: the config's input_size)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant (after 1 warm-up each)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    cfg.dims = args.dims or cfg.dims
    cfg.input_size = args.size or cfg.input_size
    cfg.properties = cfg.properties or ["porosity", "k_xx"]
    torch.manual_seed(0)
    model = PVAE.from_config(cfg)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = (torch.rand((args.batch, 1) + (cfg.input_size,) * cfg.dims) < 0.6).float()  # (B, 1, S..)
    y = torch.randn(args.batch, len(cfg.properties))

    def step() -> float:
        t0 = time.perf_counter()
        out = model(x)
        gen = model.generate_from(out) if cfg.gamma > 0 and "prior_features" in out else None
        loss = pvae_loss(out, x, y, beta=cfg.beta, alpha=cfg.alpha, gamma=cfg.gamma, gen_logits=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    times = {"torch circular pad": [], "circular_pad (ours)": []}
    for name, ours in (("torch circular pad", False), ("circular_pad (ours)", True)):
        set_padding(model, ours)
        step()  # warm-up
    for _ in range(args.repeats):
        for name, ours in (("torch circular pad", False), ("circular_pad (ours)", True)):
            set_padding(model, ours)
            times[name].append(step())
    print(f"pVAE training step, {args.config}, {cfg.dims}D {cfg.input_size}^{cfg.dims}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.repeats} steps each")
    print("| padding | min s/step | median s/step | samples/s (median) |\n| --- | ---: | ---: | ---: |")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {min(ts):.3f} | {med:.3f} | {args.batch / med:.1f} |")
    base, ours = (statistics.median(t) for t in times.values())
    print(f"speed-up (median): {base / ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
