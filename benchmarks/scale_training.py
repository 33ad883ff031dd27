"""Training at real data-set size (issue #16): peak RSS, time to first step, demo wall time.

Generates its own data (``benchmarks/scale.py``'s OCT-like JPEG folders and RadioML 2018
layout files) and runs the real commands, each in a fresh process:

(d) ``edgekd distill --config kd-oct`` with tiny timm models (``timm:test_convnext2`` ->
    ``timm:test_efficientnet``), 1 teacher epoch and 1 student epoch at 384 px, on folders of
    N images: wall seconds, the peak RSS of the command's own process (``ru_maxrss``), and the
    peak of the sum over the command and its DataLoader workers (sampled every 0.2 s from
    /proc; shared pages count once per process, so it overstates). Then the time from opening
    the data stage's artifact (``open_data``) to the first optimizer step of a training run on
    it (``train_supervised``, its DataLoader workers started inside that span).
(e) ``edgekd distill --config modrec-rml2018`` on a generated RML2018-format file of F frames,
    read lazily (``data.storage: lazy``): a small teacher checkpoint (resnet1d, width 8) trained on a
    small file of the same layout (``--teacher``), then the teacher cache and one distillation
    epoch over the big file's training split; the same peak RSS figures.
(f) ``edgekd demo`` wall time with this tree against a baseline commit (a git worktree), runs
    alternated A B A B..., medians and their ratio.

Goals (2 cores): (d) RSS at 2,000 images <= 1.3x at 400, time to first step <= 15 s at 400
and at 20,000 images; (e) RSS <= 3 GB over 500,000 frames; (f) demo <= 1.1x the baseline.

    python benchmarks/scale_training.py --images 400,2000 --rml-frames 0 --demo-runs 0
    python benchmarks/scale_training.py --images 0 --rml-frames 500000 --demo-runs 0
    python benchmarks/scale_training.py --images 0 --rml-frames 0 --demo-runs 2 --baseline 07e6f6a
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import MIB, link_subset, write_images, write_rml

TINY_OCT = [
    "teacher.model=timm:test_convnext2",
    "teacher.kwargs.use_grn=true",
    "student.model=timm:test_efficientnet",
    "teacher.train.epochs=1",
    "teacher.train.warmup_epochs=0",
    "distill.train.epochs=1",
    "distill.train.warmup_epochs=0",
]


def _tree_rss_mib(pid: int) -> float:
    """RSS of ``pid`` and every descendant, MiB (from /proc; 0 for processes that are gone)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def run_measured(args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``args`` (no shell); wall seconds, peak RSS of the largest process and of the tree.

    The command runs under a small wrapper process whose ``RUSAGE_CHILDREN`` then holds the
    peak RSS of the command and of the workers it waited for, this measurement's alone.
    """
    report = Path(tempfile.mkstemp(suffix=".json")[1])
    started = time.perf_counter()
    wrapped = [sys.executable, __file__, "--wrap", str(report), *args]
    proc = subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = {"tree": 0.0}

    def sample() -> None:
        while proc.poll() is None:
            peak["tree"] = max(peak["tree"], _tree_rss_mib(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    sampler.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{output[-3000:]}")
    largest = json.loads(report.read_text())["maxrss_kib"] / 1024
    report.unlink()
    return {"seconds": seconds, "largest_mib": largest, "tree_mib": peak["tree"], "output": output}


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def first_step(data: Path, workers: str) -> dict[str, float]:
    """Seconds from opening ``data`` to the first optimizer step of a 1-epoch training run."""
    import torch

    from edgekd.data.artifact import open_data
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.train import train_supervised
    from edgekd.models.factory import create_model

    started = time.perf_counter()
    dataset = open_data(data)
    opened = time.perf_counter() - started
    model = create_model("timm:test_efficientnet", dataset.num_classes, 3)
    cfg = TrainConfig(epochs=1, batch_size=32, num_workers=int(workers) if workers.isdigit() else "auto")
    steps: list[float] = []

    def on_step(step: int) -> None:
        steps.append(time.perf_counter() - started)
        if step == 1:
            raise _Stop

    torch.manual_seed(0)
    with contextlib.suppress(_Stop):
        train_supervised(model, dataset.subset("train"), dataset.subset("val"), cfg, on_step=on_step)
    return {"open_s": opened, "first_step_s": steps[0]}


class _Stop(Exception):
    """Raised by the step callback: the first step is all this measurement needs."""


def oct_table(work: Path, counts: list[int], first_step_counts: list[int]) -> None:
    write_images(work / "all", max(counts + first_step_counts))
    say(
        "(d) `edgekd distill --config kd-oct`, tiny timm models, 1 + 1 epochs at 384 px, "
        "data.storage auto (uint8 pixel cache, DataLoader workers auto = 2):\n",
        "| images | wall s | peak RSS MiB, command | peak RSS MiB, command + workers | "
        "data opened to first step s (2 workers) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    )
    base = None
    for n in counts:
        root = link_subset(work / "all", work / f"n{n}", n)
        run = work / f"run{n}"
        args = [sys.executable, "-m", "edgekd", "distill", "--config", "kd-oct", "--out", str(run), "--quiet"]
        r = run_measured([*args, *_sets([f"data.path={root}", *TINY_OCT])])
        step = json.loads(_child("first-step", str(run / "data.json"), "2"))
        base = base or r["largest_mib"]
        say(
            f"| {n:,} | {r['seconds']:.0f} | {r['largest_mib']:.0f} ({r['largest_mib'] / base:.2f}x) | "
            f"{r['tree_mib']:.0f} | {step['first_step_s']:.1f} (open {step['open_s']:.1f}) |"
        )
    if not first_step_counts:
        return
    say(
        "\n(d') the data stage alone (`edgekd data` path: the pixel cache at 384 px, 2 workers), then "
        "data opened to the first training step (timm:test_efficientnet, batch 32, 2 workers):\n",
        "| images | data stage s | opened to first step s | of which opening s |",
        "| ---: | ---: | ---: | ---: |",
    )
    for n in first_step_counts:
        root = link_subset(work / "all", work / f"f{n}", n)
        started = time.perf_counter()
        _child("data-stage", str(root), str(work / f"data{n}"))
        staged = time.perf_counter() - started
        step = json.loads(_child("first-step", str(work / f"data{n}" / "data.json"), "2"))
        say(f"| {n:,} | {staged:.0f} | {step['first_step_s']:.1f} | {step['open_s']:.1f} |")


def data_stage(root: Path, out: Path) -> None:
    from edgekd.data.sources import DataSpec, ImageFolderOptions
    from edgekd.pipeline.data_stage import stage_data

    spec = DataSpec(
        source="imagefolder", path=str(root), imagefolder=ImageFolderOptions(image_size=384, resize=384)
    )
    stage_data(spec, out, Path)


def say(*lines: str) -> None:
    """Print as the figures come (a long run shows its rows before it ends)."""
    print("\n".join(lines), flush=True)


def rml_table(work: Path, frames: int) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    small, big = work / "small.hdf5", work / "big.hdf5"
    write_rml(small, 24 * 26 * 8, 1024, 0)
    write_rml(big, frames, 1024, 64)
    sets = ["teacher.kwargs.width=8", "teacher.kwargs.blocks=[1,1,1]", "student.model=edgekd:cnn1d_small"]
    sets += ["distill.train.epochs=1"]
    sets += ["teacher.train.epochs=1", "distill.train.warmup_epochs=0", "teacher.train.warmup_epochs=0"]
    args = [sys.executable, "-m", "edgekd", "distill", "--config", "modrec-rml2018", "--quiet"]
    run_measured([*args, "--out", str(work / "teacher"), *_sets([f"data.path={small}", *sets])])
    teacher = work / "teacher" / "teacher.pt"
    r = run_measured(
        [
            *args,
            "--out",
            str(work / "rml"),
            "--teacher",
            str(teacher),
            *_sets([f"data.path={big}", "data.storage=lazy", *sets]),
        ]
    )
    size = big.stat().st_size
    return [
        f"\n(e) `edgekd distill --config modrec-rml2018` over a {frames:,}-frame file "
        f"({size / MIB:,.0f} MiB, "
        "chunks of 64 rows), data.storage lazy, a resnet1d teacher of width 8 (--teacher), cnn1d_small "
        "student, teacher cache "
        "+ 1 epoch:\n",
        "| frames | wall s | peak RSS MiB, command | peak RSS MiB, command + workers |",
        "| ---: | ---: | ---: | ---: |",
        f"| {frames:,} | {r['seconds']:.0f} | {r['largest_mib']:.0f} | {r['tree_mib']:.0f} |",
    ]


def demo_table(work: Path, baseline: str, runs: int) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), baseline], check=True)
    try:
        times: dict[str, list[float]] = {"baseline": [], "this tree": []}
        for i in range(runs):
            for label, src in (("baseline", tree), ("this tree", root)):
                env = {**os.environ, "PYTHONPATH": str(src)}
                args = [sys.executable, "-m", "edgekd", "demo", "--out", str(work / f"demo-{label[0]}{i}")]
                times[label].append(run_measured(args, env)["seconds"])
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        f"\n(f) `edgekd demo` wall time, {runs} runs each, alternated; baseline {baseline}:\n",
        "| code | runs s | median s |",
        "| --- | --- | ---: |",
        *[f"| {k} | {', '.join(f'{t:.0f}' for t in v)} | {med[k]:.0f} |" for k, v in times.items()],
        f"\nratio this tree / baseline: {med['this tree'] / med['baseline']:.2f}x",
    ]


def _child(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return proc.stdout.strip().splitlines()[-1]


def _counts(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip() and int(v) > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--wrap", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=_counts, default=[400, 2000], help="(d) folder sizes; 0 skips")
    parser.add_argument(
        "--first-step-images", type=_counts, default=[20_000], help="(d') folder sizes; 0 skips"
    )
    parser.add_argument("--rml-frames", type=int, default=500_000, help="(e) frames; 0 skips")
    parser.add_argument("--demo-runs", type=int, default=2, help="(f) runs of each; 0 skips")
    parser.add_argument("--baseline", default="HEAD", help="(f) the commit to compare with")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp one)")
    args = parser.parse_args()
    if args.wrap:
        code = subprocess.run(args.wrap[1:], check=False).returncode
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        Path(args.wrap[0]).write_text(json.dumps({"maxrss_kib": maxrss}))
        raise SystemExit(code)
    if args.child and args.child[0] == "data-stage":
        data_stage(Path(args.child[1]), Path(args.child[2]))
        print("{}")
        return
    if args.child:
        print(json.dumps(first_step(Path(args.child[1]), args.child[2])))
        return
    cpu = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "")
    flags = Path("/proc/cpuinfo").read_text()
    marks = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f" {f}" in flags]
    say(f"CPU: {cpu.split(':')[-1].strip()}, {os.cpu_count()} cores, flags {' '.join(marks)}\n")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        if args.images or args.first_step_images:
            oct_table(work / "oct", args.images, args.first_step_images)
        if args.rml_frames:
            say(*rml_table(work / "rml", args.rml_frames))
        if args.demo_runs:
            say(*demo_table(work, args.baseline, args.demo_runs))


if __name__ == "__main__":
    main()
