"""Remote bench against a real OpenSSH server on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchCandidate, BenchConfig, run_bench
from edgekd.bench.schema import validate_bench
from edgekd.data.dataset import ArrayDataset
from edgekd.remote.executor import run_remote_bench
from edgekd.remote.ssh import HostKeyError, RemoteError, SshOptions
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts
from tests.remote.conftest import SshServer, keygen

FAST = LatencyConfig(warmup_runs=2, warmup_seconds=0.0, min_runs=10, min_seconds=0.0, max_seconds=2.0)


def _dataset(tiny: TinyArtifacts) -> ArrayDataset:
    return ArrayDataset(
        x=tiny.frames,
        y=np.arange(len(tiny.frames)) % NUM_CLASSES,
        class_names=["A", "B", "C", "D"],
        snr=np.tile([-4, 8], len(tiny.frames) // 2),
    )


def _ssh(server: SshServer, known_hosts: Path | None = None) -> SshOptions:
    return SshOptions(
        known_hosts=known_hosts or server.known_hosts,
        identity=server.identity,
        config_file="none",  # the test must not depend on the user's ~/.ssh/config
        connect_timeout_s=5,
    )


@pytest.fixture
def local_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Redirect tempfile so the test can see that the local staging folder is gone."""
    folder = tmp_path / "local_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _bench(server: SshServer, tiny: TinyArtifacts, out: Path, device_tmp: Path, **kwargs):
    cfg = BenchConfig(latency=FAST, threads=1, roofline=kwargs.pop("roofline", False))
    candidates = kwargs.pop(
        "candidates",
        [
            BenchCandidate("onnxruntime", "fp32", tiny.onnx, params=400, macs=30_000),
            BenchCandidate("openvino", "fp32", tiny.xml, macs=30_000),
            BenchCandidate("torch", "fp32", out / "student.pt"),
        ],
    )
    return run_remote_bench(
        server.url,
        candidates,
        _dataset(tiny),
        cfg,
        name="remote",
        out_dir=out,
        ssh=kwargs.pop("ssh", _ssh(server)),
        remote_python=kwargs.pop("remote_python", sys.executable),
        remote_tmp=str(device_tmp),
        **kwargs,
    )


def test_remote_bench_is_a_bench_document(
    sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path, local_tmp: Path
) -> None:
    device_tmp = tmp_path / "device_tmp"
    device_tmp.mkdir()
    doc = _bench(sshd, tiny, tmp_path, device_tmp, roofline=True)
    validate_bench(doc)
    ort, ov, torch = doc["entries"]
    assert ort["status"] == "ok" and ov["status"] == "ok", (ort["reason"], ov["reason"])
    assert torch["status"] == "skipped" and "remote device" in torch["reason"]
    assert ort["latency_ms"]["runs"] >= 10 and ort["latency_ms"]["p50"] > 0
    assert ort["executed_precision"] == "fp32" and ov["executed_precision"] == "fp32"
    assert ort["agreement_with_reference"] == 1.0  # the reference is onnxruntime/fp32
    # The device's fingerprint, with its runtime versions, and its GEMM peak.
    assert doc["environment"]["host"] == sshd.url
    assert doc["environment"]["libraries"]["onnxruntime"]
    assert doc["environment"]["cpu"]["logical_cores"] >= 1
    assert doc["roofline"]["peak_gflops"] > 0
    assert (
        0 < ort["fraction_of_peak"] == pytest.approx(ort["achieved_gflops"] / doc["roofline"]["peak_gflops"])
    )
    # Same evaluator as a local bench: the remote accuracy equals the local one, frame for frame.
    local = run_bench(
        [BenchCandidate("onnxruntime", "fp32", tiny.onnx)],
        _dataset(tiny),
        BenchConfig(latency=FAST, threads=1, roofline=False),
        name="local",
        out_dir=tmp_path,
        reference_id="onnxruntime/fp32",
    )
    assert local["entries"][0]["accuracy"] == ort["accuracy"]
    # Nothing left behind on either side.
    assert list(device_tmp.iterdir()) == []
    assert list(local_tmp.iterdir()) == []


def test_changed_host_key_is_refused(sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path) -> None:
    impostor = keygen(tmp_path / "impostor").with_suffix(".pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {impostor[0]} {impostor[1]}\n")
    device_tmp = tmp_path / "device_tmp"
    device_tmp.mkdir()
    with pytest.raises(HostKeyError) as info:
        _bench(sshd, tiny, tmp_path, device_tmp, ssh=_ssh(sshd, known))
    line = info.value.one_line()
    assert "CHANGED" in line and str(known) in line and "\n" not in line
    assert list(device_tmp.iterdir()) == []


def test_unknown_host_key_is_refused(sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="unknown host keys are refused"):
        _bench(sshd, tiny, tmp_path, tmp_path, ssh=_ssh(sshd, empty))


def test_stopped_server_is_a_clear_error(
    fresh_sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path, local_tmp: Path
) -> None:
    fresh_sshd.stop()
    with pytest.raises(RemoteError) as info:
        _bench(fresh_sshd, tiny, tmp_path, tmp_path)
    assert "cannot reach" in info.value.one_line() and "Connection refused" in info.value.one_line()
    assert list(local_tmp.iterdir()) == []


def test_dropped_connection_is_a_clear_error_and_leaves_nothing(
    sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path, local_tmp: Path
) -> None:
    # Instead of python, the device runs a script that kills the sshd process serving this
    # very connection: the link drops mid-bench, after the files were copied. OpenSSH 9.8+
    # serves a connection from a process named sshd-session (before: sshd). The walk up the
    # parents stops at pid 1 with its own exit code instead of looping when neither is found;
    # the parent pid is read after the ")" that ends the command name, which may hold spaces.
    killer = tmp_path / "drop_connection.sh"
    killer.write_text(
        "#!/bin/sh\n"
        "p=$PPID\n"
        'while [ "$p" -gt 1 ]; do\n'
        '  case "$(cat /proc/$p/comm)" in sshd|sshd-session) kill -9 "$p"; sleep 5; exit 0;; esac\n'
        "  p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)\n"
        "done\n"
        'echo "drop_connection.sh: no sshd or sshd-session process above $$" >&2\n'
        "exit 97\n"
    )
    killer.chmod(0o755)
    device_tmp = tmp_path / "device_tmp"
    device_tmp.mkdir()
    with pytest.raises(RemoteError) as info:
        _bench(sshd, tiny, tmp_path, device_tmp, remote_python=str(killer))
    line = info.value.one_line()
    assert "dropped" in line and "\n" not in line
    assert list(device_tmp.iterdir()) == []  # removed over a new connection
    assert list(local_tmp.iterdir()) == []


def test_missing_python_on_the_device(sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path) -> None:
    device_tmp = tmp_path / "device_tmp"
    device_tmp.mkdir()
    with pytest.raises(RemoteError, match="command not found"):
        _bench(sshd, tiny, tmp_path, device_tmp, remote_python="no-such-python3")
    assert list(device_tmp.iterdir()) == []


def test_a_model_that_does_not_fit_fails_the_remote_bench_unless_keep_going(
    sshd: SshServer, tiny: TinyArtifacts, tmp_path: Path
) -> None:
    """The device refuses the model before timing it; the host names the file and both shapes."""
    from edgekd.bench.runner import BenchFailed
    from tests.bench.onnx_makers import linear_classifier

    device_tmp = tmp_path / "device_tmp"
    device_tmp.mkdir()
    bad = linear_classifier(tmp_path / "frames_3x32.onnx", frame=(3, 32))
    candidates = [
        BenchCandidate("onnxruntime", "fp32", tiny.onnx),
        BenchCandidate("openvino", "fp32", bad),
    ]
    with pytest.raises(BenchFailed) as info:
        _bench(sshd, tiny, tmp_path, device_tmp, candidates=candidates)
    line = info.value.one_line()
    assert "1 of 2" in line and "frames_3x32.onnx" in line and "[?, 3, 32]" in line and "[1, 2, 128]" in line
    assert "on the device" in line
    doc = run_remote_bench(
        sshd.url,
        candidates,
        _dataset(tiny),
        BenchConfig(latency=FAST, threads=1, roofline=False, keep_going=True),
        name="remote",
        out_dir=tmp_path,
        ssh=_ssh(sshd),
        remote_python=sys.executable,
        remote_tmp=str(device_tmp),
    )
    validate_bench(doc)
    ok, failed = doc["entries"]
    assert ok["status"] == "ok" and ok["input_shape"] == [None, 2, 128]
    assert failed["status"] == "failed" and "frames_3x32.onnx" in failed["reason"]
    assert list(device_tmp.iterdir()) == []
