"""Exact resume after SIGKILL, and two-process DDP (gloo) against one process."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed

from edgekd.distill.distributed import DistContext, global_batches, shard
from edgekd.distill.train import KDConfig, TrainConfig, distill
from edgekd.errors import ConfigError
from edgekd.models import create_model
from tests.distill import ddp_worker

ROOT = Path(__file__).resolve().parents[2]


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _metrics_without_time(out_dir: Path) -> list[dict]:
    with open(out_dir / "metrics.csv", newline="") as handle:
        timing = ("seconds", "train_seconds")
        return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(handle)]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = _python("-m", "tests.distill.resume_worker", str(whole), str(tmp_path / "whole.pt"))
    assert done.returncode == 0, done.stderr[-2000:]
    # 8 steps per epoch, a snapshot every 3 steps: killed at step 11, the state is from step 9.
    killed = _python(
        "-m", "tests.distill.resume_worker", str(broken), str(tmp_path / "x.pt"), "--kill-at", "11"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "x.pt").exists() and (broken / "train_state.pt").is_file()
    assert not list(broken.glob(".*.tmp"))  # atomic writes leave no temp files behind
    resumed = _python(
        "-m", "tests.distill.resume_worker", str(broken), str(tmp_path / "resumed.pt"), "--resume"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "whole.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _metrics_without_time(whole) == _metrics_without_time(broken)
    for name in ("best.pt", "last.pt", "metrics.jsonl"):
        assert (broken / name).is_file()


def test_resume_with_changed_settings_is_refused(tmp_path: Path, tones) -> None:
    teacher = create_model("cnn1d_small", 4, width=4)
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu")
    distill(create_model("cnn1d_small", 4, width=4), teacher, *tones, cfg, KDConfig(), out_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        other = TrainConfig(epochs=1, batch_size=32, device="cpu")
        distill(
            create_model("cnn1d_small", 4, width=4),
            teacher,
            *tones,
            other,
            KDConfig(),
            out_dir=tmp_path,
            resume=True,
        )
    assert "batch_size 64 -> 32" in info.value.one_line()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    run = _python(
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        "-m",
        "tests.distill.ddp_worker",
        str(tmp_path),
        timeout=180,  # generous: a loaded CI machine starts three Python processes
    )
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(tmp_path / "weights.pt", weights_only=True)
    one_model, one_result = ddp_worker.run(None)
    for key, value in one_model.state_dict().items():
        torch.testing.assert_close(two["state_dict"][key], value, rtol=1e-4, atol=1e-5)
    losses = [h["train_loss"] for h in two["history"]]
    assert losses == pytest.approx([h["train_loss"] for h in one_result.history], rel=1e-4)
    assert (tmp_path / "metrics.csv").is_file() and (tmp_path / "train_state.pt").is_file()
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["fingerprint"]["world_size"] == 2  # it really ran as two ranks


def test_shards_are_disjoint_and_cover_each_global_batch() -> None:
    order = torch.randperm(21, generator=torch.Generator().manual_seed(0))
    batches = global_batches(order, 8, 2)
    assert [len(b) for b in batches] == [8, 8, 6]  # 21 padded to 22; 22 = 8 + 8 + 6
    for batch in batches:
        parts = [shard(batch, DistContext(rank=r, world_size=2)) for r in range(2)]
        assert len(parts[0]) == len(parts[1])
        assert sorted(torch.cat(parts).tolist()) == sorted(batch.tolist())
    with pytest.raises(ConfigError, match="does not split evenly"):
        global_batches(order, 9, 2)
