"""An ONNX teacher cannot make edgekd read a file outside its folder through external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgekd.cli.main import cli
from tests.security.conftest import Files


def _teacher_reading(path: Path, location: str) -> Path:
    """A [N, 2, 128] -> [N, 4] teacher whose weights live at external ``location``."""
    weight = numpy_helper.from_array(np.ones((256, 4), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "teacher",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_external_data_outside_the_teachers_folder_is_refused(
    tmp_path: Path, files: Files, where: str
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((256, 4), np.float32).tobytes())  # fits: read, it would load
    folder = tmp_path / "teacher"
    folder.mkdir()
    teacher = _teacher_reading(folder / "t.onnx", "../secret.bin" if where == "parent" else str(secret))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "data": {"source": "npz", "path": str(files.data)}}))
    argv = ["distill", "--config", str(recipe), "--teacher", str(teacher), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("edgekd: error:")]
    assert len(errors) == 1 and str(teacher) in errors[0] and "External data path" in errors[0], result.output
