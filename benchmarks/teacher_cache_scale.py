"""Teacher cache at RadioML 2018 size (issue #16): sharded build time, disk, RSS and lookup rate.

Builds the sharded teacher cache (:mod:`edgekd.distill.logit_shards`) for N frames x V views
of K = 24 classes (RadioML 2018.01A's modulations), in fp16 and in top-k (k = 5) storage, from
a synthetic ``compute`` (seeded random logits per shard, no network: the figures are the
cache's own costs). For contrast, the single-file cache (``teacher_cache.save_cache``, every
logit in RAM) is built for the same logits. Each row runs in a fresh subprocess, so its peak
RSS (``ru_maxrss``) is its own; "growth" is that peak less the RSS before the build (the
interpreter, torch and numpy). After the build: opening the cache with every shard's sha256
checked, and random lookups (batches of 256 frames, random view, like a training step) from a
new process's memory maps, with the RSS they leave (anonymous memory and mapped file pages,
which the kernel can drop). Goal (issue #16): RSS <= 2 GB for 1M frames x 4 views. Prints Markdown.

    python benchmarks/teacher_cache_scale.py                     # 1M frames x 4 views, ~2 min on 2 cores
    python benchmarks/teacher_cache_scale.py --frames 100000     # smoke run
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

MIB = 1 << 20
REPO = str(Path(__file__).resolve().parents[1])  # this checkout's edgekd, whatever is installed
KINDS = ("fp16", "topk", "single-file fp16")


def rss_mib() -> dict[str, float]:
    """Current RSS of this process, in MiB: total, anonymous, file-backed (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic_compute(classes: int, batch: int = 8192):
    """compute(view, start, stop): seeded logits, a peaked class per frame, in batches of ``batch``."""
    import torch

    def compute(view: int, start: int, stop: int):
        rng = np.random.default_rng([view, start])
        for lo in range(start, stop, batch):
            hi = min(lo + batch, stop)
            logits = rng.standard_normal((hi - lo, classes), dtype=np.float32) * 2
            logits[np.arange(hi - lo), rng.integers(0, classes, hi - lo)] += 6
            yield np.arange(lo, hi), torch.from_numpy(logits)

    return compute


def run_one(kind: str, folder: Path, args: argparse.Namespace) -> dict:
    """Build ``kind`` in ``folder`` and measure it (runs in a fresh subprocess)."""
    import torch

    from edgekd.distill import logit_shards as ls
    from edgekd.distill import teacher_cache as tc

    torch.set_num_threads(1)
    storage = "topk" if kind == "topk" else "fp16"
    compute = synthetic_compute(args.classes)
    key = f"{kind}-{args.frames}-{args.views}".ljust(64, "0")  # any string: the caller's cache_key
    before = rss_mib()["VmRSS"]
    started = time.perf_counter()
    if kind.startswith("single"):  # the in-memory path: every view's logits, then one file
        parts = []
        for view in range(args.views):
            chunks = [
                tc.compress_logits(x[None], storage, args.topk) for _, x in compute(view, 0, args.frames)
            ]
            parts.append(torch.cat([c.values for c in chunks], dim=1))
        cached = tc.CachedLogits(torch.cat(parts), None, None, args.classes)
        path = folder / "teacher-logits.pt"
        tc.save_cache(path, key, cached, {}, 0.0)
        del cached, parts, chunks
    else:
        ls.build_sharded_logits(
            folder, key, views=args.views, frames=args.frames, num_classes=args.classes,
            storage=storage, topk=args.topk, compute=compute, shard_frames=args.shard_frames,
        )  # fmt: skip
    build_s = time.perf_counter() - started
    disk = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"kind": kind, "build_s": build_s, "disk_mib": disk / MIB, "before_mib": before,
            "build_peak_mib": peak_mib(), "key": key}  # fmt: skip


def read_one(kind: str, folder: Path, args: argparse.Namespace) -> dict:
    """Open ``folder`` (every sha256 checked) and time random lookups (a fresh subprocess)."""
    import torch

    from edgekd.distill import logit_shards as ls
    from edgekd.distill import teacher_cache as tc

    torch.set_num_threads(1)
    key = args.key
    before = rss_mib()
    started = time.perf_counter()
    if kind.startswith("single"):
        cache = tc.load_cache(folder / "teacher-logits.pt", key, args.views, args.frames, args.classes)
    else:
        cache = ls.open_sharded_logits(folder, key, args.views, args.frames, args.classes)
    open_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.integers(0, args.frames, 256)) for _ in range(args.batches)]
    views = rng.integers(0, args.views, args.batches).tolist()
    cpu = torch.device("cpu")
    rates = []
    for _ in range(2):  # cold: pages mapped on first touch; warm: the same batches again
        started = time.perf_counter()
        for idx, view in zip(batches, views, strict=True):
            cache.lookup(idx, view, cpu)
        rates.append(args.batches / (time.perf_counter() - started))
    rss = rss_mib()
    return {"open_s": open_s, "cold_per_s": rates[0], "warm_per_s": rates[1], "read_peak_mib": peak_mib(),
            "read_anon_mib": rss["RssAnon"] - before["RssAnon"],
            "read_file_mib": rss["RssFile"] - before["RssFile"]}  # fmt: skip


def child(argv: list[str]) -> dict:
    """Run one step in a fresh interpreter; returns its JSON result."""
    path = os.pathsep.join(filter(None, (REPO, os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_line() -> str:
    model, flags = platform.processor() or "?", set()
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name") and model in ("?", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = [
        f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags
    ]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(wanted) or 'none of avx2/avx512/amx'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="1000000", help="frames per view; comma-separated for several")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--shard-frames", type=int, default=65_536)
    parser.add_argument("--batches", type=int, default=2000, help="random lookups of 256 frames")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: a /tmp folder)")
    parser.add_argument("--step", nargs=3, metavar=("WHAT", "KIND", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        what, kind, folder = args.step
        args.frames = int(args.frames)
        step = run_one if what == "build" else read_one
        print(json.dumps(step(kind, Path(folder), args)))
        return
    root = Path(tempfile.mkdtemp(prefix="edgekd-cache-scale-", dir=args.dir))
    names = ("views", "classes", "topk", "shard_frames", "batches")
    common = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in names]
    rows = []
    try:
        for frames in (int(f) for f in args.frames.split(",")):
            for kind in args.kinds.split(","):
                folder = root / kind.replace(" ", "-")
                argv = [*common, f"--frames={frames}"]
                built = child([*argv, "--step", "build", kind, str(folder)])
                read = child([*argv, "--step", "read", kind, str(folder), f"--key={built['key']}"])
                rows.append({**built, **read, "frames": frames})
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(rows, args)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"Teacher cache, N frames x {args.views} views x {args.classes} classes (top-k k={args.topk}, "
          f"shards of {args.shard_frames:,} frames), random lookups of 256 frames")  # fmt: skip
    print(f"CPU: {cpu_line()}; torch threads 1; Python {platform.python_version()}\n")
    print("| storage | N | build s | disk MiB | build peak RSS MiB (growth) | open + sha256 s "
          "| lookups/s cold / warm | read RSS growth MiB anon + file | peak RSS <= 2 GB |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        growth = r["build_peak_mib"] - r["before_mib"]
        peak = max(r["build_peak_mib"], r["read_peak_mib"])
        print(
            f"| {r['kind']} | {r['frames']:,} | {r['build_s']:.1f} | {r['disk_mib']:.0f} "
            f"| {r['build_peak_mib']:.0f} (+{growth:.0f}) | {r['open_s']:.2f} "
            f"| {r['cold_per_s']:,.0f} / {r['warm_per_s']:,.0f} "
            f"| {r['read_anon_mib']:.0f} + {r['read_file_mib']:.0f} "
            f"| {'yes' if peak <= 2048 else 'NO'} ({peak / 1024:.2f} GB) |"
        )


if __name__ == "__main__":
    main()
