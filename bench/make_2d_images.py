"""A folder of grayscale 2D .tif microstructures, as the older 2D tool took them: the input of the
README's "2D images" walk-through and of tests/integration/test_2d_path.py.

Each image is a periodic Gaussian-blob medium (``data_pipeline.synth.blobs``, porosity uniform in
``--porosity``, blobiness 1-2) rendered as an 8-bit grey image the way a micrograph shows it:
pore dark (grey ~70), solid bright (~180), a per-image brightness offset (+-15 grey levels),
blurred (Gaussian, sigma 0.7 px) and with Gaussian noise (sigma 10). So the images are NOT binary:
the import needs ``--otsu`` (per image: right for these images, whose offsets differ),
``--otsu-shared`` (one Otsu threshold of all images' pooled grey values, 121 here) or
``--threshold T`` (a given threshold; 125 suits the defaults) with the default ``--pore dark``. Seeded: the same arguments give the same files.

    python bench/make_2d_images.py --out runs/img2d/tif            # 120 images of 64x64
    python bench/make_2d_images.py --out /tmp/x --n 24 --size 32   # the integration test's set
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PORE_GREY, SOLID_GREY = 70.0, 180.0


def render(im: np.ndarray, rng: np.random.Generator, offset: float = 15.0, blur: float = 0.7,
           noise: float = 10.0) -> np.ndarray:
    """Binary structure (bool, True = pore) -> uint8 grey image: pore dark, solid bright, a random
    brightness offset in [-offset, offset], Gaussian blur (sigma ``blur`` px, periodic) and noise."""
    from scipy.ndimage import gaussian_filter

    grey = np.where(im, PORE_GREY, SOLID_GREY) + rng.uniform(-offset, offset)
    if blur > 0:
        grey = gaussian_filter(grey, blur, mode="wrap")
    grey = grey + rng.normal(0.0, noise, size=im.shape)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def make_images(out: str | Path, n: int = 120, size: int = 64, porosity=(0.4, 0.75), seed: int = 0) -> list[Path]:
    """Write ``n`` grayscale ``size`` x ``size`` .tif images ``img_000.tif`` ... into ``out``; returns the paths."""
    import tifffile

    from data_pipeline.synth import blobs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        phi = float(rng.uniform(*porosity))
        im = blobs((size, size), porosity=phi, blobiness=float(rng.uniform(1.0, 2.0)), seed=int(rng.integers(2**31 - 1)))
        path = out / f"img_{i:03d}.tif"
        tifffile.imwrite(path, render(im, rng), photometric="minisblack")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write the .tif images into")
    p.add_argument("--n", type=int, default=120, help="number of images (default 120)")
    p.add_argument("--size", type=int, default=64, help="edge in pixels (default 64)")
    p.add_argument("--porosity", type=float, nargs=2, default=(0.4, 0.75), metavar=("LO", "HI"),
                   help="range of the pore fraction (default 0.4 0.75)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    paths = make_images(args.out, args.n, args.size, tuple(args.porosity), args.seed)
    print(f"wrote {len(paths)} grayscale {args.size}x{args.size} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
