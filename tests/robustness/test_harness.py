"""The corpus's own detectors can fail: each sees the thing it guards against when it happens."""

from __future__ import annotations

import pickle

from tests.robustness import harness
from tests.robustness.entries import argv
from tests.robustness.harness import MARKER_MODULE, Outcome, refusal_problems
from tests.robustness.valid_files import Hostile, recipe_yaml


def test_marker_module_is_importable_and_detected(valid, box):
    """A module: name the person writes in a recipe is honoured: the marker appears, and is seen."""
    recipe = box.dir / "own-module.yaml"
    recipe.write_text(
        recipe_yaml(valid, "npz").replace("model: edgekd:cnn1d_small", f"model: module:{MARKER_MODULE}:fn")
    )
    _outcome, _changed, markers = box.run(argv("distill-recipe", valid, box, recipe=recipe))
    assert markers, "the marker module ran but the sandbox saw no marker"
    assert not box.markers(), "markers are cleared after each case"


def test_hostile_pickle_payload_is_live(valid, box):
    """The __reduce__ payload really writes its marker when a plain unpickler meets it."""
    marker = valid.marker_dir / "payload"
    pickle.loads(pickle.dumps(Hostile(marker))).close()  # this is what edgekd must never do
    assert box.markers() == ["payload"]
    box.clear_markers()


def test_writes_are_detected(valid, box):
    """A successful export writes files: the snapshot sees them (so 'nothing written' can fail)."""
    outcome, changed, _markers = box.run(argv("export", valid, box))
    assert outcome.exit_code == 0, outcome.summary()
    assert any(path.endswith("student.onnx") for path in changed)


def test_refusal_invariants_catch_each_failure():
    clean = Outcome(2, "edgekd: error: bad.pt is not a checkpoint (fix: x)\n", None)
    assert refusal_problems(clean, ["bad.pt"], [], []) == []
    crashed = Outcome(3, "edgekd: internal error: KeyError: 'x'\nTraceback (most recent call last):\n", None)
    assert set(refusal_problems(crashed, ["bad.pt"], ["out/x"], ["imported"])) == {
        "exit-2", "one-line", "names-file", "no-traceback", "nothing-written", "no-code-run",
    }  # fmt: skip
    assert refusal_problems(Outcome(2, "edgekd: error: something is wrong\n", None), ["bad.pt"], [], []) == [
        "names-file"
    ]
    assert harness.acceptance_problems(Outcome(0, "ok\n", None), []) == []
