"""The one accuracy evaluator every backend is scored with: overall, per class, per SNR."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgekd.data.dataset import ArrayDataset
from edgekd.errors import InputFileError, ShapeError
from edgekd.runtime.inputs import predict_classes

#: Frames read per batch when a lazy dataset is streamed (rounded to a whole number of calls).
STREAM_BATCH = 256


@dataclasses.dataclass
class AccuracyReport:
    """Top-1 accuracy of a session on a labelled dataset; accuracies are fractions in [0, 1].

    ``per_class`` maps class name -> accuracy (None for a class with no frames);
    ``per_snr`` maps SNR in dB -> accuracy (empty when the dataset has no SNR labels);
    ``confusion[true][predicted]`` counts frames; ``predictions`` int64 [N] is kept for
    agreement checks and left out of :meth:`to_dict`.
    """

    n: int
    overall: float
    per_class: dict[str, float | None]
    per_snr: dict[int, float]
    confusion: list[list[int]]
    predictions: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: SNR keys become strings of ints ("-20", "18")."""
        return {
            "n": self.n,
            "overall": self.overall,
            "per_class": dict(self.per_class),
            "per_snr": {str(k): v for k, v in self.per_snr.items()},
            "confusion": [list(row) for row in self.confusion],
        }


def predict(session: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Arg-max class of every frame, int64 [N].

    A session with a static batch B (``session.input_shape[0] == B``) is fed exactly B
    frames per call, the last chunk padded by repeating frames (their predictions are
    dropped); a dynamic-batch session is fed ``batch_size`` frames per call.
    """
    return predict_classes(session.run, x, static_batch=_static(session), batch_size=batch_size)


def evaluate_accuracy(
    session: Any, dataset: Any, batch_size: int = 256, *, workers: int | str | None = 0
) -> AccuracyReport:
    """Run ``session`` over every frame of ``dataset`` and score its top-1 predictions.

    Args:
        session: anything with ``run(x) -> logits [B, num_classes]`` and ``input_shape``.
        dataset: an :class:`~edgekd.data.dataset.ArrayDataset` (frames x float32 [N, C, L],
            labels y [N], optional snr [N] in dB) or a map-style dataset
            (:mod:`edgekd.data.mapstyle`). Frames held in memory are fed as they are; a lazy
            dataset is streamed in batches (:func:`edgekd.data.batches.network_batches`), so
            only the predictions grow with its size. The session sees the same chunks either
            way, so the predictions are the same.
        batch_size: frames per call for a dynamic-batch session.
        workers: DataLoader workers that read a lazy dataset. 0 (the default) reads in this
            process: forking workers beside a runtime's thread pool is not safe (a process
            that had run OpenVINO's NNCF crashed, SIGSEGV, when it forked them), and the
            model's run, not the read of a data stage's artifact, is the slow part here.

    Raises:
        InputFileError: an empty dataset.
        ShapeError: the model's output width is not the dataset's class count.
        InputFileError: the model's outputs are not finite (NaN or Inf weights).
    """
    from edgekd.data.batches import in_memory, memory_arrays

    n = len(dataset)
    if n == 0:
        raise InputFileError("the evaluation dataset has no frames", hint="check the split")
    check_outputs(session, dataset)  # one call, before a long run over the whole set
    if not isinstance(dataset, ArrayDataset) and not in_memory(dataset):
        return score(_streamed_predictions(session, dataset, batch_size, workers), dataset)
    return score(predict(session, memory_arrays(dataset)[0], batch_size), dataset)


def _streamed_predictions(
    session: Any, dataset: Any, batch_size: int, workers: int | str | None
) -> np.ndarray:
    """Arg-max classes int64 [N] of a lazy dataset, read a few batches at a time.

    Each read batch is a whole number of the session's calls (``static`` or ``batch_size``
    frames), so the calls are those :func:`predict` makes on the same frames in memory.
    """
    from edgekd.data.batches import network_batches

    step = _static(session) or batch_size
    preds = np.empty(len(dataset), dtype=np.int64)
    for x, _, idx in network_batches(dataset, step * max(1, STREAM_BATCH // step), workers=workers):
        try:
            preds[idx] = predict(session, x, batch_size)
        except ValueError as exc:  # positions within the batch: name the dataset's
            raise ValueError(f"{exc} of a batch of frames {int(idx[0])}..{int(idx[-1])}") from None
    return preds


def check_outputs(session: Any, dataset: Any) -> None:
    """Run ``session`` once on the first frame (its static batch of it, if any).

    Raises:
        ShapeError: the frame does not fit the model (naming both shapes), or the model does
            not output one score per class of ``dataset``.
        InputFileError: the scores are NaN or Inf (non-finite weights).
    """
    first = _first_frame(dataset)
    probe = np.asarray(session.run(np.repeat(first, _static(session) or 1, axis=0)))
    model = getattr(session, "artifact", None) or "the model"
    width = probe.reshape(probe.shape[0], -1).shape[1]
    if width != dataset.num_classes:
        raise ShapeError(
            f"{model} outputs {width} scores per frame but the dataset has {dataset.num_classes} classes",
            hint="evaluate the model on the dataset it was trained for",
        )
    if not np.isfinite(probe).all():  # NaN logits would argmax to class 0 and score "ok"
        raise InputFileError(
            f"{model} outputs NaN or Inf on the first frame",
            hint="check the model's weights (re-export or re-train it)",
        )


def _first_frame(dataset: Any) -> np.ndarray:
    """The first frame of ``dataset`` as the network takes it, float32 [1, ...]."""
    if isinstance(dataset, ArrayDataset):
        return dataset.x[:1]
    from edgekd.data.batches import network_arrays

    return network_arrays(dataset, np.arange(1)).x


def frame_shape(dataset: Any) -> tuple[int, ...]:
    """One frame of ``dataset`` as the network takes it (no batch axis): an ArrayDataset's
    ``x.shape[1:]``, a map-style dataset's :func:`edgekd.data.batches.network_input_shape`."""
    if isinstance(dataset, ArrayDataset):
        return tuple(int(d) for d in dataset.x.shape[1:])
    from edgekd.data.batches import network_input_shape

    return tuple(int(d) for d in network_input_shape(dataset))


def latency_frames(dataset: Any, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` frames of ``dataset`` as the network takes them (cycled when
    there are fewer), float32 [batch_size, ...]: the latency loop's input, read alone."""
    if isinstance(dataset, ArrayDataset):
        return np.ascontiguousarray(dataset.x[np.arange(batch_size) % len(dataset)])
    from edgekd.data.batches import network_arrays

    return network_arrays(dataset, np.arange(batch_size) % len(dataset)).x


def _static(session: Any) -> int | None:
    return getattr(session, "input_shape", (None,))[0]


def score(preds: np.ndarray, dataset: Any) -> AccuracyReport:
    """Score predictions int64 [N] against ``dataset``'s labels (a pure function; ``y``,
    ``snr``, ``class_names`` of an ArrayDataset or a map-style dataset)."""
    y = dataset.y
    k = dataset.num_classes
    correct = preds == y
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, preds), 1)
    per_class: dict[str, float | None] = {}
    for i, name in enumerate(dataset.class_names):
        mask = y == i
        per_class[name] = float(correct[mask].mean()) if mask.any() else None
    per_snr: dict[int, float] = {}
    if dataset.snr is not None:
        for snr in np.unique(dataset.snr):
            per_snr[int(snr)] = float(correct[dataset.snr == snr].mean())
    return AccuracyReport(
        n=len(y),
        overall=float(correct.mean()),
        per_class=per_class,
        per_snr=per_snr,
        confusion=confusion.tolist(),
        predictions=preds,
    )


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of frames on which two models predict the same class, in [0, 1]."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape or a.size == 0:
        raise ShapeError(f"cannot compare predictions of shapes {list(a.shape)} and {list(b.shape)}")
    return float((a == b).mean())
