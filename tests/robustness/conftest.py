"""Fixtures of the robustness corpus: the valid files (once per session) and one sandbox per case."""

from __future__ import annotations

import sys

import pytest

from tests.robustness import harness, valid_files


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "robustness(kind, entry, expect): a corpus case; kind is the file kind, entry the CLI entry "
        "point, expect 'refuse' or 'accept' (see tests/robustness/count_cases.py)",
    )


@pytest.fixture(scope="session")
def valid(tmp_path_factory) -> valid_files.ValidFiles:
    files = valid_files.build(tmp_path_factory.mktemp("robust-valid"))
    # The marker module is importable, as an attacker's installed package would be.
    sys.path.insert(0, str(files.hostile_pkgs))
    yield files
    sys.path.remove(str(files.hostile_pkgs))


@pytest.fixture
def box(tmp_path, valid) -> harness.Sandbox:
    """The case's folder; the valid files and the marker folder are watched too."""
    return harness.Sandbox(tmp_path, watched=[valid.root], marker_dir=valid.marker_dir)


@pytest.fixture(scope="session")
def valid_bench(valid):
    """The valid bench.json and baseline.json (written by a real ``edgekd bench``)."""
    return valid_files.build_bench(valid)
