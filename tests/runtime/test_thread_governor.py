"""The thread governor: torch's thread count follows the cores other processes leave free."""

from __future__ import annotations

import os

import pytest

from edgekd.runtime import threads
from edgekd.runtime.threads import POLICY_ENV, POLICY_MARK_ENV, ThreadGovernor, busy_seconds

TICKS = os.sysconf("SC_CLK_TCK")

STAT = """cpu  900 0 300 5000 20 0 10 0 0 0
cpu0 {c0} 0 100 2500 10 0 5 0 0 0
cpu1 {c1} 0 200 2500 10 0 5 5 0 0
cpu2 0 0 0 2500 0 0 0 0 0 0
cpu3 0 0 0 2500 0 0 0 0 0 0
intr 12345 0 0
ctxt 99
"""


def stat_text(busy0: int, busy1: int) -> str:
    """/proc/stat text whose cpu0/cpu1 were busy ``busy*`` ticks in user time (plus system etc.)."""
    return STAT.format(c0=busy0, c1=busy1)


def test_busy_seconds_counts_all_but_idle_and_iowait_of_the_cpus_asked_for() -> None:
    text = stat_text(400, 500)
    assert busy_seconds(text, {0}) == pytest.approx((400 + 100 + 5) / TICKS)
    assert busy_seconds(text, {0, 1}) == pytest.approx((400 + 100 + 5 + 500 + 200 + 5 + 5) / TICKS)
    assert busy_seconds(text, {0, 7}) is None  # a CPU the file does not list


class Machine:
    """A fake clock, /proc/stat and own CPU time: others keep ``others`` cores busy, we ``own``."""

    def __init__(self) -> None:
        self.now, self.busy_ticks, self.own_s, self.reads = 100.0, 0, 0.0, 0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.now += seconds
        self.busy_ticks += round((others + own) * seconds * TICKS)
        self.own_s += own * seconds

    def stat(self) -> str:
        self.reads += 1
        return stat_text(self.busy_ticks, 0)  # all on cpu0: only the sum matters

    def governor(self, applied: list[int], ceiling: int = 2) -> ThreadGovernor:
        return ThreadGovernor(
            applied.append,
            ceiling,
            {0, 1},
            read_stat=self.stat,
            clock=lambda: self.now,
            own_cpu=lambda: self.own_s,
        )


@pytest.fixture(autouse=True)
def _no_carry_over(monkeypatch):
    monkeypatch.setattr(threads, "_last_count", None)


def test_one_busy_process_takes_a_thread_away_and_gives_it_back_when_it_stops() -> None:
    machine, applied = Machine(), []
    governor = machine.governor(applied).start()
    machine.run(1.0, others=1.0, own=1.0)
    assert governor.tick() == 1 and applied == [1]
    machine.run(1.0, others=1.0, own=1.0)
    assert governor.tick() == 1 and applied == [1]  # unchanged: not applied again
    machine.run(1.0, others=0.1, own=1.0)
    assert governor.tick() == 2 and applied == [1, 2]


def test_it_looks_at_most_once_a_period() -> None:
    machine, applied = Machine(), []
    governor = machine.governor(applied).start()
    reads = machine.reads
    machine.run(0.5, others=2.0, own=0.0)
    assert governor.tick() == 2 and machine.reads == reads  # half a period: only the clock
    machine.run(0.5, others=2.0, own=0.0)
    assert governor.tick() == 1 and machine.reads == reads + 1


def test_the_count_stays_within_one_and_the_ceiling() -> None:
    machine, applied = Machine(), []
    governor = machine.governor(applied, ceiling=1).start()
    machine.run(1.0, others=0.0, own=0.2)
    assert governor.tick() == 1 and applied == []  # 2 CPUs free, but the ceiling is 1
    governor = machine.governor(applied, ceiling=2).start()
    machine.run(1.0, others=5.0, own=0.0)
    assert governor.tick() == 1


def test_hyperthreads_count_as_their_core() -> None:
    machine, applied = Machine(), []
    governor = ThreadGovernor(
        applied.append,
        2,
        {0, 1, 2, 3},
        cores=2,
        read_stat=machine.stat,
        clock=lambda: machine.now,
        own_cpu=lambda: machine.own_s,
    ).start()
    machine.run(1.0, others=1.0, own=2.0)  # one busy hyperthread beside our two threads
    assert governor.tick() == 1


def test_a_new_governor_starts_from_a_recent_decision() -> None:
    machine, applied = Machine(), []
    governor = machine.governor(applied).start()
    machine.run(1.0, others=1.0, own=1.0)
    governor.tick()
    machine.run(2.0, others=1.0, own=1.0)
    assert machine.governor(applied).start().threads == 1  # the teacher's run, then the student's
    machine.run(60.0, others=1.0, own=1.0)
    assert machine.governor(applied).start().threads == 2  # a minute later: look again first


def test_without_proc_stat_the_count_stays() -> None:
    applied: list[int] = []

    def unreadable() -> str:
        raise OSError("no /proc")

    governor = ThreadGovernor(applied.append, 2, {0, 1}, read_stat=unreadable).start()
    assert governor.tick() == 2 and applied == []


class FakeTorch:
    def __init__(self, threads: int) -> None:
        self.threads = threads

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, n: int) -> None:
        self.threads = n


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: there is nothing to govern")
def test_the_governor_runs_only_on_edgekds_own_default_count(monkeypatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda *_: len(os.sched_getaffinity(0)))
    assert isinstance(threads.torch_thread_governor(FakeTorch(2), {}), ThreadGovernor)
    policy_set = {"OMP_NUM_THREADS": "2", POLICY_MARK_ENV: "2"}
    assert threads.torch_thread_governor(FakeTorch(2), policy_set) is not None
    assert threads.torch_thread_governor(FakeTorch(2), {"OMP_NUM_THREADS": "2"}) is None  # the user's
    assert threads.torch_thread_governor(FakeTorch(2), {POLICY_ENV: "off"}) is None
    assert threads.torch_thread_governor(FakeTorch(1), {}) is None  # one thread: nothing to lower
    monkeypatch.setattr(threads, "usable_cores", lambda *_: 1)  # a cgroup quota of one core
    assert threads.torch_thread_governor(FakeTorch(2), {}) is None


def test_training_ticks_the_governor_before_each_optimizer_step(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from edgekd.distill.checks import cpu_threads

    ticks: list[int] = []

    class Counting:
        def tick(self) -> int:
            ticks.append(1)
            return 1

    monkeypatch.setattr(threads, "torch_thread_governor", lambda _torch: Counting())
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.1)

    def step() -> None:
        param.grad = torch.ones(2)
        optimizer.step()

    with cpu_threads(None):
        step()
        step()
    step()  # after the run: the hook is gone
    assert len(ticks) == 2
    for fixed in ({"num_threads": 1}, {"num_threads": None, "deterministic": True}):
        with cpu_threads(**fixed):
            step()
    assert len(ticks) == 2  # a chosen count, or results that must not depend on the load
