"""ONNX -> OpenVINO IR: written as a pair only after parity passes; precision read back."""

from __future__ import annotations

import sys

import numpy as np

# openvino is a core dependency: a broken install must fail these tests, not skip them.
import openvino  # noqa: F401
import pytest

from edgekd.errors import ParityError, RuntimeUnavailable, ShapeError
from edgekd.export.onnx_export import ExportConfig, export_onnx, torch_reference_outputs
from edgekd.export.parity import ParityConfig
from tests.export.tiny_nets import iq_frames, trained_net


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(onnx path, frames [64, 2, 128], PyTorch reference logits [64, 4])."""
    folder = tmp_path_factory.mktemp("onnx")
    model = trained_net("separable")
    frames = iq_frames(64, seed=4)[0]
    path = folder / "student.onnx"
    export_onnx(model, frames, path, ExportConfig())
    return path, frames, torch_reference_outputs(model, frames)


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_ir_export_parity_and_f32_execution(tmp_path, exported):
    from edgekd.export.openvino_export import compile_cpu, export_openvino, openvino_execution_precision

    onnx_path, frames, reference = exported
    xml = tmp_path / "student.xml"
    report = export_openvino(onnx_path, xml, frames, reference, ParityConfig())
    assert report.passed and report.samples == 64 and report.max_abs_error < 1e-4
    assert report.what == "OpenVINO IR student.xml"
    assert _files(tmp_path) == ["student.bin", "student.xml"]
    assert openvino_execution_precision(compile_cpu(xml, precision="f32")) == "f32"
    # Whatever the plugin picks by default, the label is one of the precisions it runs in.
    assert openvino_execution_precision(compile_cpu(xml, precision=None)) in {"f32", "bf16", "f16"}


def test_fp16_compressed_weights_halve_the_bin(tmp_path, exported):
    from edgekd.export.openvino_export import export_openvino

    onnx_path, frames, reference = exported
    full = export_openvino(onnx_path, tmp_path / "f32" / "m.xml", frames, reference, ParityConfig())
    half = export_openvino(
        onnx_path,
        tmp_path / "f16" / "m.xml",
        frames,
        reference,
        ParityConfig(atol=1e-2, rtol=1e-2),
        compress_to_fp16=True,
    )
    assert full.passed and half.passed
    size32 = (tmp_path / "f32" / "m.bin").stat().st_size
    size16 = (tmp_path / "f16" / "m.bin").stat().st_size
    assert size16 < 0.6 * size32
    assert half.max_abs_error > full.max_abs_error  # fp16 weights round, and parity sees it


def test_parity_failure_leaves_no_ir_and_keeps_the_old_one(tmp_path, exported):
    from edgekd.export.openvino_export import export_openvino

    onnx_path, frames, reference = exported
    xml, bin_ = tmp_path / "student.xml", tmp_path / "student.bin"
    xml.write_text("old xml")
    bin_.write_bytes(b"old bin")
    wrong = reference + np.float32(0.5)
    with pytest.raises(ParityError, match=r"OpenVINO IR student\.xml"):
        export_openvino(onnx_path, xml, frames, wrong, ParityConfig())
    assert xml.read_text() == "old xml" and bin_.read_bytes() == b"old bin"
    assert _files(tmp_path) == ["student.bin", "student.xml"]


def test_reference_of_other_samples_is_a_shape_error(tmp_path, exported):
    from edgekd.export.openvino_export import export_openvino

    onnx_path, frames, reference = exported
    with pytest.raises(ShapeError, match="63 reference outputs for 64 samples"):
        export_openvino(onnx_path, tmp_path / "m.xml", frames, reference[:-1], ParityConfig())
    assert _files(tmp_path) == []


def test_missing_openvino_is_runtime_unavailable(tmp_path, monkeypatch, exported):
    from edgekd.export.openvino_export import export_openvino

    onnx_path, frames, reference = exported
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(RuntimeUnavailable, match="OpenVINO is not available") as info:
        export_openvino(onnx_path, tmp_path / "m.xml", frames, reference, ParityConfig())
    assert "export.openvino: false" in info.value.one_line()
    assert _files(tmp_path) == []
