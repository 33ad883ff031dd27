"""edgekd.models has no import cycle, and hides none behind a lazy import.

The graph is read from the source with ``ast``, function-level imports included: a cycle that a
lazy ``from edgekd.models.x import y`` inside a function keeps from failing at import time is
still a cycle here. Then each module is imported first in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edgekd.models

PACKAGE = "edgekd.models"
FOLDER = Path(edgekd.models.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _targets(node: ast.Import | ast.ImportFrom, here: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``node`` (in module ``here``) imports."""
    if isinstance(node, ast.Import):
        named = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:  # relative: from . import x, from .x import y
            package = here if here == PACKAGE else here.rpartition(".")[0]
            base = ".".join([package, *([base] if base else [])])
        # "from edgekd.models import zoo1d" imports the submodule zoo1d.
        named = {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in named if name in modules and name != PACKAGE}


def import_graph(sources: dict[str, str]) -> dict[str, dict[str, bool]]:
    """module -> {imported sibling module: whether the import sits inside a function}."""
    modules = set(sources)
    graph: dict[str, dict[str, bool]] = {name: {} for name in sources}
    for name, source in sources.items():
        tree = ast.parse(source)
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, name, modules):
                    lazy = id(node) not in top_level
                    graph[name][target] = graph[name].get(target, True) and lazy
    return graph


def find_cycle(graph: dict[str, dict[str, bool]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def _sources() -> dict[str, str]:
    return {_module_name(path): path.read_text() for path in sorted(FOLDER.glob("*.py"))}


def test_the_checker_sees_a_cycle_hidden_by_a_lazy_import():
    """The shape the package had: factory imports ensemble at the top, ensemble imports the
    factory inside a function. The checker must call that a cycle, and the import lazy."""
    sources = {
        "edgekd.models.factory": "from edgekd.models import ensemble\n",
        "edgekd.models.ensemble": "def build():\n    from edgekd.models.factory import create_model\n",
        "edgekd.models.zoo1d": "from . import registry\n",
        "edgekd.models.registry": "import torch\n",
    }
    graph = import_graph(sources)
    assert graph["edgekd.models.ensemble"] == {"edgekd.models.factory": True}
    assert graph["edgekd.models.zoo1d"] == {"edgekd.models.registry": False}
    assert find_cycle(graph) == ["edgekd.models.ensemble", "edgekd.models.factory", "edgekd.models.ensemble"]
    del sources["edgekd.models.ensemble"]
    assert find_cycle(import_graph(sources)) is None


def test_models_imports_form_no_cycle():
    graph = import_graph(_sources())
    assert "edgekd.models.checkpoint" in graph and "edgekd.models.weights" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_no_module_imports_a_sibling_inside_a_function():
    """A lazy import of a sibling is how a cycle hides; heavy third-party imports may be lazy."""
    lazy = [
        f"{module} -> {target}"
        for module, targets in import_graph(_sources()).items()
        for target, inside_function in targets.items()
        if inside_function
    ]
    assert lazy == []


def test_weights_is_a_leaf():
    assert import_graph(_sources())["edgekd.models.weights"] == {}


@pytest.mark.parametrize("module", ["checkpoint", "ensemble", "factory", "teacher", "weights"])
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    code = (
        f"import edgekd.models.{module}\n"
        "from edgekd.models import create_model\n"
        "create_model('ensemble', 3, members=[{'model': 'cnn1d_small'}] * 2)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
