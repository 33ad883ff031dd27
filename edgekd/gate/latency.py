"""Latency regression against a baseline, chosen per target with ``latency_method``.

A latency gate must fail on a real regression and pass on a change of machine or noise:

``auto`` (default)
    The ``ratio`` method against an anchor entry measured in BOTH runs: ``latency_anchor``
    when set, else the bench's reference entry (PyTorch FP32 of the same student), else
    another FP32 entry; never the judged entry itself. A CI machine uniformly 30% slower
    than the baseline's slows the anchor alike, so the ratio holds and the gate passes; the
    judged runtime getting slower fails it. Without such an anchor: the ``ci`` method when
    both runs come from the same machine (CPU model, usable cores, host), and a skipped
    check (with the reason) when they do not, since then no figure separates the machine
    from the model.
``ci``
    Welch's interval on the difference of mean latencies, from each run's mean, std and
    run count: the check fails only when the whole interval of the relative change lies
    above the allowed regression. It treats calls as independent samples of ONE machine:
    a uniformly slower machine fails it.
``ratio``
    Each p50 is divided by an anchor entry's p50 measured in the same run (by default the
    bench's reference entry).
``absolute``
    The plain p50 ratio. Only for quiet, dedicated benchmark machines.

A slowdown the anchor shares (the whole student got bigger, so its PyTorch FP32 reference
slowed too) is not a latency regression under ``auto``/``ratio``: bound it with
``max_p50_ms``/``max_p90_ms``, ``max_macs`` or ``max_params``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from edgekd.errors import ConfigError
from edgekd.gate.checks import Check


def _latency(entry: dict[str, Any], what: str) -> dict[str, Any]:
    latency = entry.get("latency_ms") or {}
    if latency.get("p50") is None:
        raise ConfigError(
            f"{what} entry {entry.get('id')!r} has no latency", hint="bench it before gating latency"
        )
    return latency


def _find(doc: dict[str, Any], entry_id: str, what: str) -> dict[str, Any]:
    for entry in doc.get("entries", []):
        if entry.get("id") == entry_id and entry.get("status") == "ok":
            return entry
    raise ConfigError(
        f"the {what} has no measured entry {entry_id!r} to compare latency with",
        hint="bench the same entry in both runs, or choose another latency_anchor",
    )


def latency_regression_check(
    current_doc: dict[str, Any],
    baseline_doc: dict[str, Any],
    entry_id: str,
    limit: float,
    method: str,
    anchor: str | None,
    confidence: float,
) -> Check:
    """A check whose ``current`` is the relative p50 change (0.1 = 10% slower) vs the baseline,
    judged by ``method`` ("auto", "ci", "ratio", "absolute"; see the module doc)."""
    current = _latency(_find(current_doc, entry_id, "result"), "result")
    base = _latency(_find(baseline_doc, entry_id, "baseline"), "baseline")
    if method == "absolute":
        change = current["p50"] / _positive(base["p50"], entry_id) - 1.0
        return Check("latency_regression", change, limit, "max", "ratio", note="p50 vs baseline p50")
    if method == "ratio":
        anchor_id = anchor or current_doc.get("reference")
        if not anchor_id:
            raise ConfigError(
                "latency_method 'ratio' needs an anchor entry", hint="set budgets.latency_anchor"
            )
        if anchor_id == entry_id:
            raise ConfigError(
                f"latency anchor {anchor_id!r} is the judged entry itself: its ratio is always 1",
                hint="set budgets.latency_anchor to another entry of the same run, e.g. torch/fp32",
            )
        return _ratio_check(current_doc, baseline_doc, current, base, anchor_id, limit, "")
    if method == "ci":
        return _welch_check(current, base, limit, confidence)
    return _auto_check(current_doc, baseline_doc, entry_id, current, base, limit, anchor, confidence)


def _positive(value: Any, entry_id: str) -> float:
    if float(value) <= 0:
        raise ConfigError(f"entry {entry_id!r} has a p50 of {value} ms; a measured latency is > 0")
    return float(value)


def _ratio_check(
    current_doc: dict[str, Any],
    baseline_doc: dict[str, Any],
    current: dict[str, Any],
    base: dict[str, Any],
    anchor_id: str,
    limit: float,
    prefix: str,
) -> Check:
    cur_anchor = _latency(_find(current_doc, anchor_id, "result"), "result")["p50"]
    base_anchor = _latency(_find(baseline_doc, anchor_id, "baseline"), "baseline")["p50"]
    ratio_now = current["p50"] / _positive(cur_anchor, anchor_id)
    ratio_then = _positive(base["p50"], "baseline") / _positive(base_anchor, anchor_id)
    return Check(
        "latency_regression",
        ratio_now / ratio_then - 1.0,
        limit,
        "max",
        "ratio",
        note=f"{prefix}p50 relative to {anchor_id} in each run",
    )


def _measured(doc: dict[str, Any], entry_id: str) -> bool:
    return any(
        e.get("id") == entry_id and e.get("status") == "ok" and (e.get("latency_ms") or {}).get("p50")
        for e in doc.get("entries", [])
    )


def pick_anchor(
    current_doc: dict[str, Any], baseline_doc: dict[str, Any], entry_id: str, anchor: str | None
) -> str | None:
    """The anchor ``auto`` uses: ``anchor`` (must be measured in both runs), else the first of
    the current and baseline references and the FP32 entries (torch first) that both runs
    measured and that is not ``entry_id``; None when there is none."""
    if anchor is not None:
        if anchor == entry_id:
            raise ConfigError(
                f"latency anchor {anchor!r} is the judged entry itself: its ratio is always 1",
                hint="set budgets.latency_anchor to another entry of the same run, e.g. torch/fp32",
            )
        return anchor  # _find names the run that lacks it
    fp32 = sorted(
        (e.get("id") for e in current_doc.get("entries", []) if str(e.get("id", "")).endswith("/fp32")),
        key=lambda i: (not str(i).startswith("torch/"), str(i)),
    )
    for candidate in (current_doc.get("reference"), baseline_doc.get("reference"), *fp32):
        both = candidate and _measured(current_doc, candidate) and _measured(baseline_doc, candidate)
        if both and candidate != entry_id:
            return candidate
    return None


def same_machine(current_doc: dict[str, Any], baseline_doc: dict[str, Any]) -> bool:
    """Whether both runs report the same CPU model, usable cores, machine type and host."""

    def key(doc: dict[str, Any]) -> tuple:
        env = doc.get("environment") or {}
        cpu = env.get("cpu") or {}
        return (cpu.get("model"), cpu.get("usable_cores"), env.get("machine"), env.get("host"))

    return key(current_doc) == key(baseline_doc)


def _auto_check(
    current_doc: dict[str, Any],
    baseline_doc: dict[str, Any],
    entry_id: str,
    current: dict[str, Any],
    base: dict[str, Any],
    limit: float,
    anchor: str | None,
    confidence: float,
) -> Check:
    anchor_id = pick_anchor(current_doc, baseline_doc, entry_id, anchor)
    if anchor_id is not None:
        return _ratio_check(current_doc, baseline_doc, current, base, anchor_id, limit, "auto: ")
    if same_machine(current_doc, baseline_doc):
        check = _welch_check(current, base, limit, confidence)
        check.note = f"auto, no anchor entry, same machine: {check.note}"
        return check
    return Check(
        "latency_regression",
        None,
        limit,
        "max",
        "ratio",
        skipped=True,
        note="auto: another machine and no anchor entry in both runs, so a slower machine and a "
        "slower model look alike; bench the reference entry too, or set budgets.latency_anchor",
    )


def _welch_check(current: dict[str, Any], base: dict[str, Any], limit: float, confidence: float) -> Check:
    try:
        m_c, s_c, n_c = float(current["mean"]), float(current["std"]), int(current["runs"])
        m_b, s_b, n_b = float(base["mean"]), float(base["std"]), int(base["runs"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            "latency_method 'ci' needs mean, std and runs in both results",
            hint="re-run the bench with this edgekd, or use latency_method: absolute",
        ) from None
    if n_c < 2 or n_b < 2 or m_b <= 0:
        raise ConfigError("latency_method 'ci' needs at least 2 timed runs on each side")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    se = math.sqrt(s_c**2 / n_c + s_b**2 / n_b)
    change = (m_c - m_b) / m_b
    low, high = (m_c - m_b - z * se) / m_b, (m_c - m_b + z * se) / m_b
    # Fail only when even the optimistic end of the interval is beyond the limit.
    return Check(
        "latency_regression",
        change,
        limit,
        "max",
        "ratio",
        note=f"mean change, {confidence:.0%} CI [{low:+.1%}, {high:+.1%}]",
        decided=low <= limit,
    )
