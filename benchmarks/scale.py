"""Input pipeline at real data-set size (issue #16): in-memory against lazy, time and peak RSS.

Generates its own data in a temporary folder: an OCT-like image folder (grayscale 512x496
JPEGs, 4 classes: bright wavy retinal layers under speckle, ~30 KB each) and a RadioML 2018
HDF5 file in the published layout (X float32 [N, 1024, 2], one-hot Y int64 [N, 24], Z [N, 1],
sorted by class then SNR like the real file). Then, each figure from a fresh subprocess (so
that every peak RSS, read from ``ru_maxrss``, is that measurement's own):

(a) the in-memory image loader (``ImageFolder.to_array_dataset``) at N images: seconds,
    images/s, peak RSS;
(b) the lazy image folder (``LazyImageFolder``): images/s decode + transform, through a
    DataLoader with 0, 1 and 2 workers (batch 32, the first batch excluded: worker start-up),
    the same from the uint8 image cache (``prepare_image_cache``), and peak RSS over a whole
    pass with 2 workers at two folder sizes (main process; the largest worker, whose RSS
    counts the pages it shares with the main process);
(c) RadioML 2018 read lazily (``RML2018Dataset``): frames/s and peak RSS for a pass in
    chunk-aware batches (``chunk_batches``) with 0 and 2 workers, and for random batches
    (``SeededSampler``, scattered rows), against the file's size.

The files are read right after they are written, so from the page cache: the figures are
decode and copy costs, not disk reads. Goals (issue #16, 2 cores): 2 workers >= 1.7x one
worker, RSS at 2,000 images <= 1.3x RSS at 400. Prints Markdown.

    python benchmarks/scale.py                 # ~3 min on 2 cores: 800 images for rates, 200k frames
    python benchmarks/scale.py --quick         # smoke run, ~30 s
    python benchmarks/scale.py --memory-images 200,400,800 --rml-frames 500000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")
WIDTH, HEIGHT = 512, 496
RML_CLASSES, RML_SNRS = 24, tuple(range(-20, 32, 2))
MIB = 1 << 20


# --- data generation ---


def oct_like(rng: np.random.Generator, label: int) -> np.ndarray:
    """uint8 [496, 512]: a few bright curved layers over a dark background, under speckle."""
    xx = np.arange(WIDTH, dtype=np.float32)[None, :]
    yy = np.arange(HEIGHT, dtype=np.float32)[:, None]
    surface = 180 + 25 * np.sin(xx / rng.uniform(50, 90) + rng.uniform(0, 6.3)) + 8 * label
    image = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    for offset, thickness, level in ((0, 6, 200), (25, 12, 110), (60, 4, 170), (95, 9, 140)):
        image += level * np.exp(-(((yy - surface - offset) / thickness) ** 2))
    image = image * rng.gamma(4.0, 0.25, size=image.shape).astype(np.float32) + 12
    return np.clip(image, 0, 255).astype(np.uint8)


def write_images(root: Path, count: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        label = i % len(CLASSES)
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(oct_like(rng, label), "L").save(folder / f"{i:06d}.jpeg", quality=90)


def link_subset(source: Path, target: Path, count: int) -> Path:
    """A folder with the first ``count`` images of ``source`` (hard links, same layout)."""
    files = sorted(source.rglob("*.jpeg"), key=lambda p: p.name)[:count]
    for path in files:
        (target / path.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(path, target / path.parent.name / path.name)
    return target


def write_rml(path: Path, frames: int, length: int, chunk_rows: int, seed: int = 0) -> None:
    import h5py

    cells = RML_CLASSES * len(RML_SNRS)
    labels = np.arange(frames) * cells // frames  # sorted by (class, SNR), cells as even as can be
    y, z = labels // len(RML_SNRS), np.asarray(RML_SNRS)[labels % len(RML_SNRS)]
    rng = np.random.default_rng(seed)
    chunks = (chunk_rows, length, 2) if chunk_rows else None
    with h5py.File(path, "w") as f:
        x = f.create_dataset("X", shape=(frames, length, 2), dtype=np.float32, chunks=chunks)
        for start in range(0, frames, 8192):
            stop = min(frames, start + 8192)
            x[start:stop] = rng.standard_normal((stop - start, length, 2), dtype=np.float32)
        f.create_dataset("Y", data=np.eye(RML_CLASSES, dtype=np.int64)[y])
        f.create_dataset("Z", data=z.reshape(-1, 1).astype(np.int64))


# --- measurements (each in its own subprocess) ---


def _rss() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_mib": me, "worker_rss_mib": kids}


def _drain(loader, count: int) -> float:
    """Samples/s over a pass of ``loader``, the first batch (worker start-up) left out. Each
    batch is read once in this process (a sum over every byte), as a copy to the device would."""
    iterator = iter(loader)
    x, labels = next(iterator)
    first, seen = len(labels), len(labels)
    started = time.perf_counter()
    for x, labels in iterator:
        x.sum()
        seen += len(labels)
    seconds = time.perf_counter() - started
    del iterator  # joins the workers, so RUSAGE_CHILDREN counts them
    assert seen == count, (seen, count)
    return (seen - first) / seconds


def measure(task: dict) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from edgekd.data.images import ImageFolder, ImageTransform

    torch.set_num_threads(1)
    base = _rss()["rss_mib"]
    transform = ImageTransform(image_size=task.get("size", 384), resize=task.get("resize", 384))
    kind = task["kind"]
    if kind == "memory":
        started = time.perf_counter()
        data = ImageFolder(task["root"], transform=transform).to_array_dataset()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "rate": len(data) / seconds, "base_mib": base, **_rss()}
    if kind in ("lazy", "cached"):
        from edgekd.data.lazy_images import CachedImageDataset, LazyImageFolder
        from edgekd.data.samplers import SeededSampler

        raw = task.get("raw", False)
        dataset = LazyImageFolder(ImageFolder(task["root"], transform=transform), raw=raw, channels=1)
        if kind == "cached":
            dataset = CachedImageDataset(dataset, task["cache"], raw=raw)
        workers = task["workers"]
        loader = DataLoader(
            dataset, batch_size=32, sampler=SeededSampler(len(dataset), seed=0), num_workers=workers
        )
        rates = [_drain(loader, len(dataset)) for _ in range(task.get("repeats", 1))]
        return {"rate": float(np.median(rates)), "rates": rates, "base_mib": base, **_rss()}
    if kind == "prepare":
        from edgekd.data.lazy_images import LazyImageFolder, prepare_image_cache

        started = time.perf_counter()
        folder = LazyImageFolder(ImageFolder(task["root"], transform=transform))
        prepare_image_cache(folder, task["cache"], workers=task["workers"])
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "rate": len(folder) / seconds,
            "bytes": Path(task["cache"]).stat().st_size,
        }
    if kind == "rml":
        from edgekd.data.lazy_rml2018 import RML2018Dataset
        from edgekd.data.rml2018 import RML2018Selection
        from edgekd.data.samplers import SeededSampler, chunk_batches

        started = time.perf_counter()
        dataset = RML2018Dataset(task["path"], RML2018Selection(val_fraction=0.0, test_fraction=0.0))
        open_s = time.perf_counter() - started
        if task["order"] == "chunks":
            loader = DataLoader(
                dataset, batch_sampler=chunk_batches(dataset, 256, seed=0), num_workers=task["workers"]
            )
            count = len(dataset)
        else:
            count = min(len(dataset), 256 * task["random_batches"])
            subset = dataset.take(np.arange(count) * (len(dataset) // count))  # spread over the file
            loader = DataLoader(
                subset, batch_size=256, sampler=SeededSampler(count, seed=0), num_workers=task["workers"]
            )
        rate = float(np.median([_drain(loader, count) for _ in range(task.get("repeats", 1))]))
        return {"rate": rate, "open_s": open_s, "base_mib": base, **_rss()}
    raise ValueError(kind)


def run(task: dict) -> dict:
    """``measure(task)`` in a fresh interpreter (no shell); its result."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", json.dumps(task)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"measurement {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the tables ---


def _sizes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from None
    if not values or min(values) < len(CLASSES):
        raise argparse.ArgumentTypeError(f"counts must be >= {len(CLASSES)}, got {text!r}")
    return values


def image_tables(work: Path, args: argparse.Namespace) -> list[str]:
    counts = sorted({*args.memory_images, *args.lazy_images, args.rate_images})
    started = time.perf_counter()
    write_images(work / "all", max(counts))
    made_s = time.perf_counter() - started
    kb = sum(p.stat().st_size for p in (work / "all").rglob("*.jpeg")) / max(counts) / 1024
    roots = {n: link_subset(work / "all", work / f"n{n}", n) for n in counts}
    common = {"size": args.image_size, "resize": args.resize}
    out = [
        f"Images: {max(counts)} generated in {made_s:.0f} s, {WIDTH}x{HEIGHT} grayscale JPEG, "
        f"{kb:.0f} KB each; transform resize {args.resize}, crop {args.image_size} "
        f"(float32 [3, {args.image_size}, {args.image_size}]: "
        f"{3 * 4 * args.image_size**2 / MIB:.2f} MiB per image).\n",
        "(a) in-memory loader (ImageFolder.to_array_dataset), one process:\n",
        "| images | seconds | images/s | peak RSS MiB | RSS after imports MiB | MiB per image above that |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in args.memory_images:
        r = run({"kind": "memory", "root": str(roots[n]), **common})
        per_image = (r["rss_mib"] - r["base_mib"]) / n
        out.append(
            f"| {n:,} | {r['seconds']:.1f} | {r['rate']:.1f} | {r['rss_mib']:.0f} | {r['base_mib']:.0f} "
            f"| {per_image:.2f} |"
        )
    n = args.rate_images
    cache = work / f"cache-{n}.npy"
    prep = run({"kind": "prepare", "root": str(roots[n]), "cache": str(cache), "workers": 2, **common})
    out += [
        f"\n(b) lazy, {n:,} images, DataLoader batch 32, median of {args.repeats} passes, images/s "
        "decode + transform + collate + "
        "one read of each batch in the main process (the first batch, worker start-up, left out; "
        "raw uint8 batches still need normalize_batch on the device):\n",
        "| source | workers | images/s | vs 1 worker | peak RSS MiB (main / largest worker) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        ("lazy", False): "JPEG files, float32",
        ("lazy", True): "JPEG files, uint8 (raw, 1 channel)",
        ("cached", False): "uint8 cache, float32",
        ("cached", True): "uint8 cache, uint8 (raw)",
    }
    for (kind, raw), label in labels.items():
        rates: dict[int, float] = {}
        for w in args.workers:
            task = {"kind": kind, "root": str(roots[n]), "cache": str(cache), "workers": w, "raw": raw}
            task["repeats"] = args.repeats
            r = run({**task, **common})
            rates[w] = r["rate"]
            ratio = f"{r['rate'] / rates[1]:.2f}x" if 1 in rates else ""
            worker = f"{r['worker_rss_mib']:.0f}" if w else "-"
            out.append(f"| {label} | {w} | {r['rate']:.0f} | {ratio} | {r['rss_mib']:.0f} / {worker} |")
    out.append(
        f"\nuint8 cache: prepared in {prep['seconds']:.1f} s with 2 workers ({prep['rate']:.0f} images/s), "
        f"{prep['bytes'] / MIB:.0f} MiB for {n} images ({prep['bytes'] / n / 1024:.0f} KiB each).\n"
    )
    out += [
        "(b) lazy JPEG folder, a whole pass with 2 workers, peak RSS by folder size:\n",
        "| images | images/s | peak RSS MiB main | main above its RSS after imports | largest worker |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    peaks = []
    for n in args.lazy_images:
        r = run({"kind": "lazy", "root": str(roots[n]), "workers": 2, **common})
        peaks.append(r["rss_mib"])
        growth = r["rss_mib"] - r["base_mib"]
        out.append(
            f"| {n:,} | {r['rate']:.0f} | {r['rss_mib']:.0f} | {growth:.0f} | {r['worker_rss_mib']:.0f} |"
        )
    if len(peaks) > 1:
        big, small = args.lazy_images[-1], args.lazy_images[0]
        out.append(f"\nRSS ratio {big:,} / {small:,} images: {peaks[-1] / peaks[0]:.2f}x")
    return out


def rml_table(work: Path, args: argparse.Namespace) -> list[str]:
    path = work / "rml2018.hdf5"
    started = time.perf_counter()
    write_rml(path, args.rml_frames, args.rml_length, args.rml_chunk_rows)
    made_s = time.perf_counter() - started
    size = path.stat().st_size
    layout = f"chunks of {args.rml_chunk_rows} rows" if args.rml_chunk_rows else "contiguous X"
    out = [
        f"\n(c) RadioML 2018 layout, {args.rml_frames:,} frames of [{args.rml_length}, 2] ({layout}), "
        f"{size / MIB:,.0f} MiB, written in {made_s:.0f} s; batch 256, median of {args.repeats} passes, "
        "frames/s read, transposed, "
        "checked for NaN/Inf and collated:\n",
        "| order | workers | frames | frames/s | open s (labels) | peak RSS MiB (main / largest worker) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for order, workers in (("chunks", 0), ("chunks", 2), ("random", 0)):
        r = run(
            {
                "kind": "rml",
                "path": str(path),
                "order": order,
                "workers": workers,
                "random_batches": args.rml_random_batches,
                "repeats": args.repeats,
            }
        )
        count = args.rml_frames if order == "chunks" else min(args.rml_frames, 256 * args.rml_random_batches)
        worker = f"{r['worker_rss_mib']:.0f}" if workers else "-"
        label = "chunk_batches" if order == "chunks" else "random (SeededSampler)"
        out.append(
            f"| {label} | {workers} | {count:,} | {r['rate']:,.0f} | {r['open_s']:.1f} | "
            f"{r['rss_mib']:.0f} / {worker} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--memory-images", type=_sizes, default=[200, 400], help="(a) folder sizes")
    parser.add_argument("--lazy-images", type=_sizes, default=[400, 2000], help="(b) RSS folder sizes")
    parser.add_argument("--rate-images", type=int, default=800, help="(b) images per rate measurement")
    parser.add_argument("--repeats", type=int, default=3, help="passes per rate; the median is shown")
    parser.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=384, help="crop side, pixels")
    parser.add_argument(
        "--resize", type=int, default=None, help="shorter side before the crop (default: image size)"
    )
    parser.add_argument("--rml-frames", type=int, default=200_000)
    parser.add_argument("--rml-length", type=int, default=1024)
    parser.add_argument("--rml-chunk-rows", type=int, default=0, help="HDF5 chunk rows of X; 0: contiguous")
    parser.add_argument("--rml-random-batches", type=int, default=40, help="random batches read in (c)")
    parser.add_argument("--keep", type=Path, default=None, help="generate into this folder and keep it")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    if args.quick:
        args.memory_images, args.lazy_images, args.rate_images = [40], [40, 200], 80
        args.rml_frames, args.rml_random_batches, args.repeats = 20_000, 10, 1
    args.resize = args.resize or args.image_size
    if (
        args.rate_images < len(CLASSES)
        or args.rml_frames < RML_CLASSES * len(RML_SNRS)
        or args.resize < args.image_size
    ):
        parser.error("need --repeats >= 1, --rate-images >= 4, --rml-frames >= 624, --resize >= --image-size")
    started, load_before = time.time(), os.getloadavg()[0]
    work = args.keep or Path(tempfile.mkdtemp(prefix="edgekd-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        lines = image_tables(work, args) + rml_table(work, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    load = os.getloadavg()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}; load average before/after "
        f"{load_before:.2f} / {load[0]:.2f}; took {time.time() - started:.0f} s\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
