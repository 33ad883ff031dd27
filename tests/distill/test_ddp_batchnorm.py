"""DDP with BatchNorm students: one model on every rank, and ``train.sync_batchnorm``."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed
from torch import nn

from edgekd.config import from_dict
from edgekd.distill import distributed as ddp
from edgekd.distill.train import TrainConfig, train_supervised
from edgekd.errors import ConfigError
from edgekd.models import create_model
from tests.distill import ddp_bn_worker

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_ranks_with_batchnorm_hold_one_model(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*TORCHRUN, "-m", "tests.distill.ddp_bn_worker", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,  # generous: a loaded CI machine starts three Python processes
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # sync_batchnorm on CPU: refused on both ranks, before any work, in one line.
    for record in ranks:
        assert "SyncBatchNorm runs only on CUDA GPUs" in record["refusal"]
        assert "2 processes on cpu" in record["refusal"] and "\n" not in record["refusal"]
        assert record["norms"] == ["BatchNorm1d"]  # the student keeps its own layers
    # Plain DDP: the same weights AND the same BatchNorm running statistics on both ranks,
    # so both validated (and would early-stop) alike.
    state0, state1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert state0.keys() == state1.keys() and any("running_mean" in k for k in state0)
    for key in state0:
        assert torch.equal(state0[key], state1[key]), key
        assert torch.isfinite(state0[key].float()).all(), key
    accuracy = [[h["val_accuracy"] for h in r["history"]] for r in ranks]
    assert accuracy[0] == accuracy[1] and len(accuracy[0]) == 2
    # Per-rank BatchNorm statistics: not the one-process run on the full batches (documented).
    one_model, _ = ddp_bn_worker.run()
    one = one_model.state_dict()
    assert not torch.allclose(one["features.0.1.running_var"], state0["features.0.1.running_var"])


def test_sync_batchnorm_swaps_the_layers_for_the_run_and_puts_them_back() -> None:
    model = create_model("cnn1d_small", 4, width=4)
    originals = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    # Conversion needs no process group; a CUDA device type passes the CPU refusal.
    restore = ddp.sync_batchnorm(model, True, ddp.DistContext(world_size=2), torch.device("cuda"))
    synced = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(synced) == len(originals) == 3
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    with torch.no_grad():
        synced[0].running_mean.add_(1.5)
        synced[0].weight.mul_(2.0)
    model.eval()
    restore()
    assert [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)] == originals
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    assert torch.allclose(originals[0].running_mean, torch.full((4,), 1.5))
    assert not originals[0].training  # the mode set during the run is kept
    assert model(torch.zeros(2, 2, 32)).shape == (2, 4)


def test_sync_batchnorm_is_a_no_op_for_one_process(tones) -> None:
    model = create_model("cnn1d_small", 4, width=4)
    assert ddp.sync_batchnorm(model, True, ddp.DistContext(), torch.device("cpu"))() is None
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", sync_batchnorm=True)
    result = train_supervised(model, *tones, cfg)
    assert result.steps > 0 and not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def test_sync_batchnorm_on_cpu_under_torchrun_is_refused_before_any_work(monkeypatch, tones) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    model = create_model("cnn1d_small", 4, width=4)
    cfg = from_dict(TrainConfig, {"sync_batchnorm": True, "device": "cpu", "epochs": 1, "batch_size": 64})
    with pytest.raises(ConfigError) as info:
        train_supervised(model, *tones, cfg)
    assert "train.sync_batchnorm" in info.value.one_line() and "CUDA" in info.value.one_line()
    assert not torch.distributed.is_initialized()  # refused before joining a process group
    ddp.check_sync_batchnorm(False, torch.device("cpu"))  # off: nothing to refuse
    ddp.check_sync_batchnorm(True, torch.device("cuda"))  # GPUs: allowed
    assert "sync_batchnorm" in {f.name for f in dataclasses.fields(TrainConfig)}  # a recipe key
