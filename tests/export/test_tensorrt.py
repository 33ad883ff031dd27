"""TensorRT: everything that runs without a GPU (profile shapes, calibration batches, cache keys,
builder flags per major version, symmetric Q/DQ for explicit quantization), and the real engine
build, which skips with its reason where TensorRT or a CUDA GPU is absent."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.artifacts import sha256_file
from edgekd.config import from_dict
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from edgekd.export.onnx_export import ExportConfig, export_onnx, run_onnxruntime
from edgekd.export.tensorrt.builder import engine_from_onnx, tensorrt_unavailable_reason
from edgekd.export.tensorrt.engine_cache import (
    cached_engine_is_sound,
    record_cached_engine,
    verify_engine_bytes,
)
from edgekd.export.tensorrt.plan import (
    TensorRTConfig,
    builder_flags,
    calibration_batches,
    engine_cache_key,
    engine_cache_parts,
    profile_shapes,
    resolve_int8_mode,
    strongly_typed,
)
from edgekd.quantize.config import QuantizeError
from edgekd.quantize.coverage import describe_quantized
from edgekd.quantize.ort_static import QuantizeConfig, quantize_onnx_static
from edgekd.quantize.tensorrt_qdq import check_tensorrt_qdq, quantize_for_tensorrt
from tests.export.tiny_nets import iq_frames, trained_net

TRT_REASON = tensorrt_unavailable_reason()
SHA = "ab" * 32


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("trt") / "student.onnx"
    export_onnx(trained_net("conv"), iq_frames(16, seed=2)[0], path, ExportConfig())
    return path


def test_profile_batch_range_with_opt_from_the_target():
    cfg = TensorRTConfig(min_batch=1, max_batch=32)
    shapes = profile_shapes("input", ["batch", 2, 128], [8, 2, 128], cfg)
    assert (shapes.min, shapes.opt, shapes.max) == ((1, 2, 128), (8, 2, 128), (32, 2, 128))
    explicit = profile_shapes("input", ["batch", 2, 128], [8, 2, 128], TensorRTConfig(opt_batch=4))
    assert explicit.opt == (4, 2, 128)
    # A target batch beyond max_batch is clamped; no target -> opt is min_batch.
    assert profile_shapes("input", ["batch", 2, 128], [64, 2, 128], cfg).opt == (32, 2, 128)
    assert profile_shapes("input", ["batch", 2, 128], None, cfg).opt == (1, 2, 128)


def test_profile_dynamic_spatial_dims_come_from_the_target():
    cfg = TensorRTConfig(max_batch=4)
    shapes = profile_shapes("image", ["batch", 3, "h", "w"], [1, 3, 224, 224], cfg)
    assert shapes.max == (4, 3, 224, 224)
    with pytest.raises(ShapeError, match="axis 2 is dynamic"):
        profile_shapes("image", ["batch", 3, "h", "w"], None, cfg)


def test_static_batch_gives_a_fixed_profile():
    shapes = profile_shapes("input", [1, 2, 128], [8, 2, 128], TensorRTConfig())
    assert shapes.min == shapes.opt == shapes.max == (1, 2, 128)


def test_profile_batches_are_validated():
    with pytest.raises(ConfigError, match="min_batch <= max_batch"):
        from_dict(TensorRTConfig, {"min_batch": 8, "max_batch": 4})
    with pytest.raises(ConfigError, match="opt_batch 64 is outside"):
        from_dict(TensorRTConfig, {"opt_batch": 64})


def test_calibration_batches_are_fixed_size_in_order():
    frames = np.arange(50 * 2 * 4, dtype=np.float64).reshape(50, 2, 4)
    batches = list(calibration_batches(frames, 16))
    assert [b.shape for b in batches] == [(16, 2, 4)] * 3  # the short last batch (2 frames) is dropped
    assert all(b.dtype == np.float32 and b.flags["C_CONTIGUOUS"] for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), frames[:48].astype(np.float32))
    with pytest.raises(ShapeError, match="fewer than one calibration batch"):
        list(calibration_batches(frames[:10], 16))


def _profiles(target_shape, onnx_shape=("batch", 2, 128), cfg=None):
    return [profile_shapes("input", list(onnx_shape), target_shape, cfg or TensorRTConfig())]


P = _profiles([1, 2, 128])


def test_cache_key_changes_with_each_thing_that_makes_an_engine():
    cfg = TensorRTConfig(precision="fp16")
    base = engine_cache_key(SHA, "10.8.0", (8, 7), cfg, 10, profiles=P)
    assert base == engine_cache_key(SHA, "10.8.0", (8, 7), TensorRTConfig(precision="fp16"), 10, profiles=P)
    others = {
        engine_cache_key("cd" * 32, "10.8.0", (8, 7), cfg, 10, profiles=P),  # another ONNX
        engine_cache_key(SHA, "10.9.0", (8, 7), cfg, 10, profiles=P),  # another TensorRT
        engine_cache_key(SHA, "10.8.0", (8, 9), cfg, 10, profiles=P),  # another GPU
        engine_cache_key(SHA, "10.8.0", (8, 7), TensorRTConfig(precision="int8"), 10, profiles=P),  # flags
        engine_cache_key(
            SHA, "10.8.0", (8, 7), TensorRTConfig(precision="fp16", max_batch=64), 10, profiles=P
        ),
        # The optimization profile: the target's batch sets opt, its input_shape the dynamic dims.
        engine_cache_key(SHA, "10.8.0", (8, 7), cfg, 10, profiles=_profiles([8, 2, 128])),
        engine_cache_key(
            SHA, "10.8.0", (8, 7), cfg, 10, profiles=_profiles([1, 2, 256], onnx_shape=("batch", 2, "time"))
        ),
    }
    assert base not in others and len(others) == 7
    # Where the cache lives does not change what the engine is.
    assert base == engine_cache_key(
        SHA, "10.8.0", (8, 7), TensorRTConfig(precision="fp16", cache_dir="x"), 10, profiles=P
    )


def test_the_key_hashes_the_profile_shapes_it_records():
    cfg = TensorRTConfig(precision="fp16", max_batch=16)
    profiles = _profiles([4, 2, 128], cfg=cfg)
    parts = engine_cache_parts(SHA, "10.8.0", (8, 7), cfg, 10, profiles=profiles)
    assert parts["profiles"] == [
        {"name": "input", "min": [1, 2, 128], "opt": [4, 2, 128], "max": [16, 2, 128]}
    ]
    import hashlib
    import json

    expected = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
    assert engine_cache_key(SHA, "10.8.0", (8, 7), cfg, 10, profiles=profiles) == expected


def test_a_cached_engine_is_used_only_while_its_bytes_match_the_record(tmp_path):
    engine = tmp_path / "fp16-k1.engine"
    engine.write_bytes(b"serialized engine")
    assert not cached_engine_is_sound(engine, "k1")  # no record: built again
    record_cached_engine(engine, "k1", {"profiles": []})
    assert cached_engine_is_sound(engine, "k1")
    assert not cached_engine_is_sound(engine, "k2")  # a record for another key
    engine.write_bytes(b"swapped engine!!!")  # same name, other bytes
    assert not cached_engine_is_sound(engine, "k1")
    # A link to bytes elsewhere is not followed, even to the very bytes recorded.
    elsewhere = tmp_path / "elsewhere.engine"
    elsewhere.write_bytes(b"serialized engine")
    engine.unlink()
    engine.symlink_to(elsewhere)
    assert not cached_engine_is_sound(engine, "k1")
    (tmp_path / "fp16-k1.engine.json").write_text("{not json")
    assert not cached_engine_is_sound(engine, "k1")


def test_an_engine_that_differs_from_its_manifest_is_not_deserialized(tmp_path):
    from edgekd.artifacts import write_manifest
    from edgekd.backends.base import SessionOptions
    from edgekd.backends.tensorrt_backend import TensorRTBackend

    engine = tmp_path / "student.fp16.engine"
    engine.write_bytes(b"the engine edgekd built")
    write_manifest(engine, "tensorrt-engine")
    verify_engine_bytes(engine, engine.read_bytes())  # matches: no error
    engine.write_bytes(b"a swapped-in engine")
    with pytest.raises(InputFileError, match="not the engine its manifest records") as info:
        verify_engine_bytes(engine, engine.read_bytes())
    assert str(engine) in info.value.one_line()
    # The backend checks the bytes it read before TensorRT is even imported.
    with pytest.raises(InputFileError, match="changed or swapped"):
        TensorRTBackend()._load(engine, SessionOptions())
    # An engine without a manifest is the person's own (e.g. from trtexec): no record to check.
    engine.with_name(engine.name + ".json").unlink()
    verify_engine_bytes(engine, engine.read_bytes())


def test_builder_flags_and_int8_routes_per_major_version():
    int8 = TensorRTConfig(precision="int8")
    assert builder_flags(TensorRTConfig(precision="fp16"), 10) == ["FP16"]
    assert builder_flags(int8, 10) == ["FP16", "INT8"] and resolve_int8_mode(int8, 10) == "calibrator"
    assert not strongly_typed(int8, 10)
    qdq10 = TensorRTConfig(precision="int8", int8_mode="qdq")
    assert builder_flags(qdq10, 10) == [] and strongly_typed(qdq10, 10)
    assert resolve_int8_mode(int8, 11) == "qdq" and builder_flags(int8, 11) == [] and strongly_typed(int8, 11)
    with pytest.raises(ConfigError, match="removed implicit INT8 calibration"):
        resolve_int8_mode(TensorRTConfig(precision="int8", int8_mode="calibrator"), 11)
    with pytest.raises(ConfigError, match="no FP16 builder flag"):
        builder_flags(TensorRTConfig(precision="fp16"), 11)


def test_qdq_for_tensorrt_is_symmetric_int8_with_float_bias(tmp_path, fp32):
    out = tmp_path / "student.trt-int8.onnx"
    calib = iq_frames(64, seed=5)[0]
    summary = quantize_for_tensorrt(fp32, out, calib, calibration_method="minmax")
    assert summary["quantize_linear"] > 0 and summary["per_channel_weights"] == 3
    assert {"Conv", "Gemm"} <= set(summary["quantized_ops"])
    graph = describe_quantized(out)
    assert graph["activation_zero_point_dtypes"] == ["int8"] and graph["weight_dtypes"] == ["int8"]
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert all(inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any() for n in qdq)
    assert not any(inits[n.input[0]].dtype == np.int32 for n in qdq if n.input[0] in inits)  # biases float
    frames = iq_frames(128, seed=6)[0]
    agree = np.mean(run_onnxruntime(out, frames).argmax(1) == run_onnxruntime(fp32, frames).argmax(1))
    assert agree >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.trt-int8.onnx"]


def test_the_pipeline_makes_the_qdq_source_through_the_tensorrt_quantizer(tmp_path, fp32):
    """Explicit INT8 builds from ``<stem>.trt-qdq.onnx``, made by the ``tensorrt-qdq`` quantizer
    (TensorRT's calibrator choice of ranges, entropy) with its manifest, on any machine."""
    from edgekd.artifacts import read_manifest
    from edgekd.pipeline.tensorrt_stage import _qdq_source

    cfg = TensorRTConfig(precision="int8", int8_mode="qdq")
    source = _qdq_source(fp32, tmp_path, cfg, iq_frames(64, seed=5)[0])
    assert source == tmp_path / "student.trt-qdq.onnx"
    assert check_tensorrt_qdq(source)["quantize_linear"] > 0
    manifest = read_manifest(source)
    assert manifest["kind"] == "onnx-qdq-tensorrt" and manifest["config"]["int8_mode"] == "qdq"


def test_asymmetric_ort_model_is_rejected_for_tensorrt(tmp_path, fp32):
    cpu = tmp_path / "cpu.onnx"
    cfg = QuantizeConfig(activation_type="uint8", reduce_range=True)
    quantize_onnx_static(fp32, cpu, iq_frames(32, seed=5)[0], cfg)
    with pytest.raises(QuantizeError, match="TensorRT needs int8 zero points of 0"):
        check_tensorrt_qdq(cpu)


@pytest.mark.skipif(TRT_REASON is None, reason="TensorRT and a CUDA GPU are present")
def test_engine_build_without_tensorrt_says_why(tmp_path, fp32):
    with pytest.raises(RuntimeUnavailable) as info:
        engine_from_onnx(fp32, TensorRTConfig(cache_dir=str(tmp_path / "cache")))
    assert info.value.message == TRT_REASON
    assert TRT_REASON.startswith(("TensorRT is not installed", "no CUDA GPU"))
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(TRT_REASON is not None, reason=TRT_REASON or "")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_engine_builds_once_then_comes_from_the_cache(tmp_path, fp32, precision):
    cfg = TensorRTConfig(precision=precision, int8_mode="qdq", max_batch=8, cache_dir=str(tmp_path / "cache"))
    source = fp32
    if precision == "int8":
        source = tmp_path / "qdq.onnx"
        quantize_for_tensorrt(fp32, source, iq_frames(64, seed=5)[0])
    first = engine_from_onnx(source, cfg, target_shape=[1, 2, 128])
    assert not first.cached and first.path.stat().st_size > 0
    assert list((tmp_path / "cache").glob("timing-*.cache"))
    again = engine_from_onnx(source, cfg, target_shape=[1, 2, 128])
    assert again.cached and again.path == first.path and again.key == first.key
    assert again.sha256 == first.sha256 == sha256_file(first.path)
    # Another target batch is another optimization profile: another engine.
    other = engine_from_onnx(source, cfg, target_shape=[4, 2, 128])
    assert not other.cached and other.key != first.key
    # Bytes swapped into the cache under the same name are not used: the engine is built again.
    first.path.write_bytes(other.path.read_bytes())
    rebuilt = engine_from_onnx(source, cfg, target_shape=[1, 2, 128])
    assert not rebuilt.cached and rebuilt.path == first.path and sha256_file(rebuilt.path) == rebuilt.sha256


def test_cache_key_of_the_calibrator_route_follows_the_calibration_frames():
    int8 = TensorRTConfig(precision="int8", int8_mode="calibrator")
    a = engine_cache_key(SHA, "10.8.0", (8, 7), int8, 10, calibration_sha256="11" * 32, profiles=P)
    b = engine_cache_key(SHA, "10.8.0", (8, 7), int8, 10, calibration_sha256="22" * 32, profiles=P)
    assert a != b
    # Q/DQ engines carry their scales in the ONNX itself: the frames add nothing to the key.
    qdq = TensorRTConfig(precision="int8", int8_mode="qdq")
    assert engine_cache_key(SHA, "10.8.0", (8, 7), qdq, 10, "11" * 32, profiles=P) == engine_cache_key(
        SHA, "10.8.0", (8, 7), qdq, 10, "22" * 32, profiles=P
    )


def _layer_info(*formats: str, reformat: str | None = None) -> str:
    import json

    layers = [
        {"Name": f"l{i}", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": f}]}
        for i, f in enumerate(formats)
    ]
    if reformat:
        layers.append({"LayerType": "Reformat", "Outputs": [{"Format/Datatype": reformat}]})
    return json.dumps({"Layers": layers})


def test_engine_precision_is_read_from_the_inspectors_layer_formats():
    from edgekd.backends.tensorrt_backend import precision_from_layer_info

    assert precision_from_layer_info(_layer_info("Float NCHW", "Float NCHW")) == "fp32"
    assert precision_from_layer_info(_layer_info("Half NC/8HW8", "Float NCHW")) == "fp16"
    assert precision_from_layer_info(_layer_info("Int8 NC/32HW32", "Half NCHW")) == "int8"
    # A reformat to half between float layers computes nothing in half.
    assert precision_from_layer_info(_layer_info("Float NCHW", reformat="Half NCHW")) == "fp32"
    # Engines built without detailed profiling list names only: unknown, not a guess.
    assert precision_from_layer_info('{"Layers": ["conv1", "fc"]}') is None
    assert precision_from_layer_info("not json") is None


@pytest.mark.skipif(TRT_REASON is None, reason="TensorRT and a CUDA GPU are present")
def test_tensorrt_backend_reports_why_it_cannot_run(tmp_path):
    from edgekd.backends import BACKENDS
    from edgekd.backends.base import session_from_artifact

    assert BACKENDS.get("tensorrt").unavailable_reason() == TRT_REASON
    engine = tmp_path / "student.fp16.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(RuntimeUnavailable, match=r"TensorRT|CUDA"):
        session_from_artifact("tensorrt", engine)


@pytest.mark.skipif(TRT_REASON is None, reason="TensorRT and a CUDA GPU are present")
def test_export_tensorrt_request_fails_in_one_line_before_any_work(tmp_path):
    from click.testing import CliRunner

    from edgekd.cli.main import cli
    from edgekd.data.dataset import ArrayDataset

    data = tmp_path / "data.npz"
    x, y = iq_frames(16, seed=1)
    ArrayDataset(x=x, y=y, class_names=[str(i) for i in range(int(y.max()) + 1)]).save_npz(data)
    student = tmp_path / "student.pt"
    student.write_bytes(b"")  # never opened: the TensorRT check comes first
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["export", str(student), "--data", str(data), "--tensorrt", "fp16", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("edgekd: error: ") and TRT_REASON in result.output
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.skipif(TRT_REASON is None, reason="TensorRT and a CUDA GPU are present")
def test_recipe_export_skips_the_engine_with_the_reason(tmp_path, fp32):
    from edgekd.pipeline.tensorrt_stage import tensorrt_engine_stage

    lines: list[str] = []
    x, _ = iq_frames(8, seed=3)
    got = tensorrt_engine_stage(
        fp32,
        tmp_path,
        TensorRTConfig(precision="fp16", cache_dir=str(tmp_path / "cache")),
        parity_samples=x,
        reference=run_onnxruntime(fp32, x),
        calibration=None,
        log=lines.append,
    )
    assert got is None and not list(tmp_path.glob("*.engine"))
    assert lines == [f"export: TensorRT engine skipped — {TRT_REASON}"]


@pytest.mark.skipif(TRT_REASON is not None, reason=TRT_REASON or "")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_stage_writes_a_parity_checked_engine_the_backend_runs(tmp_path, fp32, precision):
    from edgekd.artifacts import read_manifest
    from edgekd.backends.base import session_from_artifact
    from edgekd.pipeline.tensorrt_stage import tensorrt_engine_stage

    x, _ = iq_frames(64, seed=3)
    reference = run_onnxruntime(fp32, x)
    engine = tensorrt_engine_stage(
        fp32,
        tmp_path,
        TensorRTConfig(precision=precision, max_batch=64, cache_dir=str(tmp_path / "cache")),
        parity_samples=x,
        reference=reference,
        calibration=iq_frames(64, seed=5)[0],
        required=True,
    )
    assert engine is not None and engine.name == f"student.{precision}.engine"
    metrics = read_manifest(engine)["metrics"]
    assert metrics["parity"]["passed"] and metrics["executed_precision"] in (precision, "fp32", "fp16")
    session = session_from_artifact("tensorrt", engine)
    np.testing.assert_allclose(session.run(x[:4]), reference[:4], atol=0.5)
