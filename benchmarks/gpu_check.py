"""GPU training throughput with worker-fed data (issue #16): fp32, bf16 AMP, channels_last.

For one CUDA machine; about 8 minutes on one H100. It generates a 5,000-image OCT-like JPEG
folder (``benchmarks/scale.py``'s generator, in parallel), decodes it once into edgekd's uint8
pixel cache with DataLoader workers (the data stage's path), then distils an image KD pair
(default ``timm:convnextv2_tiny`` -> ``timm:efficientnet_b0``, random weights: nothing is
downloaded) at 224 px through ``edgekd.distill.train.distill`` with the teacher run per batch,
``train.augment.image`` on and ``--workers`` DataLoader workers, once per setting:

* fp32;
* bf16 autocast (``train.amp: bf16``);
* bf16 autocast + ``train.channels_last``.

For each it prints training samples/s over the epochs after the first (CUDA start-up and
cuDNN autotuning left out) and the share of the epoch's wall time the training loop spent
waiting for its next batch (goal: under 10%). Waiting is timed around the loader's
``next()`` in the training process; the GPU runs asynchronously, so that time is what the
loop really lost to data.

    python benchmarks/gpu_check.py                     # the full check
    python benchmarks/gpu_check.py --images 400 --epochs 2 --teacher timm:test_convnext2 \\
        --student timm:test_efficientnet                # a smoke run (also on a CPU)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
from scale import CLASSES, oct_like  # noqa: E402


def _write_chunk(task: tuple[str, int, int]) -> None:
    from PIL import Image

    root, start, stop = task
    for i in range(start, stop):
        rng = np.random.default_rng(1_000_003 * i + 7)
        label = i % len(CLASSES)
        folder = Path(root) / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(oct_like(rng, label), "L").save(folder / f"{i:06d}.jpeg", quality=90)


def write_folder(root: Path, count: int, processes: int) -> float:
    started = time.perf_counter()
    step = max(1, count // (processes * 4))
    tasks = [(str(root), s, min(count, s + step)) for s in range(0, count, step)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_write_chunk, tasks)
    return time.perf_counter() - started


class WaitTimer:
    """Wraps ``edgekd.distill.feed.LoaderFeed.epoch``: seconds the loop waited for each batch."""

    def __init__(self) -> None:
        from edgekd.distill import feed

        self.waits: list[float] = []
        original = feed.LoaderFeed.epoch

        def timed(this, sampler, view):
            batches = original(this, sampler, view)
            while True:
                started = time.perf_counter()
                try:
                    item = next(batches)
                except StopIteration:
                    return
                self.waits.append(time.perf_counter() - started)
                yield item

        feed.LoaderFeed.epoch = timed


def measure(
    data: Path, args: argparse.Namespace, amp: str, channels_last: bool, timer: WaitTimer
) -> dict[str, float]:
    import torch

    from edgekd.data.artifact import open_data
    from edgekd.data.image_augment import ImageAugment
    from edgekd.distill.config import AugmentConfig, KDConfig, TrainConfig
    from edgekd.distill.train import distill
    from edgekd.models.factory import create_model

    dataset = open_data(data)
    torch.manual_seed(0)
    teacher = create_model(args.teacher, dataset.num_classes, 3)
    student = create_model(args.student, dataset.num_classes, 3)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        amp=amp,
        channels_last=channels_last,
        device="cuda" if torch.cuda.is_available() else "cpu",
        num_workers=args.workers,
        augment=AugmentConfig(image=ImageAugment(), views=args.epochs),
    )
    kd = KDConfig(cache_teacher=False)  # the teacher runs on every batch: the GPU's full load
    timer.waits = []
    marks: list[int] = []

    def on_step(step: int) -> None:
        marks.append(step)

    train = dataset.subset("train")
    started = time.perf_counter()
    result = distill(student, teacher, train, dataset.subset("val"), cfg, kd, on_step=on_step)
    wall = time.perf_counter() - started
    epoch_ends = [r["train_seconds"] for r in result.history]
    steps_per_epoch = len(marks) // args.epochs
    later = epoch_ends[1:] or epoch_ends
    waits = timer.waits[steps_per_epoch:] if args.epochs > 1 else timer.waits
    train_seconds = float(sum(later))
    return {
        "samples_per_s": len(train) * len(later) / train_seconds,
        "wait_share": float(sum(waits)) / train_seconds,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3, help="the first is left out of the rates")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--teacher", default="timm:convnextv2_tiny")
    parser.add_argument("--student", default="timm:efficientnet_b0")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from edgekd.data.artifact import open_lazy_source, prepare_images, write_index
    from edgekd.data.sources import DataSpec, ImageFolderOptions

    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU smoke run)"
    print(f"device: {card}; torch {torch.__version__}; {os.cpu_count()} CPU cores; {args.workers} workers\n")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        made = write_folder(work / "images", args.images, os.cpu_count() or 1)
        size = args.image_size
        spec = DataSpec(
            source="imagefolder",
            path=str(work / "images"),
            imagefolder=ImageFolderOptions(image_size=size, resize=size * 8 // 7),
        )
        started = time.perf_counter()
        cached = prepare_images(open_lazy_source(spec, work / "images"), work, args.workers)
        write_index(work / "data.json", spec, work / "images", cached, "data-images.npy")
        prepared = time.perf_counter() - started
        print(f"{args.images} JPEGs written in {made:.0f} s; pixel cache prepared in {prepared:.0f} s\n")
        print(f"{args.teacher} -> {args.student}, {size} px, batch {args.batch_size}, teacher per batch:\n")
        print("| setting | train samples/s | data wait share | wall s |")
        print("| --- | ---: | ---: | ---: |")
        timer = WaitTimer()
        settings = (("fp32", "off", False), ("bf16", "bf16", False), ("bf16 + channels_last", "bf16", True))
        for label, amp, cl in settings:
            r = measure(work / "data.json", args, amp, cl, timer)
            print(f"| {label} | {r['samples_per_s']:,.0f} | {r['wait_share']:.1%} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
