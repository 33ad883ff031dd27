"""``deploy`` over SSH against a real OpenSSH server on 127.0.0.1 (skipped where sshd is missing)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekd.bench.latency import LatencyConfig
from edgekd.deploy.run import DeployOptions, deploy_student
from edgekd.remote.ssh import SshOptions
from edgekd.targets import load_target
from tests.deploy.tiny_student import TinyDeploy, build_tiny_deploy
from tests.remote.conftest import SshServer, start_sshd

FAST = LatencyConfig(warmup_runs=2, warmup_seconds=0.0, min_runs=10, min_seconds=0.0, max_seconds=2.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    running = start_sshd(tmp_path_factory.mktemp("deploy_sshd"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyDeploy:
    return build_tiny_deploy(tmp_path_factory.mktemp("deploy_remote"))


def test_deploy_measures_on_the_device_and_caches_by_host(
    server: SshServer, tiny: TinyDeploy, tmp_path: Path
) -> None:
    ssh = SshOptions(
        known_hosts=server.known_hosts, identity=server.identity, config_file="none", connect_timeout_s=5
    )

    def deploy(out: Path) -> dict:
        opts = DeployOptions(
            out_dir=out,
            cache_dir=tmp_path / "cache",
            host=server.url,
            ssh=ssh,
            remote_python=sys.executable,
            runtimes=["torch", "onnxruntime"],
            latency=FAST,
            threads=1,
        )
        return deploy_student(tiny.student, load_target("x86-cpu-onnxruntime-int8"), tiny.data, opts)

    doc = deploy(tmp_path / "a")
    by_id = {c["id"]: c for c in doc["candidates"]}
    assert "over SSH" in by_id["torch/fp32"]["why"]  # PyTorch does not run on the device
    for cid in ("onnxruntime/fp32", "onnxruntime/int8-u8", "onnxruntime/int8-s8"):
        assert by_id[cid]["status"] == "ok", by_id[cid]["reason"]
    assert doc["choice"]["reference"] == "onnxruntime/fp32"
    assert doc["environment"]["host"] == server.url  # the device's fingerprint, not this machine's
    assert doc["host"] == server.url and doc["cache"]["measure_misses"] == 3

    again = deploy(tmp_path / "b")
    assert again["cache"]["measure_misses"] == 0 and again["cache"]["measure_hits"] == 3
    assert again["choice"]["chosen"] == doc["choice"]["chosen"]
