"""PyTorch -> ONNX: checked graph, dynamic batch, parity, and nothing left behind on failure."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgekd.errors import InputFileError, ParityError, ShapeError
from edgekd.export.onnx_export import (
    ExportConfig,
    ExportError,
    export_onnx,
    inspect_onnx,
    load_onnx_checked,
    ort_session,
    run_onnxruntime,
    torch_reference_outputs,
)
from tests.export.tiny_nets import NETS, iq_frames, trained_net


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return iq_frames(200, seed=3)[0]


@pytest.mark.parametrize("kind", sorted(NETS))
def test_export_checked_dynamic_batch_and_parity(tmp_path, frames, kind):
    model = trained_net(kind).train()  # export must evaluate in eval mode and restore the mode
    path = tmp_path / "student.onnx"
    report = export_onnx(model, frames, path, ExportConfig())

    assert model.training
    assert _files(tmp_path) == ["student.onnx"]  # no temp files beside it
    onnx.checker.check_model(str(path), full_check=True)
    info = inspect_onnx(path)
    assert info["opset"]["ai.onnx"] == 17
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 2, 128]}]
    assert info["outputs"][0]["name"] == "logits" and info["outputs"][0]["shape"] == ["batch", 4]
    assert info["ops"]["Conv"] >= 2 and "BatchNormalization" not in info["ops"]  # folded
    assert info["parameters"] > 0 and info["weight_dtypes"] == ["float32"]

    assert report.passed and report.samples == len(frames)
    assert report.max_abs_error < 1e-4 and report.top1_agreement == 1.0
    assert 0 <= report.worst["sample"] < len(frames) and 0 <= report.worst["output"] < 4

    session = ort_session(path)
    reference = torch_reference_outputs(model, frames[:8])
    for batch in (1, 7):
        (out,) = session.run(None, {"input": frames[:batch]})
        assert out.shape == (batch, 4)
        np.testing.assert_allclose(out, reference[:batch], atol=1e-4, rtol=1e-3)


def test_static_batch_export_runs_one_frame_at_a_time(tmp_path, frames):
    path = tmp_path / "static.onnx"
    report = export_onnx(trained_net("conv"), frames[:20], path, ExportConfig(dynamic_batch=False))
    assert inspect_onnx(path)["inputs"][0]["shape"] == [1, 2, 128]
    assert report.passed and report.samples == 20


class _SignBranch(nn.Module):
    """Data-dependent control flow: the tracer bakes in the branch of the dummy batch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = NETS["conv"]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if x[0, 0, 0] > 0:
            return logits
        return -logits


def test_parity_failure_raises_and_leaves_nothing(tmp_path, frames):
    torch.manual_seed(0)
    frames = frames.copy()
    frames[:2, 0, 0] = 1.0  # the traced batch takes the first branch ...
    frames[2:, 0, 0] = -1.0  # ... every other frame takes the second one in PyTorch
    path = tmp_path / "student.onnx"
    path.write_bytes(b"previous artifact")
    with pytest.raises(ParityError) as info:
        export_onnx(_SignBranch(), frames, path, ExportConfig())
    line = info.value.one_line()
    assert "ONNX export student.onnx" in line and "top-1 agreement" in line
    assert "tracer" in line  # the TorchScript warning is quoted as the likely cause
    assert path.read_bytes() == b"previous artifact"  # the old file is untouched
    assert _files(tmp_path) == ["student.onnx"]


def test_zero_tolerance_fails_without_a_file(tmp_path, frames):
    # BatchNorm folding and different kernels change float rounding: exact equality is not on offer.
    cfg = ExportConfig()
    cfg.parity.atol, cfg.parity.rtol = 0.0, 0.0
    with pytest.raises(ParityError, match="outside atol=0 "):
        export_onnx(trained_net("conv"), frames, tmp_path / "m.onnx", cfg)
    assert _files(tmp_path) == []


def test_wrong_frame_shape_is_a_shape_error(tmp_path):
    bad = np.zeros((4, 3, 128), dtype=np.float32)  # 3 channels for a 2-channel net
    with pytest.raises(ShapeError, match="rejects samples of shape"):
        export_onnx(trained_net("conv"), bad, tmp_path / "m.onnx", ExportConfig())
    with pytest.raises(ShapeError):
        export_onnx(trained_net("conv"), np.zeros((0, 2, 128)), tmp_path / "m.onnx", ExportConfig())
    assert _files(tmp_path) == []


class _Bessel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x).mean(-1)


def test_unsupported_operator_is_one_line_export_error(tmp_path, frames, capfd):
    with pytest.raises(ExportError) as info:
        export_onnx(_Bessel(), frames[:4], tmp_path / "m.onnx", ExportConfig())
    assert "bessel_j0" in info.value.one_line()
    assert _files(tmp_path) == []
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err  # the exporter's C++ IR dump is swallowed


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an onnx model\n", bytes(range(256)) * 4],
    ids=["empty", "text", "binary"],
)
def test_corrupt_onnx_is_input_file_error(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=r"broken\.onnx") as info:
        load_onnx_checked(path)
    assert "\n" not in info.value.one_line()
    with pytest.raises(InputFileError):
        inspect_onnx(path)


def test_truncated_and_missing_onnx_are_input_file_errors(tmp_path, frames):
    good = tmp_path / "good.onnx"
    export_onnx(trained_net("conv"), frames[:8], good, ExportConfig())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputFileError, match=r"truncated\.onnx"):
        load_onnx_checked(truncated)
    with pytest.raises(InputFileError, match="does not exist"):
        load_onnx_checked(tmp_path / "missing.onnx")
    assert isinstance(load_onnx_checked(good), onnx.ModelProto)


def test_run_onnxruntime_batches_match_single_call(tmp_path, frames):
    path = tmp_path / "m.onnx"
    export_onnx(trained_net("separable"), frames[:10], path, ExportConfig())
    whole = run_onnxruntime(path, frames, batch_size=len(frames))
    np.testing.assert_allclose(run_onnxruntime(path, frames, batch_size=16), whole, atol=1e-5)
