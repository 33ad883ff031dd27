"""docs/api.md's examples, run as written: the worked example (distil -> export -> quantize ->
bench -> gate from Python) and the losses in a plain PyTorch loop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_worked_example_runs_as_written(tmp_path: Path) -> None:
    out = _run(_blocks()[0], tmp_path)
    run_dir = tmp_path / "runs" / "api-kd"
    for name in ("student.pt", "teacher.pt", "model.onnx", "model.xml", "model.int8.onnx", "bench.json"):
        assert (run_dir / name).is_file(), name
    student, teacher = (
        float(v) / 100 for v in re.search(r"student ([\d.]+)%, teacher ([\d.]+)%", out).groups()
    )
    assert teacher > 0.9 and student > 0.5, out  # four classes: chance is 25%
    assert "gate: passed" in out, out


def test_losses_example_runs_as_written(tmp_path: Path) -> None:
    out = _run(_blocks()[1], tmp_path)
    losses = [float(v) for v in re.findall(r"epoch \d+: loss ([\d.]+)", out)]
    assert len(losses) == 5 and losses[-1] < losses[0], out
