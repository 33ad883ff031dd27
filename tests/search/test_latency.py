"""Search latency: real builds (ONNX, ONNX Runtime INT8) and real bench measurements, cached.

Also holds helpers for the search's end-to-end tests: :func:`device_sensitive_pair` and
:func:`device_targets` give two candidates whose latency order is reversed between two
targets (PyTorch eager and ONNX Runtime on this CPU), measured, not assumed.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.latency import LatencyConfig
from edgekd.deploy.cache import cache_key
from edgekd.errors import ConfigError, ShapeError
from edgekd.models.complexity import count_macs, count_params
from edgekd.remote.ssh import SshOptions
from edgekd.search.latency import (
    LATENCY_SCHEMA,
    LatencyResult,
    latency_budget,
    measure_latencies,
    measurement_parts,
    target_spec,
)
from edgekd.search.space import Candidate
from edgekd.targets import TargetProfile, load_target
from tests.remote.conftest import SshServer, start_sshd

FAST = LatencyConfig(warmup_runs=3, warmup_seconds=0.0, min_runs=20, min_seconds=0.0, max_seconds=2.0)
NUM_CLASSES = 4

SMALL = Candidate.of("edgekd:mobilenet1d", {"width_mult": 0.25, "depth": 0})
LARGER = Candidate.of("edgekd:mobilenet1d", {"width_mult": 1.0, "depth": 2, "kernel_size": 7})
BROKEN = Candidate.of("edgekd:mobilenet1d", {"width_mult": 0.5, "no_such_knob": 3})


def make_target(
    runtime: str = "onnxruntime", precision: str = "int8", length: int = 128, **fields: object
) -> TargetProfile:
    """A local CPU target for frames [2, length], one thread (steadier on a shared machine)."""
    data = {
        "name": f"test-{runtime}-{precision}",
        "runtime": runtime,
        "precision": precision,
        "threads": 1,
        "input_shape": [1, 2, length],
        **fields,
    }
    target = TargetProfile.from_dict(data)
    target.validate()
    return target


def frames_for(length: int = 128, n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 2, length)).astype(np.float32)


def device_sensitive_pair() -> tuple[Candidate, Candidate]:
    """(deep-narrow, shallow-wide): on [2, 512] frames PyTorch eager pays a fixed cost per
    module, so the 20-odd-layer narrow MobileNet is ~3x slower there than the 3-conv wide CNN,
    while ONNX Runtime fuses the small layers and runs the narrow one ~3x faster (measured on a
    2-core x86 machine: torch 1.9 vs 0.54 ms, onnxruntime 0.074 vs 0.20 ms p50)."""
    return (
        Candidate.of("edgekd:mobilenet1d", {"width_mult": 0.25, "depth": 6}),
        Candidate.of("edgekd:cnn1d_small", {"width": 48}),
    )


def device_targets(length: int = 512, **fields: object) -> tuple[TargetProfile, TargetProfile]:
    """(PyTorch eager FP32, ONNX Runtime FP32) local targets, one thread: the order of
    :func:`device_sensitive_pair`'s latencies is reversed between them. ``fields`` (e.g.
    ``budgets``) go to both."""
    return (
        make_target("torch", "fp32", length, name="test-torch-eager", **fields),
        make_target("onnxruntime", "fp32", length, name="test-onnxruntime", **fields),
    )


def _measure(candidates, target, tmp: Path, cache: Path | None, **kwargs) -> dict[str, LatencyResult]:
    return measure_latencies(
        candidates,
        target=target,
        frames=kwargs.pop("frames", frames_for(target.input_shape[-1])),
        num_classes=NUM_CLASSES,
        work_dir=tmp / "work",
        cache_dir=cache,
        latency=FAST,
        **kwargs,
    )


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, LatencyResult], list[str]]:
    """One local INT8 measurement of SMALL, LARGER and BROKEN: (cache dir, results, log lines)."""
    root = tmp_path_factory.mktemp("latency")
    lines: list[str] = []
    done: list[tuple[int, int]] = []
    results = _measure(
        [SMALL, LARGER, BROKEN],
        make_target(),
        root,
        root / "cache",
        log=lines.append,
        progress=lambda i, n: done.append((i, n)),
    )
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert not (root / "work").exists() or not any((root / "work").iterdir())  # builds removed
    return root / "cache", results, lines


def test_measures_each_candidate_in_the_targets_runtime_and_precision(measured) -> None:
    _cache, results, lines = measured
    assert list(results) == [SMALL.key(), LARGER.key(), BROKEN.key()]
    for cand in (SMALL, LARGER):
        res = results[cand.key()]
        assert res.status == "ok" and res.reason is None and not res.cached, res.reason
        assert res.key == cand.key()
        assert 0 < res.p50_ms <= res.p90_ms < 1000
        assert res.precision == "int8"  # read back from ONNX Runtime: QDQ nodes executed as INT8
        model = cand.build(NUM_CLASSES, 2)
        assert res.params == count_params(model) and res.macs == count_macs(model, (2, 128))
        assert res.size_bytes > 0
        assert res.to_dict()["p50_ms"] == res.p50_ms and res.ms("p90") == res.p90_ms
    small, larger = results[SMALL.key()], results[LARGER.key()]
    assert larger.params > 4 * small.params and larger.macs > 4 * small.macs
    assert larger.size_bytes > small.size_bytes  # the INT8 file grows with the weights
    assert any(SMALL.label() in line and "p50" in line for line in lines)


def test_a_candidate_that_fails_to_build_is_a_failed_result_and_the_rest_go_on(measured) -> None:
    _cache, results, lines = measured
    broken = results[BROKEN.key()]
    assert broken.status == "failed" and broken.p50_ms is None and broken.params is None
    assert "no_such_knob" in broken.reason and "\n" not in broken.reason
    assert any("failed" in line and BROKEN.label() in line for line in lines)


def test_a_second_call_builds_and_measures_nothing(measured, tmp_path: Path) -> None:
    cache, first, _lines = measured
    lines: list[str] = []
    again = _measure([SMALL, LARGER], make_target(), tmp_path, cache, log=lines.append)
    for cand in (SMALL, LARGER):
        assert again[cand.key()].cached
        # Equal to the last bit: the figure was read back, not measured again.
        assert again[cand.key()].p50_ms == first[cand.key()].p50_ms
        assert again[cand.key()].p90_ms == first[cand.key()].p90_ms
    assert not (tmp_path / "work").exists()  # nothing was built
    assert len(lines) == 2 and all("cached" in line for line in lines)


def test_budgets_and_names_do_not_change_a_measurement_but_the_runtime_settings_do(measured) -> None:
    cache, _first, _lines = measured
    renamed = make_target(name="another-name", description="x", budgets={"max_p50_ms": 3.0})
    frames = frames_for()
    again = _measure([SMALL], renamed, cache.parent, cache, frames=frames)
    assert again[SMALL.key()].cached

    def key(target: TargetProfile, **kwargs) -> str:
        spec = target_spec(target, "local")
        from edgekd.backends.profile_options import options_for_entry

        threads = kwargs.pop("threads", target.threads)
        parts = measurement_parts(
            SMALL,
            target=target,
            spec=spec,
            options=options_for_entry(target, spec.backend, spec.session_precision, threads),
            threads=threads,
            latency=kwargs.pop("latency", FAST),
            frame_shape=kwargs.pop("frame_shape", (2, 128)),
            num_classes=kwargs.pop("num_classes", NUM_CLASSES),
            host=kwargs.pop("host", "local"),
        )
        assert parts["architecture"]["key"] == SMALL.key()
        return cache_key(parts)

    base = key(make_target())
    assert key(renamed) == base
    changed = [
        key(make_target(threads=2), threads=2),
        key(make_target(precision="fp32")),
        key(make_target(onnxruntime={"graph_optimization_level": "basic"})),
        key(make_target(), latency=LatencyConfig(min_runs=50)),
        key(make_target(), num_classes=5),
        key(make_target(length=256), frame_shape=(2, 256)),
        key(make_target(), host="ssh://edge@device.example:22"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def _records(cache: Path) -> list[Path]:
    return sorted((cache / "latency").glob("*.json"))


@pytest.mark.parametrize("damage", ["not json", "wrong key", "p50 above p90", "NaN time", "other schema"])
def test_a_corrupt_cache_record_is_measured_again_and_replaced(measured, tmp_path: Path, damage: str) -> None:
    source, _first, _lines = measured
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    # The record of SMALL: the one whose result names its key.
    path = next(p for p in _records(cache) if json.loads(p.read_text())["result"]["key"] == SMALL.key())
    record = json.loads(path.read_text())
    if damage == "not json":
        path.write_text("{ half a record")
    else:
        if damage == "wrong key":
            record["key"] = "0" * 64
        elif damage == "p50 above p90":
            record["result"]["p50_ms"] = record["result"]["p90_ms"] * 2
        elif damage == "NaN time":
            record["result"]["p50_ms"] = math.nan
        else:
            record["schema"] = "edgekd.search-latency/0"
        path.write_text(json.dumps(record))
    again = _measure([SMALL, LARGER], make_target(), tmp_path, cache)
    assert not again[SMALL.key()].cached and again[SMALL.key()].status == "ok"
    assert again[LARGER.key()].cached  # the sound record next to it is still used
    repaired = json.loads(path.read_text())
    assert repaired["schema"] == LATENCY_SCHEMA and repaired["result"]["p50_ms"] == again[SMALL.key()].p50_ms


def test_failed_results_are_not_cached(measured) -> None:
    cache, _first, _lines = measured
    stored = [json.loads(p.read_text())["result"]["key"] for p in _records(cache)]
    assert sorted(stored) == sorted([SMALL.key(), LARGER.key()])


def test_no_cache_dir_measures_every_time(tmp_path: Path) -> None:
    first = _measure([SMALL], make_target(precision="fp32"), tmp_path, None)
    again = _measure([SMALL], make_target(precision="fp32"), tmp_path, None)
    assert not first[SMALL.key()].cached and not again[SMALL.key()].cached
    assert first[SMALL.key()].precision == "fp32"


def test_latency_budget_resolution() -> None:
    plain = make_target()
    p90 = make_target(budgets={"max_p90_ms": 2.0})
    both = make_target(budgets={"max_p50_ms": 1.0, "max_p90_ms": 2.0})
    p50 = make_target(budgets={"max_p50_ms": 1.5})
    assert latency_budget(plain, None) == (None, "p50", "none")
    assert latency_budget(p90, None) == (2.0, "p90", "target max_p90_ms")
    assert latency_budget(both, None) == (2.0, "p90", "target max_p90_ms")
    assert latency_budget(p50, None) == (1.5, "p50", "target max_p50_ms")
    assert latency_budget(both, 0.5) == (0.5, "p50", "--latency-budget-ms")
    assert latency_budget(load_target("x86-cpu-onnxruntime-int8"), None) == (2.0, "p90", "target max_p90_ms")
    for bad in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="--latency-budget-ms must be a positive"):
            latency_budget(plain, bad)


def test_bad_inputs_are_refused_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match=r"do not fit target .*input_shape \[1, 2, 128\]"):
        _measure([SMALL], make_target(), tmp_path, None, frames=frames_for(256))
    with pytest.raises(ShapeError, match="finite"):
        bad = frames_for()
        bad[0, 0, 0] = np.nan
        _measure([SMALL], make_target(), tmp_path, None, frames=bad)
    with pytest.raises(ConfigError, match="over SSH"):  # the device runner does not open PyTorch
        _measure([SMALL], make_target("torch", "fp32"), tmp_path, None, host="ssh://edge@device.example")
    tensorrt = TargetProfile.from_dict(
        {
            "name": "trt",
            "runtime": "tensorrt",
            "precision": "fp16",
            "device": "CUDA",
            "input_shape": [1, 2, 128],
        }
    )
    with pytest.raises(ConfigError, match="cannot measure tensorrt/fp16 latency"):
        _measure([SMALL], tensorrt, tmp_path, None)
    assert not (tmp_path / "work").exists()


def test_the_device_matters_latency_order_reverses_between_targets(tmp_path: Path) -> None:
    """The figures the search compares are the target's: the same two candidates are ordered
    one way in PyTorch eager and the other way in ONNX Runtime."""
    narrow, wide = device_sensitive_pair()
    eager, ort = device_targets()
    on_eager = _measure([narrow, wide], eager, tmp_path, tmp_path / "cache")
    on_ort = _measure([narrow, wide], ort, tmp_path, tmp_path / "cache")
    for res in (*on_eager.values(), *on_ort.values()):
        assert res.status == "ok", res.reason
    assert not any(r.cached for r in on_ort.values())  # another target: measured, not reused
    eager_ratio = on_eager[narrow.key()].p50_ms / on_eager[wide.key()].p50_ms
    ort_ratio = on_ort[narrow.key()].p50_ms / on_ort[wide.key()].p50_ms
    assert eager_ratio > 1.5 and ort_ratio < 1 / 1.5, (eager_ratio, ort_ratio)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    running = start_sshd(tmp_path_factory.mktemp("search_sshd"))
    try:
        yield running
    finally:
        running.stop()


def test_measures_on_a_device_over_ssh_and_caches_by_host(server: SshServer, tmp_path: Path) -> None:
    ssh = SshOptions(
        known_hosts=server.known_hosts, identity=server.identity, config_file="none", connect_timeout_s=5
    )
    target = make_target(precision="fp32")
    cache = tmp_path / "cache"
    remote = dict(host=server.url, ssh=ssh, remote_python=sys.executable)
    first = _measure([SMALL, LARGER], target, tmp_path, cache, **remote)
    for res in first.values():
        assert res.status == "ok" and not res.cached, res.reason
        assert res.precision == "fp32" and res.p50_ms <= res.p90_ms
    again = _measure([SMALL, LARGER], target, tmp_path, cache, **remote)
    assert all(r.cached for r in again.values())
    assert again[SMALL.key()].p50_ms == first[SMALL.key()].p50_ms
    # This machine is another device: its figures are measured, not taken from the SSH host's.
    local = _measure([SMALL], target, tmp_path, cache)
    assert not local[SMALL.key()].cached
    hosts = {json.loads(p.read_text())["parts"]["machine"].get("host") for p in _records(cache)}
    assert hosts == {server.url, None}
