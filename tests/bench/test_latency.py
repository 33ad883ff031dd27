from __future__ import annotations

import numpy as np
import pytest

from edgekd.bench.latency import LatencyConfig, latency_stats, measure_latency
from edgekd.config import from_dict
from edgekd.errors import ConfigError, ShapeError

MS = 1_000_000  # ns


class FakeClock:
    """A nanosecond clock that moves only when the fake session runs."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class SteppingSession:
    """``run`` advances the clock by ``first_ns`` on the first call, then by ``step_ns``."""

    def __init__(self, clock: FakeClock, step_ns: int, first_ns: int | None = None) -> None:
        self.clock, self.step_ns, self.first_ns = clock, step_ns, first_ns
        self.calls = 0

    def run(self, x: np.ndarray) -> np.ndarray:
        self.clock.now += self.first_ns if (self.calls == 0 and self.first_ns is not None) else self.step_ns
        self.calls += 1
        return x


def _cfg(**kw: float) -> LatencyConfig:
    base = {"warmup_runs": 5, "warmup_seconds": 0.0, "min_runs": 10, "min_seconds": 0.0, "max_seconds": 10.0}
    base.update(kw)
    return LatencyConfig(**base)  # type: ignore[arg-type]


def test_stats_match_numpy() -> None:
    rng = np.random.default_rng(1)
    samples = rng.integers(100_000, 5_000_000, size=257)
    stats = latency_stats(samples, batch_size=4, first_inference_ns=9 * MS)
    ms = samples / 1e6
    for q, got in zip((50, 90, 95, 99), (stats.p50, stats.p90, stats.p95, stats.p99), strict=True):
        assert got == pytest.approx(np.percentile(ms, q))
    assert stats.mean == pytest.approx(ms.mean())
    assert stats.std == pytest.approx(ms.std())
    assert stats.cv == pytest.approx(ms.std() / ms.mean())
    assert (stats.min, stats.max) == (pytest.approx(ms.min()), pytest.approx(ms.max()))
    assert stats.runs == 257
    assert stats.first_inference_ms == 9.0
    assert stats.throughput_per_s == pytest.approx(4 / (ms.mean() / 1e3))
    assert set(stats.to_dict()) >= {"runs", "p50", "p99", "cv", "noisy", "throughput_per_s"}


def test_noisy_rule() -> None:
    steady = latency_stats([MS] * 100)
    assert not steady.noisy and steady.cv == 0
    tail = latency_stats([MS] * 98 + [10 * MS] * 2)  # p99 far above p50
    assert tail.noisy
    spread = latency_stats([MS, 2 * MS] * 50)  # cv = 1/3
    assert spread.noisy


def test_measure_counts_warmup_and_runs() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, step_ns=2 * MS, first_ns=7 * MS)
    stats = measure_latency(session, np.zeros((1, 2, 8), np.float32), _cfg(), clock=clock)
    assert stats.runs == 10
    assert session.calls == 5 + 10  # 5 warm-up calls (the first included) + 10 timed
    assert stats.p50 == stats.p99 == 2.0
    assert stats.first_inference_ms == 7.0
    assert stats.throughput_per_s == pytest.approx(500.0)


def test_measure_runs_until_min_seconds() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, step_ns=MS)
    stats = measure_latency(session, np.zeros((1, 3), np.float32), _cfg(min_seconds=0.05), clock=clock)
    assert stats.runs == 50  # 10 runs are not enough: 50 x 1 ms reach 0.05 s


def test_measure_warmup_seconds() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, step_ns=MS)
    measure_latency(
        session, np.zeros((1, 3), np.float32), _cfg(warmup_runs=1, warmup_seconds=0.02), clock=clock
    )
    assert session.calls == 20 + 10


def test_measure_stops_at_max_seconds() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, step_ns=10 * MS)
    cfg = _cfg(warmup_runs=1, min_runs=1000, max_seconds=0.1)
    stats = measure_latency(session, np.zeros((1, 3), np.float32), cfg, clock=clock)
    assert stats.runs == 10


def test_measure_batch_mismatch() -> None:
    with pytest.raises(ShapeError, match="batch 2"):
        measure_latency(SteppingSession(FakeClock(), MS), np.zeros((1, 3), np.float32), _cfg(batch_size=2))


def test_config_validation() -> None:
    cfg = from_dict(LatencyConfig, {"min_runs": 50, "batch_size": 8})
    assert (cfg.min_runs, cfg.batch_size, cfg.warmup_runs) == (50, 8, 20)
    with pytest.raises(ConfigError, match="min_runs"):
        from_dict(LatencyConfig, {"min_runs": 0})
    with pytest.raises(ConfigError, match="max_seconds"):
        from_dict(LatencyConfig, {"min_seconds": 5.0, "max_seconds": 1.0})


class RuntimeTimedSession(SteppingSession):
    """Says the runtime spent 0.6 of each 1 ms call; reading that costs 5 ms of clock."""

    def runtime_ms(self) -> float:
        self.clock.now += 5 * MS  # outside the timed interval: must not reach the samples
        return 0.6


def test_runtime_timing_is_collected_outside_the_timed_calls() -> None:
    clock = FakeClock()
    stats = measure_latency(RuntimeTimedSession(clock, MS), np.zeros((1, 4)), _cfg(), clock=clock)
    assert stats.p50 == pytest.approx(1.0) and stats.max == pytest.approx(1.0)
    assert stats.runtime_p50 == pytest.approx(0.6)
    plain = measure_latency(SteppingSession(FakeClock(), MS), np.zeros((1, 4)), _cfg(), clock=FakeClock())
    assert plain.runtime_p50 is None


def test_openvino_reports_its_own_timing_below_the_call_latency(tiny) -> None:
    from edgekd.backends.base import SessionOptions, session_from_artifact

    session = session_from_artifact("openvino", tiny.xml, SessionOptions(threads=1))
    stats = measure_latency(session, tiny.frames[:1], _cfg(min_runs=50))
    # The runtime's own time excludes the Python call around it, so it cannot exceed it.
    assert stats.runtime_p50 is not None and 0 < stats.runtime_p50 <= stats.p50
