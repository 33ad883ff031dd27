"""Image training views (``edgekd.data.image_augment.ImageAugment``): milliseconds per image.

One core, uint8 OCT-like B-scans (bright wavy layers under speckle) at 224 and 384 px, with 1
channel, 3 channels holding one grey band (what ``LazyImageFolder(raw=True, channels=3)``
gives for a grayscale scan: computed once and repeated) and 3 genuinely different colour
bands. Each column turns one part on (the others off, at the default strength), "all" is the
default config. Each cell is the median over ``--repeats`` runs of ``--images`` views (distinct
seeds), per image, in CPU time of this process (``time.process_time``: on a machine shared with
other jobs, wall-clock time also counts the time the process waited for the core; the wall
figure of the "all" column is printed beside it). The goal (issue #16): well under 5 ms per
384 px grayscale image.

    OMP_NUM_THREADS=1 python benchmarks/image_augment.py             # ~20 s
    OMP_NUM_THREADS=1 python benchmarks/image_augment.py --quick     # smoke run, ~3 s
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from edgekd.data.image_augment import ImageAugment

OFF = dict(
    crop_scale=[1.0, 1.0], hflip=False, rotate=0.0, translate=0.0, brightness=0.0, contrast=0.0, speckle=0.0
)
DEFAULT = ImageAugment()
PARTS = {
    "off": {},
    "crop": {"crop_scale": DEFAULT.crop_scale},
    "flip": {"hflip": True},
    "rotate": {"rotate": DEFAULT.rotate},
    "translate": {"translate": DEFAULT.translate},
    "brightness": {"brightness": DEFAULT.brightness},
    "contrast": {"contrast": DEFAULT.contrast},
    "speckle": {"speckle": DEFAULT.speckle},
    "all": dict(vars(DEFAULT)),
}


def oct_like(size: int, bands: str, seed: int = 0) -> np.ndarray:
    """uint8 [C, size, size]: layers over a dark background, multiplicative noise.

    ``bands``: "1" one channel, "3 grey" the band repeated, "3 colour" three different bands.
    """
    rng = np.random.default_rng(seed)
    yy = np.arange(size, dtype=np.float32)[:, None] / size
    xx = np.arange(size, dtype=np.float32)[None, :] / size
    surface = 0.35 + 0.05 * np.sin(6 * xx)
    depth = yy - surface
    layers = np.where((depth > 0) & (depth < 0.3), 120 + 80 * np.cos(40 * depth) ** 2, 15.0)
    band = np.clip(layers * rng.gamma(4.0, 0.25, (size, size)), 0, 255).astype(np.uint8)
    if bands == "1":
        return band[None]
    out = np.repeat(band[None], 3, axis=0)
    if bands == "3 colour":
        out[1] = np.clip(out[1].astype(np.int16) + 20, 0, 255)
        out[2] = out[2] // 2
    return out


def ms_per_image(aug: ImageAugment, x: np.ndarray, images: int, repeats: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per view: medians over ``repeats`` runs of ``images`` views."""
    aug(x, 0)  # warm: Pillow import, the speckle quantile table
    cpu, wall = [], []
    for r in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        for seed in range(r * images, (r + 1) * images):
            aug(x, seed)
        cpu.append((time.process_time() - started_cpu) / images * 1e3)
        wall.append((time.perf_counter() - started) / images * 1e3)
    return statistics.median(cpu), statistics.median(wall)


def cpu_line() -> str:
    model, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    flags = [
                        f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw") if f in present
                    ]
                    break
    except OSError:
        pass
    return f"{model}; flags: {' '.join(flags) or 'n/a'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="views per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell (the median is shown)")
    parser.add_argument("--sizes", default="224,384", help="image sides in pixels, comma-separated")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 views, 2 runs")
    args = parser.parse_args()
    images, repeats = (8, 2) if args.quick else (args.images, args.repeats)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as one DataLoader worker
    import PIL

    print(f"CPU: {cpu_line()}; numpy {np.__version__}, Pillow {PIL.__version__}, one core")
    print(f"CPU ms per image, median of {repeats} runs of {images} views\n")
    print("| size | channels | " + " | ".join(PARTS) + " | all (wall ms) |")
    print("| ---: | --- | " + " | ".join("---:" for _ in PARTS) + " | ---: |")
    for size in (int(s) for s in args.sizes.split(",")):
        for bands in ("1", "3 grey", "3 colour"):
            x = oct_like(size, bands)
            cells = [
                ms_per_image(ImageAugment(**{**OFF, **part}), x, images, repeats) for part in PARTS.values()
            ]
            text = " | ".join(f"{cpu:.2f}" for cpu, _ in cells)
            print(f"| {size} | {bands} | {text} | {cells[-1][1]:.2f} |")


if __name__ == "__main__":
    main()
