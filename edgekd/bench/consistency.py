"""Cross-field checks of a bench document, after its fields' types and ranges passed.

A field can be of the right type and range and still contradict the others: a p50 above
the p99, a confusion matrix that does not count the evaluated frames, an accuracy for a
class the dataset does not have. Each is refused with the JSON path of the field, so a
hand-edited or damaged bench.json or baseline cannot pass a gate.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from typing import Any

from edgekd.errors import InputFileError

# Percentiles are computed from the same sorted samples, so they are ordered; the slack
# only absorbs float rounding of the interpolation and of the mean.
_ORDER = ("min", "p50", "p90", "p95", "p99", "max")
_REL_TOL = 1e-9


def _fail(path: str, what: str) -> InputFileError:
    return InputFileError(
        f"bench document field {path} {what}", hint="re-run edgekd bench, or fix the file by hand"
    )


def _le(a: float, b: float) -> bool:
    return a <= b + _REL_TOL * max(abs(a), abs(b), 1e-12)


def check_latency(latency: dict[str, Any], where: str) -> None:
    """min <= p50 <= p90 <= p95 <= p99 <= max, and min <= mean <= max (all ms)."""
    for low, high in itertools.pairwise(_ORDER):
        if not _le(latency[low], latency[high]):
            raise _fail(
                f"{where}.{low}",
                f"is {latency[low]:g} ms, above {high} {latency[high]:g} ms; "
                f"the statistics must be ordered {' <= '.join(_ORDER)}",
            )
    if not (_le(latency["min"], latency["mean"]) and _le(latency["mean"], latency["max"])):
        raise _fail(f"{where}.mean", f"is {latency['mean']:g} ms, outside [min, max]")


def check_accuracy(accuracy: dict[str, Any], dataset: dict[str, Any], where: str) -> None:
    """The accuracy counts the dataset's frames, in a k x k confusion over its k classes."""
    names = dataset["class_names"]
    if accuracy["n"] != dataset["n"]:
        raise _fail(f"{where}.n", f"is {accuracy['n']} but $.dataset.n is {dataset['n']}")
    confusion = accuracy["confusion"]
    k = len(names)
    if len(confusion) != k or any(len(row) != k for row in confusion):
        raise _fail(f"{where}.confusion", f"must be {k} x {k} (one row and column per class)")
    total = sum(sum(row) for row in confusion)
    if total != accuracy["n"]:
        raise _fail(f"{where}.confusion", f"counts {total} frames but {where}.n is {accuracy['n']}")
    unknown = sorted(set(accuracy["per_class"]) - set(names))
    if unknown:
        raise _fail(f"{where}.per_class", f"names classes not in $.dataset.class_names: {unknown}")
    snrs = {str(s) for s in dataset["snrs"]}
    stray = sorted(set(accuracy["per_snr"]) - snrs)
    if stray:
        raise _fail(f"{where}.per_snr", f"has SNRs not in $.dataset.snrs: {stray}")


def _check_input_shape(entry: dict[str, Any], frame: list[int] | None, where: str) -> None:
    shape = entry.get("input_shape")
    if shape is None or frame is None:
        return
    fits = len(shape) == len(frame) + 1 and all(
        d is None or d == f for d, f in zip(shape[1:], frame, strict=True)
    )
    if not fits:
        raise _fail(f"{where}.input_shape", f"{shape} does not fit the dataset's frames {frame}")


def check_consistency(doc: dict[str, Any]) -> None:
    """Raise InputFileError at the first field that contradicts another (see module doc)."""
    created = doc["created"].replace("Z", "+00:00")
    try:
        _dt.datetime.fromisoformat(created)
    except ValueError:
        raise _fail("$.created", f"is {doc['created']!r}, not an ISO 8601 time") from None
    dataset = doc["dataset"]
    names = dataset["class_names"]
    if not names or len(set(names)) != len(names):
        raise _fail("$.dataset.class_names", "must list at least one class, each once")
    if len(set(dataset["snrs"])) != len(dataset["snrs"]):
        raise _fail("$.dataset.snrs", "lists an SNR twice")
    if not doc["entries"]:
        raise _fail("$.entries", "is empty: a bench result holds at least one entry")
    frame = dataset.get("input_shape")
    for i, entry in enumerate(doc["entries"]):
        where = f"$.entries[{i}]"
        if entry["status"] != "ok":
            continue
        check_latency(entry["latency_ms"], f"{where}.latency_ms")
        check_accuracy(entry["accuracy"], dataset, f"{where}.accuracy")
        _check_input_shape(entry, frame, where)
