"""The student is checked before any candidate is built: one line naming it, nothing written.

And a deploy that fails after building keeps none of its builds: the cache entries are
journaled like every other file a failed command wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from edgekd.cli.main import cli
from edgekd.errors import ConfigError
from tests.deploy.tiny_student import TinyDeploy, build_tiny_deploy

FAST = ["--min-runs", "2", "--min-seconds", "0", "--threads", "1", "--runtimes", "onnxruntime", "-q"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyDeploy:
    return build_tiny_deploy(tmp_path_factory.mktemp("deploy_student"))


@pytest.fixture(scope="module")
def student_onnx(tiny: TinyDeploy) -> Path:
    out = tiny.student.parent / "onnx"
    args = ["export", str(tiny.student), "--data", str(tiny.data), "--out", str(out), "--no-openvino", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out / "student.onnx"


def _opset_99(model: onnx.ModelProto) -> None:
    model.opset_import[0].version = 99


def _nan_weights(model: onnx.ModelProto) -> None:
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.nan), init.name))


def _five_classes(model: onnx.ModelProto) -> None:
    """Logits [N, 4] -> [N, 5] through a MatMul: a valid model of another class count."""
    graph = model.graph
    out = graph.output[0]
    for node in graph.node:
        node.output[:] = ["logits_4" if o == out.name else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.ones((4, 5), np.float32), "to_five"))
    graph.node.append(helper.make_node("MatMul", ["logits_4", "to_five"], [out.name]))
    out.type.tensor_type.shape.dim[1].dim_value = 5


def _two_inputs(model: onnx.ModelProto) -> None:
    model.graph.input.append(helper.make_tensor_value_info("second", onnx.TensorProto.FLOAT, ["batch", 1]))


BROKEN = {
    "opset-99": (_opset_99, "not a loadable ONNX model"),
    "weights-nan": (_nan_weights, "NaN or infinite logits"),
    "five-classes": (_five_classes, "gives 5 scores per frame"),
    "two-inputs": (_two_inputs, "has 2 inputs"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_onnx_student_is_one_line_naming_it_and_nothing_is_built(
    student_onnx: Path, tiny: TinyDeploy, tmp_path: Path, name: str
) -> None:
    change, says = BROKEN[name]
    model = onnx.load(student_onnx)
    change(model)
    bad = tmp_path / f"{name}.onnx"
    onnx.save(model, bad)
    out = tmp_path / "out"
    args = ["deploy", str(bad), "--target", "x86-cpu-onnxruntime-fp32", "--data", str(tiny.data)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), *FAST])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), result.output
    assert bad.name in lines[0] and says in lines[0], lines[0]
    assert not out.exists()


def test_a_student_of_another_class_count_names_the_student_and_the_data(
    tiny: TinyDeploy, tmp_path: Path
) -> None:
    from edgekd.data.dataset import ArrayDataset, load_npz

    data = load_npz(tiny.data)
    keep = data.y < 3  # three of the four classes
    three = ArrayDataset(
        x=data.x[keep],
        y=data.y[keep],
        class_names=data.class_names[:3],
        snr=data.snr[keep],
        split=data.split[keep],
    )
    other = tmp_path / "three-classes.npz"
    three.save_npz(other)
    args = ["deploy", str(tiny.student), "--target", "x86-cpu-onnxruntime-fp32", "--data", str(other)]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 2, result.output
    assert "student.pt" in result.output and "three-classes.npz" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_deploy_that_fails_after_building_keeps_no_build(
    tiny: TinyDeploy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builds are real files at the destination: a failed command (exit 2) removes them, as it
    removes every other file it wrote; a finished deploy keeps them (tests/deploy/test_deploy.py)."""
    from edgekd.deploy import run as deploy_run  # (edgekd.deploy is also the public function)

    def measuring_fails(*_args, **_kwargs):
        raise ConfigError("measuring failed")

    monkeypatch.setattr(deploy_run, "measure_candidates", measuring_fails)
    out = tmp_path / "out"
    args = ["deploy", str(tiny.student), "--target", "x86-cpu-onnxruntime-int8", "--data", str(tiny.data)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), *FAST])
    assert result.exit_code == 2 and "measuring failed" in result.output, result.output
    assert not out.exists(), sorted(str(p.relative_to(tmp_path)) for p in out.rglob("*"))
