"""Conformance tests every backend must pass, plus each runtime's own edge cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.backends import BACKENDS, Backend, Session, SessionOptions, session_from_artifact
from edgekd.backends.openvino_backend import compile_config
from edgekd.backends.torch_backend import session_from_module
from edgekd.bench.environment import cpu_fingerprint
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from tests.backends.tiny_models import SAMPLE_SHAPE, TinyArtifacts

BUILTIN = ("torch", "onnxruntime", "openvino")


def open_session(name: str, tiny: TinyArtifacts, options: SessionOptions | None = None) -> Session:
    """The tiny fp32 model on backend ``name`` (torch from memory: no .pt loader needed)."""
    if name == "torch":
        return session_from_module(tiny.module, SAMPLE_SHAPE, options)
    artifact = {"onnxruntime": tiny.onnx, "openvino": tiny.xml}[name]
    return session_from_artifact(name, artifact, options)


def reference_logits(tiny: TinyArtifacts, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return tiny.module(torch.from_numpy(x)).numpy()


def test_builtin_backends_are_registered() -> None:
    assert set(BUILTIN) <= set(BACKENDS.names())


def test_importing_packages_loads_no_runtime() -> None:
    code = (
        "import sys, edgekd.backends, edgekd.bench, edgekd.bench.schema, edgekd.bench.latency; "
        "print(','.join(m for m in ('torch', 'onnxruntime', 'openvino', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", BUILTIN)
def test_same_logits_as_torch(name: str, tiny: TinyArtifacts) -> None:
    session = open_session(name, tiny, SessionOptions(threads=1))
    for batch in (1, 5):
        x = tiny.frames[:batch]
        out = session.run(x)
        assert out.dtype == np.float32 and out.shape == (batch, 4)
        np.testing.assert_allclose(out, reference_logits(tiny, x), atol=1e-4, rtol=0)
    assert session.executed_precision == "fp32"
    assert session.requested_precision == "fp32"
    assert session.input_shape == (None, *SAMPLE_SHAPE)


@pytest.mark.parametrize("name", BUILTIN)
def test_wrong_sample_shape_names_both_shapes(name: str, tiny: TinyArtifacts) -> None:
    session = open_session(name, tiny)
    with pytest.raises(ShapeError) as info:
        session.run(np.zeros((2, 2, 64), dtype=np.float32))
    line = info.value.one_line()
    assert "[2, 2, 64]" in line and "[N, 2, 128]" in line


@pytest.mark.parametrize("name", BUILTIN)
def test_wrong_dtype_and_rank(name: str, tiny: TinyArtifacts) -> None:
    session = open_session(name, tiny)
    with pytest.raises(ShapeError, match="float32"):
        session.run(tiny.frames[:1].astype(np.float64))
    with pytest.raises(ShapeError):
        session.run(tiny.frames[0])  # no batch axis


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_artifact(name: str, tmp_path: Path) -> None:
    suffix = BACKENDS.get(name).suffixes[0]
    with pytest.raises(InputFileError, match="does not exist"):
        session_from_artifact(name, tmp_path / f"nothing{suffix}")


def test_wrong_suffix(tiny: TinyArtifacts) -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        session_from_artifact("onnxruntime", tiny.xml)


def test_unknown_backend_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        session_from_artifact("onnxrt", "x.onnx")
    assert "did you mean 'onnxruntime'" in info.value.one_line()


class _Missing(Backend):
    name = "missing"

    def _probe(self) -> str | None:
        return "missingrt is not installed: pip install missingrt"

    def _load(self, path: Path, options: SessionOptions) -> Session:
        raise AssertionError("never reached")


def test_unavailable_runtime_raises_with_reason(tiny: TinyArtifacts) -> None:
    with pytest.raises(RuntimeUnavailable, match="pip install missingrt"):
        _Missing().load(tiny.onnx)


def test_unsupported_precision_is_a_config_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"")  # never read: the precision check comes first
    with pytest.raises(ConfigError, match="does not run precision 'int8'"):
        session_from_artifact("torch", checkpoint, SessionOptions(precision="int8"))
    with pytest.raises(ConfigError, match="unknown precision"):
        SessionOptions(precision="fp8").validate()


# --- onnxruntime --------------------------------------------------------------------------


def test_ort_corrupt_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf \x00\x01\x02")
    with pytest.raises(InputFileError, match="not a loadable ONNX model"):
        session_from_artifact("onnxruntime", bad)


def test_ort_static_batch(tiny: TinyArtifacts) -> None:
    session = session_from_artifact("onnxruntime", tiny.onnx_static)
    assert session.input_shape == (1, *SAMPLE_SHAPE)
    assert session.static_batch == 1
    with pytest.raises(ShapeError) as info:
        session.run(tiny.frames[:2])
    assert "takes batch 1 only" in info.value.one_line()


def test_ort_int8_executes_int8(tiny: TinyArtifacts) -> None:
    session = session_from_artifact(
        "onnxruntime", tiny.onnx_int8, SessionOptions(precision="int8", threads=1)
    )
    assert session.executed_precision == "int8"
    out = session.run(tiny.frames)
    # Quantization changes the logits a little, not the picture.
    assert np.abs(out - reference_logits(tiny, tiny.frames)).max() < 0.1


def test_ort_extra_options(tiny: TinyArtifacts) -> None:
    options = SessionOptions(threads=1, extra={"graph_optimization_level": "basic"})
    session_from_artifact("onnxruntime", tiny.onnx, options).run(tiny.frames[:1])
    with pytest.raises(ConfigError, match="graph_optimization_level"):
        session_from_artifact(
            "onnxruntime", tiny.onnx, SessionOptions(extra={"graph_optimization_level": "max"})
        )


# --- openvino -----------------------------------------------------------------------------


def test_openvino_reads_onnx_and_reshapes_static_batch(tiny: TinyArtifacts) -> None:
    session = session_from_artifact("openvino", tiny.onnx_static, SessionOptions(threads=1))
    assert session.input_shape == (None, *SAMPLE_SHAPE)  # a batch-dynamic twin was prepared
    for batch in (1, 3):
        np.testing.assert_allclose(
            session.run(tiny.frames[:batch]), reference_logits(tiny, tiny.frames[:batch]), atol=1e-4, rtol=0
        )


def test_openvino_precision_is_read_back(tiny: TinyArtifacts) -> None:
    session = session_from_artifact("openvino", tiny.xml, SessionOptions(precision="bf16"))
    assert session.requested_precision == "bf16"
    isa = cpu_fingerprint()["isa"] or {}
    if not any(isa.get(flag) for flag in ("avx512_bf16", "amx_bf16")):
        # Without bf16 hardware the plugin keeps f32, and the session must say so.
        assert session.executed_precision == "fp32"
    else:
        assert session.executed_precision in ("bf16", "fp32")


def test_openvino_int8_executes_int8(tiny: TinyArtifacts) -> None:
    session = session_from_artifact("openvino", tiny.onnx_int8, SessionOptions(precision="int8"))
    assert session.executed_precision == "int8"
    assert np.abs(session.run(tiny.frames) - reference_logits(tiny, tiny.frames)).max() < 0.1


def test_openvino_ir_without_bin(tiny: TinyArtifacts, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(tiny.xml.read_bytes())
    with pytest.raises(InputFileError, match="no weights file"):
        session_from_artifact("openvino", lonely)


def test_openvino_corrupt_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<net><oops")
    bad.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(InputFileError, match="not a readable OpenVINO model"):
        session_from_artifact("openvino", bad)


def test_openvino_absent_device(tiny: TinyArtifacts) -> None:
    with pytest.raises(RuntimeUnavailable, match="not present"):
        session_from_artifact("openvino", tiny.xml, SessionOptions(device="NPU.7"))


def test_openvino_compile_config() -> None:
    config = compile_config("CPU", SessionOptions(threads=2, precision="fp32", extra={"NUM_STREAMS": "2"}))
    assert config == {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "2",
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": "2",
    }
    assert "INFERENCE_PRECISION_HINT" not in compile_config("CPU", SessionOptions(precision="auto"))


# --- torch ----------------------------------------------------------------------------------


def test_torch_bf16_casts_a_copy(tiny: TinyArtifacts) -> None:
    session = session_from_module(tiny.module, SAMPLE_SHAPE, SessionOptions(precision="bf16"))
    assert session.executed_precision == "bf16"
    assert next(tiny.module.parameters()).dtype == torch.float32  # the caller's module is untouched
    out = session.run(tiny.frames[:2])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference_logits(tiny, tiny.frames[:2]), atol=0.1)


def test_torch_threads_are_applied(tiny: TinyArtifacts) -> None:
    before = torch.get_num_threads()
    try:
        session_from_module(tiny.module, SAMPLE_SHAPE, SessionOptions(threads=1)).run(tiny.frames[:1])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
