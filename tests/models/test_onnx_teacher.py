"""OnnxTeacher: a real ONNX file through ONNX Runtime matches the PyTorch model it came from."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgekd.errors import ConfigError, InputFileError, ShapeError
from edgekd.models import create_model
from edgekd.models.onnx_teacher import OnnxTeacher, is_onnx_path, require_feature_support

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")


def _export(model: nn.Module, path, shape=(2, 2, 32), dynamic: bool = True, metadata: dict | None = None):
    model.eval()
    torch.onnx.export(
        model,
        (torch.randn(shape),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
        opset_version=17,
        dynamo=False,
    )
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("cnn1d_small", num_classes=5).eval()
    path = tmp_path_factory.mktemp("onnx") / "teacher.onnx"
    _export(model, path, metadata={"class_names": json.dumps(list("abcde"))})
    return model, path


def test_logits_match_torch_without_grad(exported):
    model, path = exported
    teacher = OnnxTeacher(path, batch_size=4)
    assert teacher.supports_features is False and list(teacher.parameters()) == []
    assert teacher.input_shape == [2, 32] and teacher.num_classes == 5
    assert teacher.class_names == list("abcde")
    x = torch.randn(11, 2, 32, requires_grad=True)  # 11: three ORT calls of 4, 4 and 3
    out = teacher(x)
    assert out.dtype == torch.float32 and out.shape == (11, 5) and not out.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(teacher(x.double()), out)  # other float dtypes are cast


def test_parameter_count_from_initializers(tmp_path):
    model = nn.Sequential(nn.Flatten(1), nn.Linear(2 * 32, 7))
    teacher = OnnxTeacher(_export(model, tmp_path / "linear.onnx"))
    assert teacher.num_parameters == sum(p.numel() for p in model.parameters()) == 64 * 7 + 7
    assert teacher.class_names is None


def test_wrong_sample_shape_is_one_shape_error(exported):
    teacher = OnnxTeacher(exported[1])
    with pytest.raises(ShapeError) as info:
        teacher(torch.randn(3, 4, 32))
    line = info.value.one_line()
    assert "[2, 32]" in line and "[4, 32]" in line and "\n" not in line
    with pytest.raises(ShapeError):
        teacher.check_input_shape((2, 64), "dataset")
    teacher.check_input_shape((2, 32), "dataset")


def test_fixed_batch_graph(tmp_path):
    model = nn.Sequential(nn.Flatten(1), nn.Linear(2 * 32, 3))
    teacher = OnnxTeacher(_export(model, tmp_path / "fixed.onnx", shape=(4, 2, 32), dynamic=False))
    assert teacher(torch.randn(8, 2, 32)).shape == (8, 3)
    # 6 = 4 + 2: the last chunk is padded to the fixed batch (tests/models/test_onnx_teacher_frictions.py)
    assert teacher(torch.randn(6, 2, 32)).shape == (6, 3)


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage that is not a protobuf graph" * 3])
def test_corrupt_or_missing_file_is_an_input_file_error(tmp_path, exported, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(InputFileError, match="cannot be loaded"):
        OnnxTeacher(bad)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported[1].read_bytes()[:200])
    with pytest.raises(InputFileError):
        OnnxTeacher(truncated)
    with pytest.raises(InputFileError, match="does not exist"):
        OnnxTeacher(tmp_path / "none.onnx")


def test_feature_losses_are_refused_for_a_black_box(exported):
    teacher = OnnxTeacher(exported[1])
    require_feature_support(teacher, [])
    with pytest.raises(ConfigError) as info:
        require_feature_support(teacher, ["fitnet", "at"])
    assert "fitnet, at need intermediate features" in info.value.one_line()
    require_feature_support(create_model("cnn1d_small", 3), ["fitnet"])  # a torch teacher has them
    assert is_onnx_path("T.ONNX") and not is_onnx_path("teacher.pt")
