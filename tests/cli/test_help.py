"""Every command's --help works and imports neither torch nor onnx (startup stays fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgekd.cli.main import COMMANDS

PROBE = """
import sys
from edgekd.cli.main import main
try:
    main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "onnx", "onnxruntime", "openvino", "matplotlib") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in sorted(COMMANDS)]])
def test_help_is_light(argv):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert "HEAVY=\n" in proc.stdout, proc.stdout.splitlines()[-1]


def test_root_help_lists_every_command():
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout


def test_version():
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "edgekd" in proc.stdout
