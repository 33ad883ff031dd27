"""The public Python API: what ``import edgekd`` exports, and that the command line calls it
and nothing else (one code path)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgekd

CLI = Path(edgekd.__file__).parent / "cli"
# What a command module may import from edgekd: the API, the CLI's own helpers, the errors.
ALLOWED = ("edgekd.api", "edgekd.cli", "edgekd.errors")


def _edgekd_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgekd":
            names += [node.module] if node.module != "edgekd" else [f"edgekd.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "edgekd"]
    return names


def test_the_command_line_calls_the_api_and_nothing_else() -> None:
    offending = {
        f"{path.name}: {name}"
        for path in CLI.glob("*.py")
        for name in _edgekd_imports(path)
        if not name.startswith(ALLOWED) and name != "edgekd.__version__"
    }
    assert not offending, sorted(offending)


def test_the_guard_sees_an_internal_import(tmp_path: Path) -> None:
    module = tmp_path / "cmd.py"
    module.write_text("def f():\n    from edgekd.pipeline.runner import run_recipe\n")
    assert _edgekd_imports(module) == ["edgekd.pipeline.runner"]


def test_public_names_resolve_and_are_documented() -> None:
    for name in edgekd.__all__:
        value = getattr(edgekd, name)
        if callable(value) and not isinstance(value, type):
            assert value.__doc__ and len(value.__doc__) > 80, name


def test_verbs_survive_the_import_of_their_namesake_subpackages() -> None:
    """edgekd/export/ (the exporters) and edgekd.export (the function) share a name."""
    import edgekd.bench.runner
    import edgekd.distill.train
    import edgekd.export.onnx_export
    import edgekd.gate.evaluate
    import edgekd.quantize.quantizers

    for name in ("distill", "export", "quantize", "bench", "gate", "deploy", "search", "qat", "targets"):
        assert callable(getattr(edgekd, name)) and not isinstance(getattr(edgekd, name), type(sys)), name


def test_import_edgekd_stays_light() -> None:
    code = (
        "import sys, edgekd; edgekd.distill; edgekd.gate; "
        "print(sorted({'torch', 'onnx', 'onnxruntime'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_library_errors_read_as_one_line_with_the_fix() -> None:
    from edgekd.errors import ConfigError

    assert str(ConfigError("bad value", hint="use 3")) == "bad value (fix: use 3)"


def test_a_verb_applies_the_thread_policy_before_torch_loads() -> None:
    """A library caller gets the command line's manners on a shared machine (issue #19)."""
    import os

    code = (
        "import os, sys, edgekd\n"
        "try:\n    edgekd.bench('missing.onnx', data='missing.npz')\n"
        "except edgekd.EdgeKDError:\n    pass\n"
        "print(os.environ.get('GOMP_SPINCOUNT'), 'OMP_NUM_THREADS' in os.environ)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "EDGEKD_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["10000", "True"], done.stdout + done.stderr
