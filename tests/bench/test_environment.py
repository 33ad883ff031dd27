from __future__ import annotations

from edgekd.bench.environment import ISA_FLAGS, cpu_fingerprint, fingerprint

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma

processor\t: 1
model name\t: AMD EPYC 7B13
"""


def test_cpuinfo_is_parsed() -> None:
    cpu = cpu_fingerprint(CPUINFO)
    assert cpu["model"] == "AMD EPYC 7B13"
    assert cpu["isa"]["avx2"] is True
    assert cpu["isa"]["avx512f"] is False and cpu["isa"]["amx_tile"] is False
    assert set(cpu["isa"]) == set(ISA_FLAGS)
    assert cpu["logical_cores"] >= 1 and cpu["usable_cores"] >= 1


def test_unreadable_flags_are_none_not_false() -> None:
    cpu = cpu_fingerprint("")
    assert cpu["isa"] is None
    assert cpu["model"]  # platform fallback


def test_fingerprint_keys() -> None:
    env = fingerprint()
    assert set(env) >= {"cpu", "os", "python", "libraries", "machine"}
    assert "numpy" in env["libraries"]
