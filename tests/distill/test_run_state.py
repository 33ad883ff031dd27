"""The resume state in one object: the sampler's state, the file's format tag, old files still read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from edgekd.distill import state as files
from edgekd.distill.distributed import DistContext
from edgekd.distill.run_state import ShuffledBatches
from edgekd.distill.train import distill
from edgekd.errors import InputFileError
from edgekd.models import create_model
from tests.distill.resume_worker import CFG, KD
from tests.distill.synthetic import tone_dataset


def _sampler(seed: int = 3) -> ShuffledBatches:
    return ShuffledBatches(21, 8, DistContext(), seed)


def test_sampler_resumes_mid_epoch_and_draws_the_same_next_order() -> None:
    live = _sampler()
    assert live.start_epoch() and len(live) == 3  # 21 rows: 8 + 8 + 5
    first = next(iter(live.remaining()))
    live.next_batch = first[0] + 1
    saved = _round_trip(live.state_dict())
    copy = _sampler(seed=99)
    copy.load_state_dict(saved)
    assert not copy.start_epoch()  # the resumed epoch goes on, in the saved order
    assert [(b, idx.tolist()) for b, idx in copy.remaining()] == [
        (b, idx.tolist()) for b, idx in live.remaining()
    ]
    for sampler in (live, copy):
        sampler.end_epoch()
        assert sampler.start_epoch()
    assert torch.equal(live.order, copy.order)


def _round_trip(obj: dict) -> dict:
    """``obj`` through torch.save and torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _as_v1(state: dict) -> dict:
    """Today's layout flattened into edgekd.train-state/1's (edgekd before the RunState)."""
    return {
        "format": files.STATE_FORMAT_V1,
        "fingerprint": state["fingerprint"],
        **{k: state[k] for k in ("model", "objective", "optimizer", "scaler", "ema", "epoch", "step")},
        "rng": {**state["rng"], "numpy": state["sampler"]["numpy"]},
        "order": state["sampler"]["order"],
        "next_batch": state["sampler"]["next_batch"],
        "loss_sum": state["epoch_loss"]["loss_sum"],
        "seen": state["epoch_loss"]["seen"],
        **state["records"],
    }


class _Stop(Exception):
    pass


def _distill(out_dir: Path, *, stop_at: int | None = None, resume: bool = False) -> tuple[dict, list]:
    torch.manual_seed(0)
    teacher = create_model("resnet1d", 4, width=8, blocks=[1, 1, 1])
    student = create_model("cnn1d_small", 4, width=4)

    def on_step(step: int) -> None:
        if step == stop_at:
            raise _Stop

    data = tone_dataset(256, seed=0), tone_dataset(64, seed=1)
    result = distill(student, teacher, *data, CFG, KD, out_dir=out_dir, resume=resume, on_step=on_step)
    timing = ("seconds", "train_seconds")
    return student.state_dict(), [{k: v for k, v in h.items() if k not in timing} for h in result.history]


def test_a_train_state_1_file_still_resumes_exactly(tmp_path: Path) -> None:
    whole, whole_history = _distill(tmp_path / "whole")
    broken = tmp_path / "broken"
    with pytest.raises(_Stop):
        _distill(broken, stop_at=11)  # the snapshot on disk is step 9's
    path = broken / files.STATE_FILE
    state = torch.load(path, weights_only=True)
    assert state["format"] == files.STATE_FORMAT and state["step"] == 9
    torch.save(_as_v1(state), path)
    resumed, history = _distill(broken, resume=True)
    assert resumed.keys() == whole.keys()
    for key, value in whole.items():
        assert torch.equal(resumed[key], value), key
    assert history == whole_history
    assert torch.load(path, weights_only=True)["format"] == files.STATE_FORMAT  # rewritten as today's


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": "edgekd.train-state/9"}, "format 'edgekd.train-state/9', which this edgekd cannot read"),
        ({"format": "edgekd.weights/1"}, "is not an edgekd resume state"),
        ([1, 2], "is not an edgekd resume state"),
        ({"format": files.STATE_FORMAT, "fingerprint": {}}, "lacks the entry 'epoch'"),
        ({"format": files.STATE_FORMAT_V1, "fingerprint": {}}, "lacks the entry 'rng'"),
    ],
)
def test_a_foreign_or_broken_state_is_one_clear_line(tmp_path: Path, payload, message: str) -> None:
    torch.save(payload, tmp_path / files.STATE_FILE)
    with pytest.raises(InputFileError) as info:
        files.load_state(tmp_path, {})
    assert message in info.value.one_line()
