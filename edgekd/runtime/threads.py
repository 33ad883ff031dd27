"""How many threads edgekd's runtimes use, and how they wait: good manners on a shared CPU.

torch's OpenMP threads meet at a barrier after every parallel operation. When another
process holds one of the cores, the thread the OS parked holds up the others, which by
libgomp's default spin (300,000 turns) before they sleep, burning the slice the parked one
needed. `edgekd demo` beside one busy process took 7.9x its time alone. The policy, in one
place:

* **Count.** A runtime's default thread count is :func:`default_threads`: ``OMP_NUM_THREADS``
  when the user set it, else :func:`usable_physical_cores` (the physical cores of the
  process's CPU affinity, capped by a cgroup CPU quota), never ``os.cpu_count()``: torch's
  threads and ONNX Runtime's intra-op pool (whose own default ignores the affinity) get it;
  OpenVINO's CPU plugin, which follows the affinity, gets only a user's ``OMP_NUM_THREADS``.
  An explicit count (``--threads``, ``train.num_threads``) wins for the runtime it sets.
* **Follow the load.** While edgekd trains with its default count, a
  :class:`ThreadGovernor` lowers torch's count to the cores other processes leave free, and
  raises it again when they stop: one thread beside one busy process does the work of two
  without waiting at barriers (a teacher epoch: 6.6 s alone, 47-62 s beside a busy loop
  with two threads, 10.6-11.1 s governed).
* **Waiting.** ``GOMP_SPINCOUNT=10000`` (:data:`WAIT_DEFAULT`) unless the user set
  ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``: a shorter spin for the torch work the governor
  does not see (inference passes, export checks). It measured the same as libgomp's default
  on a quiet machine; ``OMP_WAIT_POLICY=PASSIVE`` (no spin) was rejected: a teacher epoch
  +45% and the torch bench latency of the demo's student 5x (0.11 -> 0.65 ms) on a quiet
  machine. libgomp reads these once, when torch loads it, so :func:`apply_thread_policy`
  must run before ``import torch``; after that only the count can change.
* ``EDGEKD_THREAD_POLICY=off`` leaves the environment and torch's count as they are (the
  old behaviour, for comparisons: ``benchmarks/shared_machine.py``).

Standard library only, no import of the rest of edgekd: this runs before anything heavy
is imported (``edgekd --help`` stays fast), and on a device beside the device runner.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Collection, MutableMapping
from pathlib import Path
from typing import Any

#: Set to "off" to leave thread counts and wait policies to the runtimes (the old behaviour).
POLICY_ENV = "EDGEKD_THREAD_POLICY"
#: Holds the OMP_NUM_THREADS value the policy set itself, so it is not taken for the user's.
POLICY_MARK_ENV = "EDGEKD_POLICY_OMP_NUM_THREADS"
_CGROUP = Path("/sys/fs/cgroup")
_SYS_CPU = Path("/sys/devices/system/cpu")
_PROC_STAT = Path("/proc/stat")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat units
#: Seconds between two looks of a :class:`ThreadGovernor` at its cores.
GOVERNOR_PERIOD_S = 1.0
#: A new governor starts from the last one's count when that is at most this old (seconds).
_CARRY_OVER_S = 10.0
_last_count: tuple[float, int] | None = None  # (monotonic time, threads) of the last decision
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: How torch's OpenMP threads wait when the user did not say: libgomp spins this many times
#: at a barrier before it sleeps (its default: 300,000).
WAIT_DEFAULT = {"GOMP_SPINCOUNT": "10000"}


def cgroup_cpu_limit(root: Path = _CGROUP) -> int | None:
    """Whole cores a cgroup CPU quota allows this process (rounded up), None without a quota.

    Reads cgroup v2 ``cpu.max`` ("200000 100000" = 2 cores, "max 100000" = no quota) or v1
    ``cpu/cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = none).
    """
    try:
        quota_text, _, period_text = (root / "cpu.max").read_text(encoding="ascii").partition(" ")
        if quota_text.strip() == "max":
            return None
        quota, period = int(quota_text), int(period_text)
    except (OSError, ValueError):
        try:
            quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text(encoding="ascii"))
            period = int((root / "cpu" / "cpu.cfs_period_us").read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cores(cgroup_root: Path = _CGROUP) -> int:
    """Logical cores this process may really use: its CPU affinity (a container or taskset may
    allow fewer than the machine has), capped by a cgroup CPU quota; never ``os.cpu_count()``,
    which sees the host. Threads get :func:`usable_physical_cores`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    return max(1, min(cores, limit) if limit else cores)


def physical_cores(cpus: Collection[int], sys_root: Path = _SYS_CPU) -> int:
    """Physical cores among the logical CPUs ``cpus``: hyperthreads of one core count once
    (two threads on one core share its arithmetic units, and torch and ONNX Runtime default to
    a thread per physical core for that reason). ``len(cpus)`` when the topology is unreadable."""
    cores = set()
    for cpu in cpus:
        topology = sys_root / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text(encoding="ascii").strip()
            core = (topology / "core_id").read_text(encoding="ascii").strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def usable_physical_cores(cgroup_root: Path = _CGROUP, sys_root: Path = _SYS_CPU) -> int:
    """Physical cores of this process's CPU affinity, capped by a cgroup CPU quota: the
    thread count a runtime gets when nobody chose one."""
    try:
        cpus: Collection[int] = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        cpus = range(os.cpu_count() or 1)
    cores = physical_cores(cpus, sys_root)
    limit = cgroup_cpu_limit(cgroup_root)
    return max(1, min(cores, limit) if limit else cores)


def user_threads(environ: MutableMapping[str, str] | None = None) -> int | None:
    """The thread count ``OMP_NUM_THREADS`` sets, None when unset or not a positive integer.

    OpenMP allows a nested list ("4,2"): its first entry is the outer count. An invalid value
    is ignored, as libgomp ignores it, and so is the value :func:`apply_thread_policy` set.
    """
    env = os.environ if environ is None else environ
    value = env.get("OMP_NUM_THREADS", "")
    if value and value == env.get(POLICY_MARK_ENV):  # set by apply_thread_policy, not by the user
        return None
    first = value.split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def default_threads(environ: MutableMapping[str, str] | None = None, cgroup_root: Path = _CGROUP) -> int:
    """Threads a runtime gets when nobody chose a count: ``OMP_NUM_THREADS`` when set (the
    user's choice), else :func:`usable_physical_cores`. The count for torch, the intra-op pool
    of ONNX Runtime sessions and quantizers' timing alike."""
    return user_threads(environ) or usable_physical_cores(cgroup_root)


def policy_enabled(environ: MutableMapping[str, str] | None = None) -> bool:
    """False when ``EDGEKD_THREAD_POLICY=off`` asks for the runtimes' own behaviour."""
    env = os.environ if environ is None else environ
    return env.get(POLICY_ENV, "").strip().lower() not in ("off", "0", "false", "no")


@dataclasses.dataclass(frozen=True)
class ThreadPolicy:
    """What :func:`apply_thread_policy` did.

    ``threads``: torch's thread count from now on (None: left alone). ``waiting``: the
    libgomp wait variables in force (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``; the user's or
    the policy's; empty: libgomp's default). ``before_torch``: whether the environment was set
    before torch was imported (else only ``torch.set_num_threads`` could act). ``enabled``:
    False under ``EDGEKD_THREAD_POLICY=off``.
    """

    threads: int | None
    waiting: dict[str, str]
    before_torch: bool
    enabled: bool = True


def apply_thread_policy(
    environ: MutableMapping[str, str] | None = None, cgroup_root: Path = _CGROUP
) -> ThreadPolicy:
    """Apply edgekd's thread policy to this process; call it before ``import torch``.

    Before torch is imported: ``OMP_NUM_THREADS`` (when unset) becomes
    :func:`usable_physical_cores`, and when neither ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT``
    is set, :data:`WAIT_DEFAULT` is; values the user set stay. Child processes (DataLoader
    workers, torchrun ranks) inherit them.

    When torch is already imported (a library user's process), the environment is too late
    for torch, so only its thread count is lowered to :func:`default_threads` when it is
    above it; a lower count someone chose with ``torch.set_num_threads`` stays. Calling it
    again is harmless.
    """
    env = os.environ if environ is None else environ
    if not policy_enabled(env):
        return ThreadPolicy(threads=None, waiting=_waiting(env), before_torch=False, enabled=False)
    torch = sys.modules.get("torch")
    if torch is not None:
        threads = limit_torch_threads(torch, default_threads(env, cgroup_root))
        return ThreadPolicy(threads=threads, waiting=_waiting(env), before_torch=False)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = env[POLICY_MARK_ENV] = str(usable_physical_cores(cgroup_root))
    if not _waiting(env):
        env.update(WAIT_DEFAULT)
    return ThreadPolicy(threads=default_threads(env, cgroup_root), waiting=_waiting(env), before_torch=True)


def _waiting(env: MutableMapping[str, str]) -> dict[str, str]:
    return {name: env[name] for name in _WAIT_VARIABLES if name in env}


def limit_torch_threads(torch: Any, threads: int) -> int:
    """Lower ``torch``'s intra-op thread count to ``threads`` when above it; the count in force."""
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def busy_seconds(stat_text: str, cpus: Collection[int]) -> float | None:
    """Seconds the CPUs ``cpus`` have been busy since boot (any time not idle and not waiting
    for I/O; steal included: a hypervisor's other guests hold the core then), from
    ``/proc/stat`` text. None when a CPU of ``cpus`` is not listed."""
    ticks, seen = 0, 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            # user nice system idle iowait irq softirq steal (guest time is inside user/nice)
            fields = [int(v) for v in rest.split()[:8]]
            ticks += sum(fields) - fields[3] - fields[4]
            seen += 1
    return ticks / _CLOCK_TICKS if seen == len(cpus) else None


class ThreadGovernor:
    """Fits torch's thread count to the cores that other processes leave free, as they come and go.

    At most every ``period_s`` (each :meth:`tick` is a clock read otherwise) it compares how
    long this process's CPUs were busy with this process's own CPU time; the rest is other
    processes' work, in CPUs. Threads = ``cores`` (the physical cores of ``cpus``; default one
    per CPU) less those busy CPUs, rounded, within ``[1, ceiling]`` (a busy hyperthread slows
    its sibling, so it costs a core too). Why: torch's OpenMP threads meet at a barrier after
    every parallel operation, and when the OS has parked one of them behind another process
    the others wait for it (spinning, by libgomp's default); one thread beside one busy
    process does the same work without waiting (``benchmarks/shared_machine.py``).

    ``set_threads``: applies a count (``torch.set_num_threads``). ``read_stat``/``clock``/
    ``own_cpu`` are the sources (``/proc/stat`` text, monotonic seconds, this process's CPU
    seconds), replaceable for tests.
    """

    def __init__(
        self,
        set_threads: Callable[[int], None],
        ceiling: int,
        cpus: Collection[int],
        *,
        cores: int | None = None,
        period_s: float = GOVERNOR_PERIOD_S,
        read_stat: Callable[[], str] = lambda: _PROC_STAT.read_text(encoding="ascii"),
        clock: Callable[[], float] = time.monotonic,
        own_cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self.threads = self.ceiling = max(1, ceiling)
        self.cpus = frozenset(cpus)
        self.cores = cores or len(self.cpus)
        self._set, self._period = set_threads, period_s
        self._read_stat, self._clock, self._own_cpu = read_stat, clock, own_cpu
        self._last: tuple[float, float, float] | None = None  # (clock, busy, own cpu) of the last look

    def start(self) -> ThreadGovernor:
        """Take the first look, and begin from the last governor's count when it is recent (a
        training run follows the teacher's in the same process under the same load)."""
        if _last_count is not None and self._clock() - _last_count[0] <= _CARRY_OVER_S:
            self._apply(min(self.ceiling, _last_count[1]))
        self.tick()
        return self

    def tick(self) -> int:
        """Look at the cores when ``period_s`` has passed since the last look; the count in force."""
        now = self._clock()
        if self._last is not None and now - self._last[0] < self._period:
            return self.threads
        try:
            busy = busy_seconds(self._read_stat(), self.cpus)
        except OSError:
            busy = None
        if busy is None:  # nothing to measure with: keep the count
            self._last = None
            return self.threads
        own = self._own_cpu()
        if self._last is not None and now > self._last[0]:
            then, busy_then, own_then = self._last
            others = max(0.0, (busy - busy_then) - (own - own_then)) / (now - then)
            self._apply(max(1, min(self.ceiling, int(self.cores - others + 0.5))))
        self._last = (now, busy, own)
        return self.threads

    def _apply(self, threads: int) -> None:
        global _last_count
        if threads != self.threads:
            self._set(threads)
            self.threads = threads
        _last_count = (self._clock(), threads)


def torch_thread_governor(
    torch: Any, environ: MutableMapping[str, str] | None = None
) -> ThreadGovernor | None:
    """A started :class:`ThreadGovernor` over ``torch``'s intra-op threads (ceiling: its count
    now), or None where edgekd should not move the count: ``EDGEKD_THREAD_POLICY=off``, a count
    the user chose (``OMP_NUM_THREADS``), a cgroup CPU quota below the affinity (the quota is
    the share this process was given), one usable core, or no ``/proc/stat``."""
    env = os.environ if environ is None else environ
    if not policy_enabled(env) or user_threads(env) is not None or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = os.sched_getaffinity(0)
    ceiling = torch.get_num_threads()
    if len(cpus) < 2 or ceiling < 2 or usable_cores() < len(cpus) or not _PROC_STAT.is_file():
        return None
    return ThreadGovernor(torch.set_num_threads, ceiling, cpus, cores=physical_cores(cpus)).start()
