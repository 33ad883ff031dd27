"""bench.json: the document ``edgekd bench`` writes and ``edgekd gate`` reads.

The field reference is docs/bench-schema.md. Versioning: additive changes (a new
optional field) keep ``edgekd.bench/1``; renaming, removing or re-typing a field
bumps the number, and readers refuse a version they do not know.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_json
from edgekd.backends.base import PRECISIONS
from edgekd.bench.consistency import check_consistency
from edgekd.errors import ConfigError, InputFileError

BENCH_SCHEMA = "edgekd.bench/1"
STATUSES = ("ok", "skipped", "failed")


@dataclasses.dataclass(frozen=True)
class _Scalar:
    """A JSON scalar; numbers may carry a range ``[lo, hi]`` (``lo_open``: > lo) and a unit."""

    name: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    unit: str = ""

    def ranged(self, lo: float | None, hi: float | None = None, *, unit: str = "", lo_open: bool = False):
        return _Scalar(self.name, lo, hi, lo_open, unit)

    def out_of_range(self, value: Any) -> str | None:
        """None when ``value`` (already of the right type) is inside the range, else what it must be."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and value > self.hi
        if not (too_low or too_high):
            return None
        unit = f" {self.unit}" if self.unit else ""
        if self.lo is not None and self.hi is not None:
            text = f"in [{self.lo:g}, {self.hi:g}]{unit}"
            if self.unit == "(a fraction)" and 1 < value <= 100:
                text += f"; {value:g} looks like a percentage: write {value / 100:g}"
            return text
        return f"{'>' if self.lo_open else '>='} {self.lo:g}{unit}"

    def accepts(self, value: Any) -> bool:
        if self.name == "string":
            return isinstance(value, str)
        if self.name == "boolean":
            return isinstance(value, bool)
        if isinstance(value, bool):  # bool is an int subclass; JSON keeps them apart
            return False
        if self.name == "integer":
            return isinstance(value, int)
        return isinstance(value, (int, float)) and math.isfinite(value)  # number: no NaN/inf in JSON


@dataclasses.dataclass(frozen=True)
class _Opt:
    inner: Any


@dataclasses.dataclass(frozen=True)
class _List:
    item: Any


@dataclasses.dataclass(frozen=True)
class _Map:
    """An object with free keys; ``int_keys`` requires keys like "-20"."""

    value: Any
    int_keys: bool = False


@dataclasses.dataclass(frozen=True)
class _Absent:
    """A field added after ``/1`` first shipped: it may be missing; when present it must fit."""

    inner: Any


@dataclasses.dataclass(frozen=True)
class _OneOf:
    choices: tuple[str, ...]


STR, INT, NUM, BOOL = _Scalar("string"), _Scalar("integer"), _Scalar("number"), _Scalar("boolean")
MS = NUM.ranged(0, unit="ms")  # a duration in milliseconds
SECONDS = NUM.ranged(0, unit="s")
FRACTION = NUM.ranged(0, 1, unit="(a fraction)")  # accuracies, agreement: 0.975, not 97.5
COUNT = INT.ranged(0)  # sizes, parameters, MACs, frames
POSITIVE_INT = INT.ranged(1)
RATIO = NUM.ranged(0)

_LATENCY: dict[str, Any] = {
    k: MS for k in ("p50", "p90", "p95", "p99", "mean", "std", "min", "max", "first_inference_ms")
}
_LATENCY["cv"] = RATIO
_LATENCY["throughput_per_s"] = NUM.ranged(0, unit="frames/s")
_LATENCY["runs"] = POSITIVE_INT
# The runtime's own per-call timing (OpenVINO), added after /1 first shipped.
_LATENCY["runtime_p50"] = _Absent(_Opt(MS))
_ACCURACY = {
    "n": COUNT,
    "overall": FRACTION,
    "per_class": _Map(_Opt(FRACTION)),
    "per_snr": _Map(FRACTION, int_keys=True),
    "confusion": _List(_List(COUNT)),
}
_ENTRY = {
    "id": STR,
    "backend": STR,
    "precision": _OneOf(PRECISIONS),
    "executed_precision": _Opt(STR),
    "status": _OneOf(STATUSES),
    "reason": _Opt(STR),
    "artifact": {"path": STR, "sha256": _Opt(STR), "size_bytes": _Opt(COUNT)},
    "params": _Opt(COUNT),
    "macs": _Opt(COUNT),
    "load_ms": _Opt(MS),
    "latency_ms": _Opt(_LATENCY),
    "noisy": _Opt(BOOL),
    "accuracy": _Opt(_ACCURACY),
    "agreement_with_reference": _Opt(FRACTION),
    # Additive fields (edgekd.bench/1 documents written before them lack them).
    "peak_memory_mib": _Absent(_Opt(NUM.ranged(0, unit="MiB"))),
    "achieved_gflops": _Absent(_Opt(NUM.ranged(0, unit="GFLOP/s"))),
    "fraction_of_peak": _Absent(_Opt(RATIO)),
    "session_options": _Absent({"threads": _Opt(POSITIVE_INT), "device": STR, "extra": _Map(STR)}),
    # The model's input, batch first, null for a dynamic axis.
    "input_shape": _Absent(_Opt(_List(_Opt(POSITIVE_INT)))),
}
_SETTINGS = {
    "warmup_runs": COUNT,
    "warmup_seconds": SECONDS,
    "min_runs": POSITIVE_INT,
    "min_seconds": SECONDS,
    "max_seconds": NUM.ranged(0, unit="s", lo_open=True),
    "batch_size": POSITIVE_INT,
    "threads": _Opt(POSITIVE_INT),
    "accuracy_batch_size": POSITIVE_INT,
    "pin_cpus": _Absent(_Opt(_List(COUNT))),
}
_ROOFLINE = {
    "peak_gflops": NUM.ranged(0, unit="GFLOP/s", lo_open=True),
    "gemm_n": POSITIVE_INT,
    "repeats": POSITIVE_INT,
    "gemm_ms": NUM.ranged(0, unit="ms", lo_open=True),
}
_DATASET = {
    "name": STR,
    "split": STR,
    "n": POSITIVE_INT,
    "class_names": _List(STR),
    "snrs": _List(INT),
    "input_shape": _Absent(_List(POSITIVE_INT)),  # one frame's shape, no batch axis
}
_DOCUMENT = {
    "schema": STR,
    "created": STR,
    "name": STR,
    "environment": _Map(None),
    "dataset": _DATASET,
    "settings": _SETTINGS,
    "reference": _Opt(STR),
    "entries": _List(_ENTRY),
    "roofline": _Absent(_Opt(_ROOFLINE)),
    # The teacher's accuracy on the same frames, for gates that bound the drop vs the teacher.
    "teacher": _Absent(_Opt({"path": STR, "sha256": STR, "accuracy": FRACTION})),
    # The target profile whose runtime settings the entries were opened with.
    "target": _Absent(_Opt(STR)),
}
# Fields an "ok" entry must fill (they may be null only when the entry did not run).
_OK_REQUIRED = ("executed_precision", "load_ms", "latency_ms", "noisy", "accuracy")


def _describe(spec: Any) -> str:
    if isinstance(spec, _Absent):
        return _describe(spec.inner)
    if isinstance(spec, _Scalar):
        return spec.name
    if isinstance(spec, _Opt):
        return f"{_describe(spec.inner)} or null"
    if isinstance(spec, _List):
        return f"array of {_describe(spec.item)}"
    if isinstance(spec, _Map):
        return "object" + (" with integer keys" if spec.int_keys else "")
    if isinstance(spec, _OneOf):
        return "one of " + ", ".join(map(repr, spec.choices))
    return "object"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def _bad(path: str, spec: Any, value: Any) -> InputFileError:
    got = repr(value) if isinstance(value, float) and not math.isfinite(value) else _kind(value)
    return InputFileError(
        f"bench document field {path} must be {_describe(spec)}, got {got}",
        hint="re-run edgekd bench, or fix the file by hand",
    )


def _check(value: Any, spec: Any, path: str) -> None:
    if spec is None:  # free-form (the environment fingerprint)
        return
    if isinstance(spec, _Absent):
        _check(value, spec.inner, path)
        return
    if isinstance(spec, _Opt):
        if value is not None:
            # Checked here so the message says "integer or null", not just "integer".
            if not _top_level_fits(value, spec.inner):
                raise _bad(path, spec, value)
            _check(value, spec.inner, path)
        return
    if not _top_level_fits(value, spec):
        raise _bad(path, spec, value)
    if isinstance(spec, _Scalar) and (must := spec.out_of_range(value)) is not None:
        raise InputFileError(
            f"bench document field {path} must be {must}, got {value!r}",
            hint="re-run edgekd bench, or fix the file by hand",
        )
    if isinstance(spec, _List):
        for i, item in enumerate(value):
            _check(item, spec.item, f"{path}[{i}]")
    elif isinstance(spec, _Map):
        for key, item in value.items():
            if spec.int_keys and not _is_int_string(key):
                raise InputFileError(
                    f"bench document field {path} has key {key!r}; keys must be integers as strings"
                )
            _check(item, spec.value, f"{path}.{key}")
    elif isinstance(spec, dict):
        for key, sub in spec.items():
            if isinstance(sub, _Absent) and key not in value:
                continue
            if key not in value:
                raise InputFileError(
                    f"bench document field {path}.{key} is missing (expected {_describe(sub)})",
                    hint="re-run edgekd bench with this edgekd version",
                )
            _check(value[key], sub, f"{path}.{key}")


def _top_level_fits(value: Any, spec: Any) -> bool:
    if isinstance(spec, _Scalar):
        return spec.accepts(value)
    if isinstance(spec, _OneOf):
        return value in spec.choices
    if isinstance(spec, _List):
        return isinstance(value, list)
    return isinstance(value, dict)


def _is_int_string(key: Any) -> bool:
    try:
        return isinstance(key, str) and str(int(key)) == key
    except ValueError:
        return False


def validate_bench(doc: Any) -> None:
    """Raise InputFileError naming the JSON path (``$.entries[1].latency_ms.p50``) of the first
    missing, mistyped or out-of-range field (a negative latency, an accuracy above 1) and what
    is expected there, or of a field that contradicts another (p50 above p99, see
    :mod:`edgekd.bench.consistency`). Unknown extra fields are allowed."""
    if not isinstance(doc, dict):
        raise InputFileError(f"a bench document is a JSON object, got {_kind(doc)}")
    schema = doc.get("schema")
    if schema != BENCH_SCHEMA:
        if isinstance(schema, str) and schema.startswith("edgekd.bench/"):
            raise InputFileError(
                f"bench document has schema {schema}; this edgekd reads {BENCH_SCHEMA}",
                hint="use the edgekd version that wrote it, or re-run edgekd bench",
            )
        raise InputFileError(
            f"not an edgekd bench document ($.schema is {schema!r}, expected {BENCH_SCHEMA!r})",
            hint="pass the bench.json written by edgekd bench",
        )
    _check(doc, _DOCUMENT, "$")
    seen: set[str] = set()
    for i, entry in enumerate(doc["entries"]):
        where = f"$.entries[{i}]"
        if entry["id"] != f"{entry['backend']}/{entry['precision']}":
            raise InputFileError(
                f"bench document field {where}.id must be '<backend>/<precision>', got {entry['id']!r}"
            )
        if entry["id"] in seen:
            raise InputFileError(
                f"bench document field {where}.id repeats {entry['id']!r}; ids must be unique"
            )
        seen.add(entry["id"])
        if entry["status"] == "ok":
            for key in _OK_REQUIRED:
                if entry[key] is None:
                    raise InputFileError(
                        f"bench document field {where}.{key} is null but the entry's status is 'ok'"
                    )
        elif not entry["reason"]:
            raise InputFileError(
                f"bench document field {where}.reason must say why the entry is {entry['status']}"
            )
    check_consistency(doc)


#: A bench.json is a few hundred kB even for a large model zoo; refuse anything absurd.
MAX_BENCH_BYTES = 64 * 1024 * 1024


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a key given twice would silently replace the first."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _read_json(path: Path) -> Any:
    """Parse ``path``; every way it can fail is an InputFileError naming the file."""
    try:
        if path.stat().st_size > MAX_BENCH_BYTES:
            raise InputFileError(
                f"{path} is {path.stat().st_size} bytes, too large for a bench document "
                f"(at most {MAX_BENCH_BYTES})",
                hint="pass the bench.json written by edgekd bench",
            )
        text = path.read_text(encoding="utf-8")
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint="re-run edgekd bench; the file may be truncated",
        ) from None
    except RecursionError:
        raise InputFileError(
            f"{path} is nested too deeply to be a bench document", hint="pass the bench.json of edgekd bench"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read bench file {path}: {exc}") from None
    except ValueError as exc:  # a duplicate key, an integer too long to convert
        raise InputFileError(f"{path} is not a usable JSON document: {exc}") from None


def load_bench(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a bench.json (types, ranges, units, consistency); any problem is
    one line naming the file and the JSON path of the field."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            f"bench file {path} does not exist", hint="run edgekd bench first, or check the path"
        )
    doc = _read_json(path)
    try:
        validate_bench(doc)
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc.message}", hint=exc.hint) from None
    return doc


def write_bench(doc: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Validate ``doc`` and write it atomically (a killed run leaves no half file)."""
    validate_bench(doc)
    atomic_write_json(path, doc)


def entry_ids(doc: dict[str, Any]) -> list[str]:
    return [e["id"] for e in doc.get("entries", [])]


def find_entry(doc: dict[str, Any], backend: str, precision: str) -> dict[str, Any]:
    """The entry ``<backend>/<precision>``; ConfigError listing the ids present otherwise."""
    wanted = f"{backend}/{precision}"
    for entry in doc.get("entries", []):
        if entry.get("id") == wanted:
            return entry
    present = ", ".join(entry_ids(doc)) or "none"
    raise ConfigError(f"bench has no entry {wanted!r}", hint=f"entries present: {present}")
