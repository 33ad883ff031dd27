"""Latency regression against a baseline, three ways, chosen per target.

A latency gate must fail on a real regression and pass on machine noise:

``ci`` (default)
    Welch's interval on the difference of mean latencies, from each run's mean,
    std and run count: the check fails only when the whole 95% interval of the
    relative change lies above the allowed regression. Noise widens the interval,
    so a noisy run cannot fail the build; a clear slowdown still does.
``ratio``
    Each p50 is divided by an anchor entry's p50 measured in the same run (by
    default the bench's reference entry). A machine that is 30% slower today slows
    both alike and the ratio stays put; use it when baseline and current ran on
    different days or machines of one kind.
``absolute``
    The plain p50 ratio. Only for quiet, dedicated benchmark machines.
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
    """A check whose ``current`` is the relative p50 change (0.1 = 10% slower) vs the baseline."""
    current = _latency(_find(current_doc, entry_id, "result"), "result")
    base = _latency(_find(baseline_doc, entry_id, "baseline"), "baseline")
    if method == "absolute":
        change = current["p50"] / base["p50"] - 1.0
        return Check("latency_regression", change, limit, "max", "ratio", note="p50 vs baseline p50")
    if method == "ratio":
        anchor_id = anchor or current_doc.get("reference")
        if not anchor_id:
            raise ConfigError(
                "latency_method 'ratio' needs an anchor entry", hint="set budgets.latency_anchor"
            )
        cur_anchor = _latency(_find(current_doc, anchor_id, "result"), "result")["p50"]
        base_anchor = _latency(_find(baseline_doc, anchor_id, "baseline"), "baseline")["p50"]
        change = (current["p50"] / cur_anchor) / (base["p50"] / base_anchor) - 1.0
        return Check(
            "latency_regression",
            change,
            limit,
            "max",
            "ratio",
            note=f"p50 relative to {anchor_id} in each run",
        )
    return _welch_check(current, base, limit, confidence)


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
