"""``torchrun --nproc-per-node 2 -m edgekd distill`` (gloo, CPU) against one process.

Both runs execute the same tiny recipe (synthetic IQ frames, a teacher trained for one epoch,
augmentation with two cached views) from the command line, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed
import yaml

ROOT = Path(__file__).resolve().parents[2]
NET = "module:tests.distill.plain_nets:conv_net"  # no BatchNorm: DDP equals one process
RECIPE = {
    "name": "tiny",
    "data": {
        "source": "synthetic_modulation",
        "synthetic": {
            "classes": ["BPSK", "QPSK", "QAM16", "GFSK"],
            "snr_min": 10,
            "snr_max": 18,
            "snr_step": 4,
            "frames_per_class_snr": 30,  # 4 classes x 3 SNRs x 30 = 360 frames
            "frame_length": 64,
            "seed": 0,
        },
    },
    "teacher": {
        "model": NET,
        "kwargs": {"width": 12},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu", "num_threads": 1},
    },
    "student": {"model": NET, "kwargs": {"width": 4}},
    "distill": {
        "kd": {"loss": "kd", "temperature": 4.0, "alpha": 0.7},
        "train": {
            "epochs": 2,
            "batch_size": 32,
            "lr": 0.01,
            "device": "cpu",
            "num_threads": 1,
            "augment": {"time_shift": 8, "phase_rotation": True, "views": 2},
        },
    },
}
# Every file a run leaves, once: rank 1 writes nothing, and no temporary file stays behind.
EXPECTED = {
    "data.npz",
    "data.npz.json",
    "teacher.pt",
    "teacher.pt.json",
    "student.pt",
    "student.pt.json",
    *(
        f"{run}/{name}"
        for run in ("teacher-run", "distill-run")
        for name in ("best.pt", "last.pt", "metrics.csv", "metrics.jsonl", "train_state.pt")
    ),
    # TensorBoard scalars: edgekd[tensorboard] is part of the test extra.
    "teacher-run/tensorboard/EVENTS",
    "distill-run/tensorboard/EVENTS",
    "teacher_cache/CACHE.pt",
    "teacher_cache/CACHE.pt.json",
}


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "EDGEKD_DIST_TIMEOUT_S": "60"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _files(out: Path) -> set[str]:
    """Files under ``out`` with run-specific names made generic; a name twice (rank 1 wrote) fails."""
    names: list[str] = []
    for path in out.rglob("*"):
        if path.is_file():
            name = path.relative_to(out).as_posix()
            if name.startswith("teacher_cache/teacher-logits-"):
                name = "teacher_cache/CACHE" + name[name.index(".pt") :]
            if "/tensorboard/events.out.tfevents." in name:
                name = name[: name.index("/tensorboard/")] + "/tensorboard/EVENTS"
            names.append(name)
    assert len(names) == len(set(names)), sorted(names)
    return set(names)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    one, two = tmp_path / "one", tmp_path / "two"
    command = ["-m", "edgekd", "distill", "--config", str(recipe), "--out"]
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    runs = [_start([*command, str(one)]), _start([*launcher, *command, str(two)])]
    results = [(p, *p.communicate(timeout=240)) for p in runs]  # generous for loaded machines
    for proc, _stdout, stderr in results:
        assert proc.returncode == 0, stderr[-3000:]
    (_, out_one, _), (_, out_two, log_two) = results

    # Rank 0 alone prints the result and writes every file, once.
    assert out_one.split() == [str(one / "student.pt")]
    assert out_two.split() == [str(two / "student.pt")]
    assert _files(one) == EXPECTED
    assert _files(two) == EXPECTED
    assert log_two.count("distilling with") == 1 and log_two.count("teacher cache: wrote") == 1

    state = torch.load(two / "distill-run" / "train_state.pt", weights_only=True)
    assert state["fingerprint"]["world_size"] == 2  # it really trained as two ranks
    # Same frames; the student trained on two ranks matches the one-process student to float
    # summation order (the teacher it learnt from went through DDP too).
    assert (one / "data.npz").read_bytes() == (two / "data.npz").read_bytes()
    a = torch.load(one / "student.pt", weights_only=True)["state_dict"]
    b = torch.load(two / "student.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_runs_a_whole_recipe_training_on_both_ranks(tmp_path: Path) -> None:
    """``torchrun -m edgekd run``: both ranks train, rank 0 alone exports, quantizes and benches."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "run"
    sets = [
        "gate.enabled=false",
        "bench.latency.min_runs=10",
        "bench.latency.min_seconds=0.02",
        "bench.latency.warmup_runs=2",
        "bench.latency.warmup_seconds=0.0",
        "quantize.min_top1_agreement=0.0",
    ]
    command = ["-m", "edgekd", "run", str(recipe), "--out", str(out), "--quiet"]
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    proc = _start([*launcher, *command, *(a for s in sets for a in ("--set", s))])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]

    state = torch.load(out / "distill-run" / "train_state.pt", weights_only=True)
    assert state["fingerprint"]["world_size"] == 2  # the student trained on two ranks
    # Rank 0 went on alone: one bench document, one report, one table on the terminal.
    assert json.loads((out / "bench.json").read_text())["entries"]
    assert (out / "student.int8.onnx").is_file() and (out / "report.html").is_file()
    assert stdout.count("bench.json and report.html in") == 1
    assert not list(out.rglob("*.tmp*")) and not list(out.rglob(".*"))
