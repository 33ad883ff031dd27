"""Precision labels come from what will execute: the graph AND the session settings.

A Q/DQ graph runs integer kernels in ONNX Runtime only when ORT fuses it (optimisation
level extended/all on the CPU provider); disabled or basic, Q/DQ is emulated in float. The
labels are checked against ORT's own optimised graph, so they cannot drift from reality.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgekd.backends.base import SessionOptions, session_from_artifact
from edgekd.backends.onnxruntime_backend import resolve_ort_options
from edgekd.runtime.onnxruntime_open import open_ort
from edgekd.runtime.precision import (
    artifact_is_int8,
    onnx_executed_precision,
    onnx_quantization,
    openvino_ir_is_int8,
)
from tests.backends.tiny_models import TinyArtifacts

LEVELS = ("disable", "basic", "extended", "all")


def weight_only(src: Path, out: Path) -> Path:
    """Every Conv/Gemm weight stored int8 behind a DequantizeLinear; activations stay float."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        name = node.input[1] if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 else None
        if name in inits:
            w = numpy_helper.to_array(inits[name])
            scale = np.float32(max(float(np.abs(w).max()), 1e-8) / 127)
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            model.graph.initializer.remove(inits.pop(name))
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(q, f"{name}_q"),
                    numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
                    numpy_helper.from_array(np.array(0, np.int8), f"{name}_z"),
                ]
            )
            nodes.append(
                helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name])
            )
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def wo(tiny: TinyArtifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return weight_only(tiny.onnx, tmp_path_factory.mktemp("wo") / "tiny_wo.onnx")


def _ort_fuses(path: Path, level: str, tmp_path: Path) -> bool:
    """Ground truth: does ORT's optimised graph hold integer kernels at this level?"""
    optimized = tmp_path / f"opt_{level}.onnx"
    settings = dataclasses.replace(resolve_ort_options(_opts(level)), optimized_model_path=str(optimized))
    open_ort(path, settings)
    ops = {n.op_type for n in onnx.load(str(optimized)).graph.node}
    return any(op.startswith("QLinear") or op in ("QGemm", "ConvInteger", "MatMulInteger") for op in ops)


def _opts(level: str, **extra: str) -> SessionOptions:
    return SessionOptions(threads=1, precision="int8", extra={"graph_optimization_level": level, **extra})


def test_quantization_kinds(tiny: TinyArtifacts, wo: Path) -> None:
    assert onnx_quantization(onnx.load(str(tiny.onnx))) == "none"
    assert onnx_quantization(onnx.load(str(tiny.onnx_int8))) == "qdq"
    assert onnx_quantization(onnx.load(str(wo))) == "weight-only"
    assert [artifact_is_int8(p) for p in (tiny.onnx, tiny.onnx_int8, wo, tiny.xml)] == [
        False,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize("level", LEVELS)
def test_qdq_label_follows_what_ort_runs(tiny: TinyArtifacts, tmp_path: Path, level: str) -> None:
    session = session_from_artifact("onnxruntime", tiny.onnx_int8, _opts(level))
    expected = "int8" if _ort_fuses(tiny.onnx_int8, level, tmp_path) else "fp32"
    assert session.executed_precision == expected
    assert expected == ("int8" if level in ("extended", "all") else "fp32")  # the rule, spelled out


def test_disabling_qdq_fusion_by_config_entry_is_float(tiny: TinyArtifacts) -> None:
    options = _opts("all", **{"session.disable_quant_qdq": "1"})
    assert session_from_artifact("onnxruntime", tiny.onnx_int8, options).executed_precision == "fp32"
    cuda = resolve_ort_options(SessionOptions(device="CUDA"))
    assert onnx_executed_precision(tiny.onnx_int8, cuda) == "fp32"  # CUDA runs Q/DQ around float ops
    trt = resolve_ort_options(SessionOptions(device="TENSORRT"))
    assert onnx_executed_precision(tiny.onnx_int8, trt) == "int8"


@pytest.mark.parametrize("level", LEVELS)
def test_weight_only_computes_in_float_at_every_level(wo: Path, tmp_path: Path, level: str) -> None:
    session = session_from_artifact("onnxruntime", wo, _opts(level))
    assert not _ort_fuses(wo, level, tmp_path)
    assert session.executed_precision == "fp32"
    logits = session.run(np.ones((2, 2, 128), np.float32))
    assert logits.shape == (2, 4) and np.isfinite(logits).all()


def test_integer_ops_are_int8_whatever_the_level(tiny: TinyArtifacts, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dynamic = tmp_path / "dyn.onnx"
    quantize_dynamic(
        str(tiny.onnx), str(dynamic), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"]
    )
    assert onnx_quantization(onnx.load(str(dynamic))) == "integer"
    assert session_from_artifact("onnxruntime", dynamic, _opts("disable")).executed_precision == "int8"


def test_openvino_ir_int8_is_read_from_layers_not_text(tmp_path: Path) -> None:
    quantized = tmp_path / "q.xml"
    quantized.write_text('<net name="m"><layers><layer id="0" name="fq" type="FakeQuantize"/></layers></net>')
    named = tmp_path / "named.xml"
    named.write_text(
        '<net name="FakeQuantize"><layers>'
        '<layer id="0" name="FakeQuantize_1" type="Convolution"/></layers></net>'
    )
    assert openvino_ir_is_int8(quantized) and not openvino_ir_is_int8(named)


def test_bench_and_remote_label_the_same_way(tiny: TinyArtifacts, tmp_path: Path) -> None:
    """The local bench entry and the host-side label of a remote entry agree, for each level."""
    from edgekd.bench.latency import LatencyConfig
    from edgekd.bench.runner import BenchCandidate, BenchConfig, run_bench
    from edgekd.data.dataset import ArrayDataset
    from edgekd.remote.executor import entry_from_result

    dataset = ArrayDataset(x=tiny.frames, y=np.arange(16) % 4, class_names=list("ABCD"))
    fast = LatencyConfig(warmup_runs=1, warmup_seconds=0.0, min_runs=2, min_seconds=0.0)
    cfg = BenchConfig(latency=fast, roofline=False, threads=1)
    for level, expected in (("disable", "fp32"), ("all", "int8")):
        cand = BenchCandidate("onnxruntime", "int8", tiny.onnx_int8, options=_opts(level))
        doc = run_bench([cand], dataset, cfg, name="p", out_dir=tmp_path)
        assert doc["entries"][0]["executed_precision"] == expected
        device = {
            "status": "ok",
            "output_width": 4,
            "executed_precision": None,  # the device runner leaves ORT's label to the host
            "predictions": [0] * 16,
            "latency": doc["entries"][0]["latency_ms"] | {"noisy": False},
            "load_ms": 1.0,
        }
        entry, _ = entry_from_result(cand, device, dataset, cfg, tmp_path, None)
        assert entry["executed_precision"] == expected
