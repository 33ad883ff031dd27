"""The README's install section agrees with pyproject.toml.

Its tables name every base dependency and every extra (with what each extra adds), the torch
bound it quotes is pyproject's, and its CPU wheel index is the one the Dockerfile and the CI
base-install check use. A dependency or extra added to pyproject.toml without a README line
fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; CI runs 3.11

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _name(requirement: str) -> str:
    """The distribution a requirement names: ``"torch>=2.4,<2.15"`` -> ``"torch"``."""
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def _install_section() -> str:
    start = README.index("\n## Install\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def _table(first_header: str) -> dict[str, str]:
    """The install section's table whose first column is ``first_header``: first cell -> rest of the row."""
    rows: dict[str, str] = {}
    in_table = False
    for line in _install_section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith(f"| {first_header} |"):
            in_table = True
        elif in_table and line.startswith("| ---"):
            continue
        elif in_table and line.startswith("|"):
            rows[cells[0].strip("`")] = " | ".join(cells[1:])
        elif in_table:
            break
    assert rows, f"README's install section has no table headed '| {first_header} |'"
    return rows


def _code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def test_torch_bound_quoted_is_pyprojects():
    (bound,) = [r for r in PROJECT["dependencies"] if _name(r) == "torch"]
    # Every lower bound the README gives torch ("torch==2.14.1+cpu" is an example pin, not a bound).
    quoted = set(re.findall(r"torch>=[^`\"'\s]*", README))
    assert quoted == {bound}, f"README quotes {sorted(quoted)}, pyproject.toml has {bound!r}"
    assert bound in _install_section()


def test_base_table_lists_every_dependency():
    listed = set(_table("package"))
    wanted = {_name(r) for r in PROJECT["dependencies"]}
    assert listed == wanted, f"missing from README: {wanted - listed}; not dependencies: {listed - wanted}"


def test_extras_table_lists_every_extra_and_what_it_adds():
    table = _table("extra")
    extras = PROJECT["optional-dependencies"]
    assert set(table) == set(extras), f"README extras {sorted(table)}, pyproject.toml {sorted(extras)}"
    for extra, requirements in extras.items():
        adds = _code_spans(table[extra].split(" | ")[0])
        for requirement in requirements:
            own = re.fullmatch(r"edgekd\[([^\]]+)\]", requirement.replace(" ", ""))
            wanted = {f"[{e}]" for e in own.group(1).split(",")} if own else {_name(requirement)}
            assert wanted <= adds, f"README's '{extra}' row does not name {sorted(wanted - adds)}"


def test_cpu_index_is_the_one_dockerfile_and_ci_use():
    paths = (ROOT / "Dockerfile", ROOT / ".ci" / "base_install_check", *ROOT.glob("examples/ci/*"))
    files = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in paths}
    files["README's install section"] = _install_section()
    for where, text in files.items():
        urls = set(re.findall(r"https://download\.pytorch\.org/[^\s\"'`]*", text))
        assert urls == {CPU_INDEX}, f"{where} names {sorted(urls)}, not (only) {CPU_INDEX}"
    assert re.search(rf"(?<!-)--index-url {CPU_INDEX}\s", _install_section())
    assert re.search(rf"--extra-index-url {CPU_INDEX}\s", _install_section())


def test_ci_checks_the_base_install_between_demo_and_tests():
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if ln.strip()]
    order = [
        next(i for i, ln in enumerate(lines) if needle in ln and not ln.lstrip().startswith("#"))
        for needle in ("edgekd demo --out runs/ci-demo", ".ci/base_install_check", "python -m pytest")
    ]
    assert order == sorted(order), "expected .ci/run to run the demo, the base-install check, then pytest"
    check = ROOT / ".ci" / "base_install_check"
    assert check.stat().st_mode & 0o111, f"{check} is not executable"
