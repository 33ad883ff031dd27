"""The thread policy (edgekd.runtime.threads): counts from usable cores, OMP_* honoured, no spinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekd.runtime.threads import (
    POLICY_ENV,
    POLICY_MARK_ENV,
    WAIT_DEFAULT,
    apply_thread_policy,
    default_threads,
    limit_torch_threads,
    physical_cores,
    usable_cores,
    usable_physical_cores,
    user_threads,
)

ROOT = Path(__file__).resolve().parents[2]
AFFINITY = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
CORES = usable_physical_cores()  # a thread per physical core this process may use
needs_two_cores = pytest.mark.skipif(len(AFFINITY) < 2, reason="needs 2 usable cores to see a count drop")

# In a fresh interpreter: optionally pin to one CPU, then run the real `edgekd` entry (main())
# with one extra command that imports torch, as a command body does, and reports what it sees.
# OMP_DISPLAY_ENV makes libgomp print the settings it read when torch loaded it, among them
# GOMP_SPINCOUNT: how long a thread spins at a barrier before it sleeps.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    if {pin!r} is not None:
        os.sched_setaffinity(0, {{{pin!r}}})
    from edgekd.cli import main as entry

    @entry.cli.command("probe-threads")
    def probe():
        import torch
        print(json.dumps({{"torch": torch.get_num_threads(),
                           "omp": os.environ.get("OMP_NUM_THREADS"),
                           "wait": os.environ.get("OMP_WAIT_POLICY"),
                           "spin": os.environ.get("GOMP_SPINCOUNT")}}))

    entry.main(["probe-threads"])
    """
)


def clean_env() -> dict[str, str]:
    """This environment less the variables the policy reads or writes (conftest sets some)."""
    prefixes = ("OMP_", "GOMP_", "EDGEKD_THREAD", "EDGEKD_POLICY")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def run_probe(pin: int | None = None, **env_vars: str) -> tuple[dict, str]:
    """(what the probe command saw, libgomp's displayed environment) in a clean interpreter."""
    env = clean_env()
    env.update(PYTHONPATH=str(ROOT), OMP_DISPLAY_ENV="VERBOSE", **env_vars)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(pin=pin)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def displayed_spin_count(waiting: dict[str, str]) -> str:
    """The GOMP_SPINCOUNT line libgomp displays for these wait variables."""
    if "GOMP_SPINCOUNT" in waiting:
        count = waiting["GOMP_SPINCOUNT"]
    else:
        count = {"PASSIVE": "0", "ACTIVE": "30000000000"}.get(waiting.get("OMP_WAIT_POLICY", ""), "300000")
    return f"GOMP_SPINCOUNT = '{count}'"


def quota_root(tmp_path: Path, cores: int) -> Path:
    """A fake cgroup v2 root whose cpu.max allows ``cores`` cores."""
    (tmp_path / "cpu.max").write_text(f"{cores * 100000} 100000\n")
    return tmp_path


@pytest.mark.parametrize(
    ("value", "expected"), [("3", 3), ("4,2", 4), (" 1 ", 1), ("0", None), ("many", None), ("", None)]
)
def test_user_threads_reads_omp_num_threads(value: str, expected: int | None) -> None:
    assert user_threads({"OMP_NUM_THREADS": value}) == expected
    assert user_threads({}) is None


def fake_topology(tmp_path: Path, cores: dict[int, tuple[int, int]]) -> Path:
    """A fake /sys/devices/system/cpu: logical CPU -> (package, core)."""
    for cpu, (package, core) in cores.items():
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return tmp_path


def test_hyperthreads_of_one_core_count_once(tmp_path: Path) -> None:
    root = fake_topology(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1), 4: (1, 0)})
    assert physical_cores({0, 1, 2, 3, 4}, root) == 3  # two cores with two threads, one more socket
    assert physical_cores({0, 2}, root) == 1
    assert physical_cores({0, 9}, root) == 2  # unreadable topology: one per CPU
    assert 1 <= CORES <= len(AFFINITY)


def test_omp_num_threads_wins_over_the_usable_cores(tmp_path: Path) -> None:
    root = quota_root(tmp_path, 1)
    assert default_threads({"OMP_NUM_THREADS": "3"}, root) == 3
    assert default_threads({}, root) == 1
    assert default_threads({"OMP_NUM_THREADS": "junk"}, root) == 1  # ignored, as libgomp does


def test_a_cgroup_quota_caps_the_count_set_before_torch(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a fresh `edgekd` process
    env: dict[str, str] = {}
    policy = apply_thread_policy(env, quota_root(tmp_path, 1))
    assert env == {"OMP_NUM_THREADS": "1", POLICY_MARK_ENV: "1", **WAIT_DEFAULT}
    assert (policy.threads, policy.waiting, policy.before_torch) == (1, WAIT_DEFAULT, True)
    assert user_threads(env) is None  # the policy's own count is not taken for the user's
    assert usable_cores(tmp_path / "no-cgroup") == len(AFFINITY)


@pytest.mark.parametrize("waiting", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "5"}])
def test_values_the_user_set_stay(monkeypatch, tmp_path: Path, waiting: dict[str, str]) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    env = {"OMP_NUM_THREADS": "3", **waiting}
    policy = apply_thread_policy(env, quota_root(tmp_path, 1))
    assert env == {"OMP_NUM_THREADS": "3", **waiting}
    assert (policy.threads, policy.waiting) == (3, waiting)
    assert user_threads(env) == 3


def test_policy_off_leaves_everything_alone(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    env = {POLICY_ENV: "off"}
    policy = apply_thread_policy(env, quota_root(tmp_path, 1))
    assert env == {POLICY_ENV: "off"} and not policy.enabled and policy.threads is None


def test_after_torch_is_imported_only_its_count_drops(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        env: dict[str, str] = {}
        policy = apply_thread_policy(env, quota_root(tmp_path, 2))
        assert env == {}  # too late for libgomp: the environment is left as it was
        assert not policy.before_torch and policy.threads == 2 == torch.get_num_threads()
        torch.set_num_threads(1)  # a lower count someone chose stays
        assert apply_thread_policy(env, quota_root(tmp_path, 2)).threads == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_limit_torch_threads_only_lowers() -> None:
    class FakeTorch:
        threads = 8

        def get_num_threads(self) -> int:
            return self.threads

        def set_num_threads(self, n: int) -> None:
            self.threads = n

    fake = FakeTorch()
    assert limit_torch_threads(fake, 2) == 2
    assert limit_torch_threads(fake, 4) == 2


def expected(torch: int, omp: str | None, waiting: dict[str, str]) -> dict:
    return {
        "torch": torch,
        "omp": omp,
        "wait": waiting.get("OMP_WAIT_POLICY"),
        "spin": waiting.get("GOMP_SPINCOUNT"),
    }


def test_the_entry_point_sets_the_environment_before_torch_loads_openmp() -> None:
    seen, gomp = run_probe()
    assert seen == expected(CORES, str(CORES), WAIT_DEFAULT)
    assert displayed_spin_count(WAIT_DEFAULT) in gomp  # libgomp read it when torch loaded it
    assert displayed_spin_count({}) not in gomp


def test_the_entry_point_keeps_the_users_openmp_settings() -> None:
    seen, gomp = run_probe(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    assert seen == expected(1, "1", {"OMP_WAIT_POLICY": "PASSIVE"})
    assert displayed_spin_count({"OMP_WAIT_POLICY": "PASSIVE"}) in gomp


def test_policy_off_gives_the_old_behaviour() -> None:
    seen, gomp = run_probe(**{POLICY_ENV: "off"})
    assert seen == expected(seen["torch"], None, {})  # torch's own count
    assert displayed_spin_count({}) in gomp  # libgomp's default


@needs_two_cores
def test_the_entry_point_follows_the_cpu_affinity() -> None:
    seen, _ = run_probe(pin=AFFINITY[0])
    assert seen == expected(1, "1", WAIT_DEFAULT)


def test_onnxruntime_sessions_default_to_the_policys_count(monkeypatch) -> None:
    ort = pytest.importorskip("onnxruntime")
    from edgekd.runtime.onnxruntime_open import OrtSettings, session_options

    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # ORT itself ignores it: edgekd passes it on
    monkeypatch.delenv(POLICY_ENV, raising=False)
    assert session_options(ort, OrtSettings()).intra_op_num_threads == 3
    assert session_options(ort, OrtSettings(intra_op_threads=1)).intra_op_num_threads == 1  # explicit wins
    monkeypatch.setenv(POLICY_ENV, "off")
    assert session_options(ort, OrtSettings()).intra_op_num_threads == 0  # ORT's own default


@needs_two_cores
def test_onnxruntime_follows_the_cpu_affinity() -> None:
    pytest.importorskip("onnxruntime")
    # ORT's own default (1.32) starts a worker thread per core of the machine even when pinned
    # to one core; edgekd's count is the one core.
    code = textwrap.dedent(
        f"""
        import os
        os.sched_setaffinity(0, {{{AFFINITY[0]}}})
        import onnx
        import onnxruntime  # its import starts a thread of its own: count after it
        from onnx import TensorProto, helper
        from edgekd.runtime.onnxruntime_open import open_ort
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "xy"]
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", io[:1], io[1:])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        before = len(os.listdir("/proc/self/task"))
        session = open_ort(model)
        print(len(os.listdir("/proc/self/task")) - before)
        """
    )
    env = clean_env()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) == 0  # one intra-op thread: the caller's own


@needs_two_cores
def test_openvino_cpu_takes_the_users_omp_num_threads(monkeypatch) -> None:
    ov = pytest.importorskip("openvino")
    import numpy as np
    from openvino import opset13 as ops

    from edgekd.runtime.openvino_open import OvSettings, compile_ov

    param = ops.parameter([1, 4], np.float32)
    model = ov.Model([ops.relu(param)], [param])

    def threads_of(config: dict | None = None) -> int:
        compiled = compile_ov(model, OvSettings("CPU", config or {}))
        return int(compiled.get_property("INFERENCE_NUM_THREADS"))

    monkeypatch.delenv(POLICY_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plugin_default = threads_of()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_of() == 1
    assert threads_of({"INFERENCE_NUM_THREADS": 2}) == 2  # an explicit count wins
    monkeypatch.setenv(POLICY_ENV, "off")
    assert threads_of() == plugin_default
