"""What a backend declares (entries, devices, remote settings, deploy options) drives everything that
lists runtimes; a backend registered from a test module takes part like a built-in one."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import edgekd
from edgekd.backends.base import BACKENDS, Backend, DeployOption, Session, SessionOptions, entry_for_artifact
from edgekd.errors import ConfigError
from edgekd.runtime.onnxruntime_open import OrtSettings
from edgekd.runtime.openvino_open import OvSettings
from tests.backends.test_precision import weight_only
from tests.backends.tiny_models import TinyArtifacts


def test_each_file_gets_its_entry_from_the_backend_that_claims_it(
    tiny: TinyArtifacts, tmp_path: Path
) -> None:
    wo = weight_only(tiny.onnx, tmp_path / "wo.onnx")
    assert entry_for_artifact(tiny.onnx) == "onnxruntime/fp32"
    assert entry_for_artifact(tiny.onnx_int8) == "onnxruntime/int8"
    assert entry_for_artifact(wo) == "onnxruntime/fp32"  # DequantizeLinear only: not INT8
    assert entry_for_artifact(tiny.xml) == "openvino/fp32"
    assert entry_for_artifact(tmp_path / "student.pt") == "torch/fp32"
    assert entry_for_artifact(tmp_path / "student.engine") == "tensorrt/fp16"  # no manifest
    assert entry_for_artifact(tmp_path / "notes.txt") is None


def test_remote_settings_are_the_openers_typed_settings(tiny: TinyArtifacts) -> None:
    options = SessionOptions(threads=2, extra={"graph_optimization_level": "basic"})
    ort_json = BACKENDS.get("onnxruntime").remote_settings(options)
    assert OrtSettings.from_json(ort_json) == OrtSettings(
        graph_optimization_level="ORT_ENABLE_BASIC", intra_op_threads=2, inter_op_threads=1
    )
    ov_json = BACKENDS.get("openvino").remote_settings(SessionOptions(threads=2))
    assert OvSettings.from_json(ov_json).config["INFERENCE_NUM_THREADS"] == "2"
    assert [name for name in BACKENDS if BACKENDS.get(name).remote] == ["onnxruntime", "openvino"]
    with pytest.raises(ConfigError, match="torch does not run on a remote device"):
        BACKENDS.get("torch").remote_settings(SessionOptions())


def test_deploy_options_are_the_old_catalogue() -> None:
    rows = sorted(
        (opt.complexity, name, opt.precision, opt.build)
        for name in BACKENDS
        for opt in BACKENDS.get(name).deploy
    )
    assert [(name, precision) for _c, name, precision, _b in rows] == [
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
        ("openvino", "bf16"),
        ("openvino", "fp16"),
        ("tensorrt", "fp16"),
        ("onnxruntime", "int8-s8"),
        ("onnxruntime", "int8-u8"),
        ("openvino", "int8"),
        ("tensorrt", "int8"),
    ]


class _ToySession(Session):
    backend = "toy"

    def _run(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)[:, :4]


class _ToyBackend(Backend):
    """The shortest backend: a name, a suffix and ``_load``; everything else has a default."""

    name = "toy"
    suffixes = (".toy",)
    deploy = (DeployOption("fp32", "onnx", "fp32", 1),)

    def _load(self, path: Path, options: SessionOptions) -> Session:
        return _ToySession(
            artifact=path, input_shape=(None, 2, 128), requested_precision="fp32", executed_precision="fp32"
        )


def test_a_toy_backend_needs_only_a_name_suffixes_and_load(tmp_path: Path) -> None:
    toy = _ToyBackend()
    model = tmp_path / "m.toy"
    model.write_bytes(b"toy")
    assert toy.unavailable_reason() is None and toy.remote is False and toy.devices == ("CPU",)
    assert toy.artifact_entry(model) == "toy/fp32" and toy.artifact_entry(tmp_path / "m.onnx") is None
    out = toy.load(model).run(np.zeros((3, 2, 128), np.float32))
    assert out.shape == (3, 4)


def test_bench_and_backends_import_nothing_from_remote() -> None:
    root = Path(edgekd.__file__).parent
    for package in ("bench", "backends", "runtime"):
        for source in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                assert not any(name.startswith("edgekd.remote") for name in names), (source, names)
