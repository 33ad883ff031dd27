"""ONNX export extras: onnxslim simplification (optional) and external data above a size threshold."""

from __future__ import annotations

import sys

import numpy as np
import onnx

# onnxslim is in the test extra (edgekd[simplify]): a broken install must fail, not skip.
import onnxslim  # noqa: F401
import pytest

from edgekd.config import from_dict
from edgekd.errors import ConfigError, RuntimeUnavailable
from edgekd.export.onnx_export import ExportConfig, export_onnx, inspect_onnx, run_onnxruntime
from edgekd.export.onnx_graph import external_data_files, weight_bytes
from tests.export.tiny_nets import iq_frames, trained_net


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return iq_frames(32, seed=7)[0]


def test_simplified_export_is_checked_and_noted(tmp_path, frames):
    path = tmp_path / "slim.onnx"
    report = export_onnx(trained_net("separable"), frames, path, ExportConfig(simplify=True))
    assert report.passed and report.max_abs_error < 1e-4
    assert any(note.startswith("onnxslim ") and " nodes" in note for note in report.notes)
    assert "onnxslim" in report.summary()
    assert inspect_onnx(path)["inputs"][0]["shape"][1:] == [2, 128]
    assert _files(tmp_path) == ["slim.onnx"]


def test_missing_onnxslim_is_one_line_and_writes_nothing(tmp_path, frames, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    with pytest.raises(RuntimeUnavailable, match="needs onnxslim") as info:
        export_onnx(trained_net("conv"), frames, tmp_path / "m.onnx", ExportConfig(simplify=True))
    assert "export.simplify: false" in info.value.one_line()
    assert _files(tmp_path) == []


def test_weights_above_threshold_go_to_a_sidecar_and_still_run(tmp_path, frames):
    path = tmp_path / "big.onnx"
    cfg = ExportConfig(external_data_threshold_mb=0.001)  # ~1 KiB: the tiny net counts as "large"
    report = export_onnx(trained_net("conv"), frames, path, cfg)
    assert report.passed and "weights in external data big.onnx.data" in report.notes
    assert _files(tmp_path) == ["big.onnx", "big.onnx.data"]  # no work folder left
    assert external_data_files(path) == ["big.onnx.data"]
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    assert weight_bytes(model) > 1024 and path.stat().st_size < (tmp_path / "big.onnx.data").stat().st_size
    single = tmp_path / "one" / "single.onnx"
    export_onnx(trained_net("conv"), frames, single, ExportConfig())
    np.testing.assert_array_equal(run_onnxruntime(path, frames), run_onnxruntime(single, frames))


def test_re_export_below_threshold_removes_the_stale_sidecar(tmp_path, frames):
    path = tmp_path / "m.onnx"
    export_onnx(trained_net("conv"), frames, path, ExportConfig(external_data_threshold_mb=0.001))
    export_onnx(trained_net("conv"), frames, path, ExportConfig())
    assert _files(tmp_path) == ["m.onnx"] and external_data_files(path) == []


def test_threshold_must_not_be_negative():
    with pytest.raises(ConfigError, match="external_data_threshold_mb"):
        from_dict(ExportConfig, {"external_data_threshold_mb": -1})
