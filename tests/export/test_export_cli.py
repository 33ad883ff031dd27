"""``edgekd export`` through the real CLI: NaN/Inf models are refused at the door, and a
failed export leaves the output folder exactly as it was (new files gone, old pairs back)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.artifacts import read_manifest, sha256_file
from edgekd.cli.main import cli
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ParityError
from edgekd.export.onnx_export import ExportConfig, ExportError, export_onnx
from edgekd.models.checkpoint import save_checkpoint
from edgekd.models.factory import create_model
from tests.export.tiny_nets import CLASSES, iq_frames

MODEL = "edgekd:cnn1d_small"


def _checkpoint(path, seed: int, poison: float | None = None) -> None:
    torch.manual_seed(seed)
    model = create_model(MODEL, CLASSES, 2)
    if poison is not None:
        with torch.no_grad():
            next(model.parameters()).view(-1)[:3] = poison
    save_checkpoint(
        path,
        model,
        model_name=MODEL,
        model_kwargs={},
        num_classes=CLASSES,
        in_channels=2,
        input_shape=(2, 128),
        class_names=[f"c{i}" for i in range(CLASSES)],
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    frames, labels = iq_frames(24, seed=1)
    ArrayDataset(
        x=frames, y=labels, class_names=[f"c{i}" for i in range(CLASSES)], split=np.repeat([0, 1, 2], 8)
    ).save_npz(folder / "data.npz")
    _checkpoint(folder / "student.pt", seed=0)
    _checkpoint(folder / "retrained.pt", seed=1)
    _checkpoint(folder / "nan.pt", seed=0, poison=float("nan"))
    _checkpoint(folder / "inf.pt", seed=0, poison=float("inf"))
    return folder


def _export(checkpoint, data, out, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["export", str(checkpoint), "--data", str(data), "--out", str(out), *extra]
    )
    return result.exit_code, result.output


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), output
    assert "Traceback" not in output
    return lines[0]


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_non_finite_weights_are_refused_and_nothing_is_written(tmp_path, inputs, kind):
    out = tmp_path / "new" / "out"
    code, output = _export(inputs / f"{kind}.pt", inputs / "data.npz", out, "--no-openvino")
    assert code == 2
    line = _one_line(output)
    assert "NaN/Inf weights" in line and "features.0.0.weight" in line, line
    assert not (tmp_path / "new").exists()  # not even the folders it would have made


class _Overflow(nn.Module):
    """Finite weights, infinite outputs: exp of large logits overflows float32."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(256, CLASSES)
        nn.init.constant_(self.head.weight, 10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.head(x.flatten(1)) * 100.0)


def test_non_finite_outputs_fail_parity_by_name(tmp_path):
    frames = np.abs(iq_frames(12, seed=4)[0]) + 1.0
    with pytest.raises(ParityError) as info:
        export_onnx(_Overflow(), frames, tmp_path / "m.onnx", ExportConfig())
    assert "outputs of PyTorch model _Overflow are NaN/Inf on 12 of 12 frames" in info.value.one_line()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_later_stage_restores_the_previous_export(tmp_path, inputs, monkeypatch):
    """OpenVINO fails after the new .onnx and its manifest are in place: the old pair (and the
    old IR) must come back, byte for byte, with nothing else beside them."""
    out = tmp_path / "out"
    code, output = _export(inputs / "student.pt", inputs / "data.npz", out)
    assert code == 0, output
    before = _snapshot(out)
    assert sorted(before) == [
        "student.bin",
        "student.onnx",
        "student.onnx.json",
        "student.xml",
        "student.xml.json",
    ]

    def broken_compile(*_args, **_kwargs):
        raise ExportError("OpenVINO CPU plugin cannot compile the IR: simulated")

    from edgekd.export import openvino_export  # (edgekd.export is also the public function)

    monkeypatch.setattr(openvino_export, "compile_cpu", broken_compile)
    retrained = out.parent / "student.pt"  # same stem, other weights: every output file would change
    retrained.write_bytes((inputs / "retrained.pt").read_bytes())
    code, output = _export(retrained, inputs / "data.npz", out, "-q")
    assert code == 2
    assert "simulated" in _one_line(output)
    assert _snapshot(out) == before
    assert read_manifest(out / "student.onnx")["sha256"] == sha256_file(out / "student.onnx")
