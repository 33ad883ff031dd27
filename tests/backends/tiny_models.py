"""Tiny 1-D conv classifier over [N, 2, 128] and its artifacts, built in-process (no downloads).

The exports here are the tests' own (legacy TorchScript ONNX exporter, OpenVINO
``convert_model``, onnxruntime ``quantize_static``) so backend tests do not depend on
edgekd's export/quantize stages.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

SAMPLE_SHAPE = (2, 128)
NUM_CLASSES = 4


class TinyNet(nn.Module):
    """[N, 2, 128] -> logits [N, 4]."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 8, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(8, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@dataclasses.dataclass
class TinyArtifacts:
    module: nn.Module
    onnx: Path  # dynamic batch
    onnx_static: Path  # batch fixed at 1
    onnx_int8: Path  # QDQ, int8 activations and weights
    xml: Path  # OpenVINO IR (fp32 weights), dynamic batch
    frames: np.ndarray  # float32 [16, 2, 128]


def tiny_module(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyNet().eval()


def export_onnx(module: nn.Module, path: Path, *, dynamic_batch: bool) -> Path:
    dummy = torch.randn(1, *SAMPLE_SHAPE)
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


def export_openvino(onnx_path: Path, xml_path: Path) -> Path:
    import openvino as ov

    # compress_to_fp16=False: fp16-stored weights would break a 1e-4 parity check.
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    return xml_path


def quantize_int8(onnx_path: Path, out: Path, frames: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"x": frames[i : i + 1]} for i in range(len(frames))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(
        str(onnx_path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def build_tiny_artifacts(folder: Path) -> TinyArtifacts:
    folder.mkdir(parents=True, exist_ok=True)
    module = tiny_module()
    frames = np.random.default_rng(0).standard_normal((16, *SAMPLE_SHAPE)).astype(np.float32)
    onnx_path = export_onnx(module, folder / "tiny.onnx", dynamic_batch=True)
    return TinyArtifacts(
        module=module,
        onnx=onnx_path,
        onnx_static=export_onnx(module, folder / "tiny_static.onnx", dynamic_batch=False),
        onnx_int8=quantize_int8(onnx_path, folder / "tiny_int8.onnx", frames),
        xml=export_openvino(onnx_path, folder / "tiny.xml"),
        frames=frames,
    )


@dataclasses.dataclass
class CheckpointArtifacts:
    module: nn.Module  # the network the checkpoint was saved from, eval mode
    pt: Path  # edgekd checkpoint (edgekd.models.checkpoint format)
    onnx: Path  # the same network exported, dynamic batch
    class_names: list[str]


def build_checkpoint_artifacts(folder: Path) -> CheckpointArtifacts:
    """A built-in zoo model saved as an edgekd ``.pt`` checkpoint, plus its ONNX export."""
    from edgekd.models.checkpoint import save_checkpoint
    from edgekd.models.factory import create_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    module = create_model("cnn1d_small", NUM_CLASSES, SAMPLE_SHAPE[0]).eval()
    names = ["A", "B", "C", "D"]
    pt = folder / "cnn.pt"
    save_checkpoint(
        pt,
        module,
        model_name="cnn1d_small",
        model_kwargs={},
        num_classes=NUM_CLASSES,
        in_channels=SAMPLE_SHAPE[0],
        input_shape=SAMPLE_SHAPE,
        class_names=names,
    )
    onnx_path = export_onnx(module, folder / "cnn.onnx", dynamic_batch=True)
    return CheckpointArtifacts(module=module, pt=pt, onnx=onnx_path, class_names=names)
