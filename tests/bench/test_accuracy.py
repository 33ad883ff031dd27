from __future__ import annotations

import numpy as np
import pytest

from edgekd.bench.accuracy import agreement, evaluate_accuracy
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import InputFileError, ShapeError

# 8 frames, 3 classes, SNR -10 or 10 dB. Frame i carries i in x[i, 0, 0]; the fake model
# "predicts" PREDS[i], so every count below can be checked by hand.
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDS = np.array([0, 0, 1, 1, 2, 2, 2, 0])
SNR = np.array([-10, 10, 10, -10, 10, -10, 10, 10])
NAMES = ["AM", "FM", "PSK"]


def _dataset(snr: bool = True) -> ArrayDataset:
    x = np.zeros((len(Y), 2, 4), np.float32)
    x[:, 0, 0] = np.arange(len(Y))
    return ArrayDataset(x=x, y=Y, class_names=NAMES, snr=SNR if snr else None)


class LookupSession:
    """Returns one-hot logits of PREDS for the frames it is given; records batch sizes."""

    def __init__(self, static_batch: int | None = None, width: int = 3) -> None:
        self.input_shape = (static_batch, 2, 4)
        self.width = width
        self.batches: list[int] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.input_shape[0] is not None:
            assert len(x) == self.input_shape[0]
        self.batches.append(len(x))
        logits = np.zeros((len(x), self.width), np.float32)
        logits[np.arange(len(x)), PREDS[x[:, 0, 0].astype(int)] % self.width] = 1.0
        return logits


def test_hand_counted_report() -> None:
    report = evaluate_accuracy(LookupSession(), _dataset(), batch_size=3)
    assert report.n == 8
    assert report.overall == pytest.approx(5 / 8)
    assert report.per_class == {"AM": pytest.approx(2 / 3), "FM": 0.5, "PSK": pytest.approx(2 / 3)}
    # -10 dB: frames 0, 3, 5, all right; 10 dB: frames 1, 2, 4, 6, 7, of which 1 and 6 are right.
    assert report.per_snr == {-10: 1.0, 10: pytest.approx(2 / 5)}
    assert report.confusion == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    np.testing.assert_array_equal(report.predictions, PREDS)
    d = report.to_dict()
    assert d["per_snr"] == {"-10": 1.0, "10": pytest.approx(0.4)}
    assert "predictions" not in d


def test_no_snr_and_empty_class() -> None:
    ds = _dataset(snr=False)
    ds = ArrayDataset(x=ds.x, y=ds.y, class_names=[*NAMES, "QAM"])
    report = evaluate_accuracy(LookupSession(width=4), ds)
    assert report.per_snr == {}
    assert report.per_class["QAM"] is None


def test_batch_one_session_is_fed_frame_by_frame() -> None:
    session = LookupSession(static_batch=1)
    report = evaluate_accuracy(session, _dataset(), batch_size=256)
    assert set(session.batches) == {1}
    np.testing.assert_array_equal(report.predictions, PREDS)


def test_static_batch_pads_the_last_chunk() -> None:
    session = LookupSession(static_batch=3)
    report = evaluate_accuracy(session, _dataset())
    assert set(session.batches) == {3}
    np.testing.assert_array_equal(report.predictions, PREDS)


def test_width_mismatch_and_empty_dataset() -> None:
    with pytest.raises(ShapeError, match="outputs 5 scores"):
        evaluate_accuracy(LookupSession(width=5), _dataset())
    empty = ArrayDataset(x=np.zeros((0, 2, 4), np.float32), y=np.zeros(0), class_names=NAMES)
    with pytest.raises(InputFileError, match="no frames"):
        evaluate_accuracy(LookupSession(), empty)


def test_agreement() -> None:
    assert agreement(PREDS, Y) == pytest.approx(5 / 8)
    assert agreement(PREDS, PREDS) == 1.0
    with pytest.raises(ShapeError):
        agreement(PREDS, PREDS[:3])
