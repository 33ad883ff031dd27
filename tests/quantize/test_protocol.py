"""The quantizer protocol: every registered quantizer names its output one way and is picked by
``quantize.runtime`` alone; a quantizer from a user's module needs no edit to edgekd."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.backends import BACKENDS
from edgekd.config import from_dict
from edgekd.errors import ConfigError
from edgekd.pipeline.conversion import quantize_step
from edgekd.quantize.config import QuantizeConfig
from edgekd.quantize.protocol import BaseQuantizer, QuantizeInputs, Quantizer, QuantizeResult
from edgekd.quantize.quantizers import QUANTIZERS, quantizer_for


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_every_quantizer_follows_the_protocol(name, tmp_path):
    quantizer = quantizer_for(name)
    assert isinstance(quantizer, Quantizer) and type(quantizer).name == name
    assert quantizer.backend in BACKENDS  # the runtime that opens its output, for the accuracy check
    out = quantizer.output_path(tmp_path, Path("runs/x/student.onnx"))
    assert out == tmp_path / f"student{quantizer.suffix}"
    assert out in quantizer.output_files(out)
    assert quantizer.fp32_reference(tmp_path / "student.onnx") == tmp_path / "student.onnx"  # none beside it


def test_two_quantizers_never_write_the_same_file():
    suffixes = [quantizer_for(name).suffix for name in QUANTIZERS.names()]
    assert len(set(suffixes)) == len(suffixes)


def test_the_documented_output_names():
    assert quantizer_for("onnxruntime").output_path("r", "student.onnx") == Path("r/student.int8.onnx")
    openvino = quantizer_for("openvino")
    xml = openvino.output_path("r", "student.onnx")
    assert xml == Path("r/student.int8.xml") and openvino.output_files(xml)[1] == Path("r/student.int8.bin")
    assert quantizer_for("tensorrt-qdq").output_path("r", "student.onnx") == Path("r/student.trt-qdq.onnx")


def test_openvino_int8_is_judged_against_the_exported_ir_when_there_is_one(tmp_path):
    onnx = tmp_path / "student.onnx"
    openvino = quantizer_for("openvino")
    assert openvino.fp32_reference(onnx) == onnx
    (tmp_path / "student.xml").write_text("<net/>")
    assert openvino.fp32_reference(onnx) == tmp_path / "student.xml"


def test_an_unknown_runtime_is_one_line_naming_the_quantizers():
    with pytest.raises(ConfigError, match=r"quantize\.runtime must be one of") as info:
        from_dict(QuantizeConfig, {"runtime": "openvno"})
    assert "did you mean 'openvino'?" in info.value.one_line()


@dataclasses.dataclass
class _CopyReport:
    threads: int
    frames: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _CopyQuantizer(BaseQuantizer):
    """A toy 'quantizer' that copies the model: enough to see who picks it and what it is given."""

    name = "toy-copy"
    backend = "onnxruntime"
    kind = "toy-int8"
    suffix = ".toy.onnx"
    build_recipe = "toy-int8"

    def build(self, source: Path, out: Path, cfg, inputs: QuantizeInputs) -> QuantizeResult:
        shutil.copyfile(source, out)
        report = _CopyReport(inputs.timing_threads(), len(inputs.calibration))
        return self.result(out, report, "copied")


@pytest.fixture
def toy_quantizer():
    QUANTIZERS.register(_CopyQuantizer.name, _CopyQuantizer)
    yield _CopyQuantizer
    QUANTIZERS.unregister(_CopyQuantizer.name)


def test_a_quantizer_registered_by_a_user_is_picked_by_the_runtime_name(toy_quantizer, tmp_path):
    source = tmp_path / "student.onnx"
    source.write_bytes(b"fp32")
    cfg = from_dict(QuantizeConfig, {"runtime": "toy-copy"})  # validated against the registry
    out = quantizer_for(cfg).output_path(tmp_path, source)
    result = quantize_step(source, out, cfg, QuantizeInputs(np.zeros((5, 2, 8), np.float32), threads=3))
    assert out.read_bytes() == b"fp32" and out.name == "student.toy.onnx"
    assert result.kind == "toy-int8" and result.summary == "copied" and result.warnings == []
    assert result.to_dict() == {"quantization": {"threads": 3, "frames": 5}}


def test_deploy_builds_every_quantizer_that_names_a_build_recipe(toy_quantizer):
    from edgekd.deploy.build import RECIPES

    assert RECIPES["ort-int8"] == ("onnx", "model.int8.onnx")
    assert RECIPES["openvino-int8"] == ("onnx", "model.int8.xml")
    assert RECIPES["toy-int8"] == ("onnx", "model.toy.onnx")  # registered after deploy was imported
    QUANTIZERS.unregister("toy-copy")
    assert "toy-int8" not in RECIPES
    QUANTIZERS.register("toy-copy", _CopyQuantizer)  # for the fixture to remove


def test_without_a_thread_count_quantizers_time_with_the_default_threads(monkeypatch):
    from edgekd.runtime import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_physical_cores", lambda *_: 3)
    frames = np.zeros((1, 2, 8), np.float32)
    assert QuantizeInputs(frames).timing_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's count wins
    assert QuantizeInputs(frames).timing_threads() == 1
    assert QuantizeInputs(frames, threads=2).timing_threads() == 2


def _radio_dataset():
    from edgekd.data.dataset import ArrayDataset
    from edgekd.data.splits import assign_splits

    y = np.repeat(np.arange(3), 40)
    snr = np.tile(np.repeat([-4, 4], 20), 3)
    x = np.random.default_rng(0).standard_normal((len(y), 2, 16)).astype(np.float32)
    split = assign_splits(y, snr, 0.1, 0.2, seed=0)
    return ArrayDataset(x=x, y=y, class_names=["a", "b", "c"], snr=snr, split=split)


def test_calibration_frames_turn_a_recipe_name_or_object_into_the_chosen_frames(tmp_path):
    from edgekd.data.calibration import CalibrationRecipe, calibration_frames

    data = _radio_dataset()
    recipe = CalibrationRecipe(name="mine", num_samples=12, selection="stratified_snr", seed=3)
    chosen = calibration_frames(data, recipe)
    assert chosen.name == "mine" and chosen.frames.shape == (12, 2, 16)
    np.testing.assert_array_equal(chosen.frames, data.x[chosen.selection.indices])
    assert chosen.to_dict()["count"] == 12 and chosen.to_dict()["recipe"]["seed"] == 3
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nnum_samples: 12\nselection: stratified_snr\nseed: 3\n")
    by_path = calibration_frames(data, str(path))  # a path (or a built-in name) is read and resolved
    assert by_path.selection.sha256 == chosen.selection.sha256 and by_path.name == str(path)
    with pytest.raises(ConfigError, match="calibration recipe"):
        calibration_frames(data, "no-such-recipe")
