"""Judge one entry of a result against a target's budgets (and a baseline, when given)."""

from __future__ import annotations

from typing import Any

from edgekd.errors import ConfigError, ShapeError
from edgekd.gate.checks import Check, GateResult
from edgekd.gate.latency import latency_regression_check
from edgekd.targets import TargetProfile

# Budgets a static result (a model file read without running it) can judge.
STATIC_METRICS = ("size_bytes", "params", "macs")


def find_entry(doc: dict[str, Any], entry_id: str, what: str = "bench result") -> dict[str, Any]:
    entries = doc.get("entries", [])
    for entry in entries:
        if entry.get("id") == entry_id:
            return entry
    present = ", ".join(str(e.get("id", "?")) for e in entries) or "none"
    raise ConfigError(
        f"the {what} has no entry {entry_id!r} (present: {present})",
        hint="bench that runtime and precision, or gate against a target that matches an entry",
    )


def check_result_fits(doc: dict[str, Any], target: TargetProfile, source: str) -> None:
    """ShapeError naming ``source`` when a bench document's frames (``dataset.input_shape``) or
    the judged entry's model input (``input_shape``) do not fit the target's ``input_shape``.
    Documents written before those fields existed are not judged on them."""
    if target.input_shape is None:
        return
    frame = (doc.get("dataset") or {}).get("input_shape")
    if frame is not None:
        target.check_frames(frame, f"{source} (bench data)")
    for entry in doc.get("entries", []):
        if entry.get("id") == target.entry_id and entry.get("input_shape") is not None:
            why = target.input_problem(entry["input_shape"])
            if why is not None:
                raise ShapeError(
                    f"{source}: entry {target.entry_id}: {why}",
                    hint="gate the bench of the model built for this target",
                )


def _accuracy(entry: dict[str, Any] | None) -> float | None:
    if not entry or entry.get("status") != "ok":
        return None
    return (entry.get("accuracy") or {}).get("overall")


def evaluate_gate(
    result: dict[str, Any],
    target: TargetProfile,
    *,
    baseline: dict[str, Any] | None = None,
    baseline_name: str | None = None,
) -> GateResult:
    """Compare the target's entry in ``result`` (a bench.json document) with its budgets.

    ``result["static"]`` marks a document built from a model file alone: budgets it
    cannot measure (latency, accuracy) are reported as skipped, not failed.
    """
    entry = find_entry(result, target.entry_id)
    verdict = GateResult(target=target.name, entry_id=target.entry_id, checks=[], baseline=baseline_name)
    if entry.get("status") != "ok":
        verdict.problem = f"{target.entry_id} was not measured: {entry.get('reason') or entry.get('status')}"
        return verdict
    base_entry = None
    if baseline is not None:
        base_entry = next((e for e in baseline.get("entries", []) if e.get("id") == target.entry_id), None)
    static = bool(result.get("static"))
    b = target.budgets
    latency = entry.get("latency_ms") or {}
    base_latency = (base_entry or {}).get("latency_ms") or {}
    size = (entry.get("artifact") or {}).get("size_bytes")
    base_size = ((base_entry or {}).get("artifact") or {}).get("size_bytes")
    plain = [
        ("size_bytes", size, base_size, b.max_size_bytes, "max", "B"),
        ("params", entry.get("params"), (base_entry or {}).get("params"), b.max_params, "max", ""),
        ("macs", entry.get("macs"), (base_entry or {}).get("macs"), b.max_macs, "max", ""),
        ("p50_ms", latency.get("p50"), base_latency.get("p50"), b.max_p50_ms, "max", "ms"),
        ("p90_ms", latency.get("p90"), base_latency.get("p90"), b.max_p90_ms, "max", "ms"),
        ("accuracy", _accuracy(entry), _accuracy(base_entry), b.min_accuracy, "min", "%"),
    ]
    for metric, current, base_value, limit, kind, unit in plain:
        if limit is None:
            continue
        check = Check(metric, _num(current), float(limit), kind, unit, baseline=_num(base_value))
        if static and metric not in STATIC_METRICS:
            check.skipped, check.note = True, "not measured by a static gate"
        verdict.checks.append(check)
    verdict.checks.extend(_accuracy_drop_checks(result, entry, baseline, base_entry, target, static))
    if b.max_latency_regression is not None:
        if static or baseline is None:
            verdict.checks.append(
                Check(
                    "latency_regression",
                    None,
                    b.max_latency_regression,
                    "max",
                    "ratio",
                    skipped=True,
                    note="needs a measured result and --baseline",
                )
            )
        else:
            check = latency_regression_check(
                result,
                baseline,
                target.entry_id,
                b.max_latency_regression,
                b.latency_method,
                b.latency_anchor,
                b.latency_confidence,
            )
            verdict.checks.append(check)
    return verdict


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _accuracy_drop_checks(
    result: dict[str, Any],
    entry: dict[str, Any],
    baseline: dict[str, Any] | None,
    base_entry: dict[str, Any] | None,
    target: TargetProfile,
    static: bool,
) -> list[Check]:
    b = target.budgets
    if b.max_accuracy_drop is None and b.max_accuracy_drop_relative is None:
        return []
    versus = b.accuracy_drop_vs
    if versus == "auto":
        versus = "baseline" if baseline is not None else "reference"
    if versus == "baseline":
        if baseline is None:
            raise ConfigError(
                f"target {target.name} compares accuracy with a baseline, but none was given",
                hint="pass --baseline BASELINE.json, or set budgets.accuracy_drop_vs: reference",
            )
        compared, label = _accuracy(base_entry), "baseline"
    elif versus == "teacher":
        teacher = result.get("teacher") or {}
        if teacher.get("accuracy") is None:
            raise ConfigError(
                f"target {target.name} compares accuracy with the teacher, but the result holds no teacher",
                hint="bench with the teacher (edgekd run, or edgekd bench --teacher TEACHER)",
            )
        compared, label = float(teacher["accuracy"]), f"teacher {teacher.get('path', '')}".strip()
    else:
        reference_id = result.get("reference")
        reference = find_entry(result, reference_id) if reference_id else None
        compared, label = _accuracy(reference), f"reference {reference_id}"
    current = _accuracy(entry)
    drop = None if compared is None or current is None else compared - current
    if compared is not None:
        label = f"{label} at {compared:.2%}"
    checks = []
    if b.max_accuracy_drop is not None:
        checks.append(Check("accuracy_drop", drop, b.max_accuracy_drop, "max", "pt", note=f"vs {label}"))
    if b.max_accuracy_drop_relative is not None:
        relative = None if drop is None or not compared else drop / compared
        checks.append(
            Check(
                "accuracy_drop_relative",
                relative,
                b.max_accuracy_drop_relative,
                "max",
                "ratio",
                note=f"vs {label}",
            )
        )
    if static:
        for check in checks:
            check.skipped, check.note = True, "not measured by a static gate"
    return checks
