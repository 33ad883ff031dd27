"""Build (or reuse) a TensorRT engine from an ONNX file with the TensorRT Python API.

TensorRT 10: a weakly typed network with FP16/INT8 builder flags and, for implicit INT8,
an IInt8EntropyCalibrator2 over calibration frames; or, for ``int8_mode: qdq``, a
strongly typed network from a symmetric Q/DQ ONNX. TensorRT 11: always strongly typed,
no precision flags; INT8 only from the Q/DQ ONNX (``edgekd.quantize.tensorrt_qdq.quantize_for_tensorrt``).

Every build uses one optimization profile (dynamic batch min/opt/max, see
``plan.profile_shapes``) and a persistent timing cache per TensorRT version and GPU,
and lands in ``cache_dir`` under ``plan.engine_cache_key``: a second call with the same
ONNX, TensorRT, GPU, flags and profile shapes loads the engine instead of building it, once
its bytes are checked against the sha256 recorded at build time (``engine_cache``);
an engine that fails the check is built again.

Needs ``tensorrt`` and a CUDA GPU; without them ``RuntimeUnavailable`` says which is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_write_bytes, require_file, sha256_file
from edgekd.errors import ConfigError, RuntimeUnavailable
from edgekd.export.onnx_export import ExportError, as_samples, inspect_onnx, short_reason
from edgekd.export.tensorrt.engine_cache import cached_engine_is_sound, record_cached_engine
from edgekd.export.tensorrt.plan import (
    ProfileShapes,
    TensorRTConfig,
    builder_flags,
    calibration_batches,
    engine_cache_parts,
    engine_file_name,
    parts_key,
    profile_shapes,
    resolve_int8_mode,
    strongly_typed,
)


@dataclass
class EngineBuild:
    """``path``: the engine file; ``cached``: loaded from the cache, not built; ``build_s``: seconds."""

    path: Path
    key: str
    cached: bool
    tensorrt_version: str
    compute_capability: tuple[int, int]
    precision: str
    int8_mode: str | None
    build_s: float = 0.0
    sha256: str | None = None  # of the engine bytes, checked when a copy is made

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = os.fspath(self.path)
        return data


def tensorrt_unavailable_reason() -> str | None:
    """One line saying why TensorRT cannot build here ("TensorRT is not installed: ...",
    "no CUDA GPU: ..."), or None when it can."""
    try:
        _import_tensorrt()
        _compute_capability()
    except RuntimeUnavailable as exc:
        return exc.message
    return None


def engine_from_onnx(
    onnx_path: str | os.PathLike[str],
    cfg: TensorRTConfig,
    *,
    target_shape: list[int] | None = None,
    calibration_samples: np.ndarray | None = None,
) -> EngineBuild:
    """TensorRT engine for ``onnx_path`` in ``cfg.cache_dir``, built only when not cached.

    Args:
        onnx_path: FP32 ONNX, or for ``int8_mode`` "qdq" the symmetric Q/DQ ONNX.
        cfg: precision, INT8 route, profile batches, workspace, cache folder.
        target_shape: the target profile's ``input_shape`` (its batch is the profile's opt).
        calibration_samples: float32 ``[N, ...]`` frames, needed by the "calibrator" route.

    Raises:
        RuntimeUnavailable: no TensorRT or no CUDA GPU. ConfigError: a precision/route this
        TensorRT lacks, or a missing input. ExportError: parsing or building failed.
    """
    cfg.validate()
    trt = _import_tensorrt()
    capability = _compute_capability()
    onnx_path = require_file(onnx_path, "ONNX model", hint="run `edgekd export` first")
    major = int(str(trt.__version__).split(".")[0])
    flags = builder_flags(cfg, major)  # a precision this TensorRT lacks fails before any work
    mode = resolve_int8_mode(cfg, major)
    _check_int8_inputs(onnx_path, mode, calibration_samples)
    cache_dir = Path(cfg.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    profiles, key, parts = _cache_slot(
        onnx_path, cfg, str(trt.__version__), capability, major, target_shape, calibration_samples
    )
    engine_path = cache_dir / engine_file_name(key, cfg)
    result = EngineBuild(engine_path, key, True, str(trt.__version__), capability, cfg.precision, mode)
    if cached_engine_is_sound(engine_path, key):  # its bytes match the sha256 recorded at build
        return dataclasses.replace(result, sha256=sha256_file(engine_path))

    start = time.perf_counter()
    typed = strongly_typed(cfg, major) and major < 11  # 11: strongly typed is the only kind
    build = _Build(trt, onnx_path, cfg, typed=typed, flags=flags, profiles=profiles)
    timing_path = cache_dir / f"timing-trt{trt.__version__}-sm{capability[0]}{capability[1]}.cache"
    calibration_cache = cache_dir / f"calibration-{key}.cache"
    samples = calibration_samples if mode == "calibrator" else None
    plan = build.serialize(timing_path, samples, calibration_cache)
    atomic_write_bytes(engine_path, plan)
    record_cached_engine(engine_path, key, parts)
    atomic_write_bytes(timing_path, build.timing_cache())
    return dataclasses.replace(
        result, cached=False, build_s=time.perf_counter() - start, sha256=hashlib.sha256(plan).hexdigest()
    )


def _check_int8_inputs(onnx_path: Path, mode: str | None, calibration_samples: np.ndarray | None) -> None:
    """ConfigError when the INT8 route lacks its input: Q/DQ nodes ("qdq") or frames ("calibrator")."""
    if mode == "qdq":
        from edgekd.quantize.tensorrt_qdq import check_tensorrt_qdq

        if check_tensorrt_qdq(onnx_path)["quantize_linear"] == 0:
            raise ConfigError(
                f"{onnx_path.name} has no Q/DQ nodes, but int8_mode qdq builds INT8 from them",
                hint="make it with edgekd.quantize.tensorrt_qdq.quantize_for_tensorrt",
            )
    if mode == "calibrator" and calibration_samples is None:
        raise ConfigError(
            "TensorRT INT8 calibration needs calibration frames", hint="pass calibration_samples"
        )


class _Build:
    """One engine build: the parsed network, its builder config, and the serialized plan."""

    def __init__(
        self,
        trt: Any,
        onnx_path: Path,
        cfg: TensorRTConfig,
        *,
        typed: bool,
        flags: Any,
        profiles: list[ProfileShapes],
    ) -> None:
        """``typed``: a strongly typed network (TensorRT 11 has only those: pass False there);
        ``flags``: BuilderFlag names; ``profiles``: min/opt/max shapes of every input."""
        self.trt, self.onnx_path, self.cfg = trt, onnx_path, cfg
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.builder = trt.Builder(self.logger)
        self.network = self.builder.create_network(
            1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
        )
        self._parse()
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
        # Keeps per-layer formats in the engine, so the backend can read what precision runs.
        self.config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        for flag in flags:
            self.config.set_flag(getattr(trt.BuilderFlag, flag))
        self.profile = self.builder.create_optimization_profile()  # the one profile
        for shapes in profiles:
            self.profile.set_shape(shapes.name, shapes.min, shapes.opt, shapes.max)
        self.config.add_optimization_profile(self.profile)

    def _parse(self) -> None:
        parser = self.trt.OnnxParser(self.network, self.logger)
        self._parser = parser  # the network refers to the parser's weights: keep it alive
        if not parser.parse_from_file(os.fspath(self.onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(
                f"TensorRT {self.trt.__version__} cannot parse {self.onnx_path.name}: "
                f"{errors or 'unknown error'}",
                hint="check the opset and ops against TensorRT's ONNX operator support",
            )

    def serialize(self, timing_path: Path, samples: np.ndarray | None, calibration_cache: Path) -> bytes:
        """The engine's bytes, checked to deserialize; the timing cache is read from ``timing_path``,
        and ``samples`` (not None: the calibrator route) calibrate INT8 into ``calibration_cache``."""
        trt, config = self.trt, self.config
        if samples is not None:
            from edgekd.export.tensorrt.calibrator import entropy_calibrator

            frames = as_samples(samples, "calibration samples")
            batches = list(calibration_batches(frames, self.cfg.calibration_batch))
            config.int8_calibrator = entropy_calibrator(trt, batches, calibration_cache)
            config.set_calibration_profile(self.profile)  # dynamic shapes: calibrate with this profile
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
        config.set_timing_cache(timing, False)
        serialized = self.builder.build_serialized_network(self.network, config)
        name = self.onnx_path.name
        if serialized is None:
            raise ExportError(
                f"TensorRT {trt.__version__} could not build an engine for {name} ({self.cfg.precision})",
                hint="run with a larger tensorrt.workspace_mb or another precision; "
                "TensorRT's log has the cause",
            )
        plan = bytes(serialized)
        if trt.Runtime(self.logger).deserialize_cuda_engine(plan) is None:
            raise ExportError(f"TensorRT built an engine for {name} that it cannot load")
        return plan

    def timing_cache(self) -> bytes:
        """The timing cache after the build, for the next build on this TensorRT and GPU."""
        return bytes(self.config.get_timing_cache().serialize())


def _cache_slot(
    onnx_path: Path,
    cfg: TensorRTConfig,
    trt_version: str,
    capability: tuple[int, int],
    major: int,
    target_shape: list[int] | None,
    calibration_samples: np.ndarray | None,
) -> tuple[list[ProfileShapes], str, dict[str, Any]]:
    """The optimization profile of every input, the cache key and what it hashes.

    The profile is part of what an engine is (its opt batch and dynamic dims come from the
    target), so it is computed before the key and the build uses the same shapes.
    """
    calib_digest = None
    if resolve_int8_mode(cfg, major) == "calibrator":
        calib_digest = hashlib.sha256(
            np.ascontiguousarray(calibration_samples, np.float32).tobytes()
        ).hexdigest()
    profiles = [
        profile_shapes(inp["name"], inp["shape"], target_shape, cfg)
        for inp in inspect_onnx(onnx_path)["inputs"]
    ]
    what = (sha256_file(onnx_path), trt_version, capability, cfg, major, calib_digest)
    parts = engine_cache_parts(*what, profiles=profiles)
    return profiles, parts_key(parts), parts


def require_tensorrt() -> None:
    """Raise RuntimeUnavailable (one line: what is missing) unless TensorRT can build here."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise RuntimeUnavailable(reason, hint="build TensorRT engines on the NVIDIA machine")


def tensorrt_major_version() -> int:
    """The installed TensorRT's major version (10 or 11); RuntimeUnavailable without it."""
    return int(str(_import_tensorrt().__version__).split(".")[0])


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or a CUDA library missing at load time
        raise RuntimeUnavailable(
            f"TensorRT is not installed: {short_reason(exc)}",
            hint="install TensorRT 10 or 11 for this CUDA (pip install tensorrt) on an NVIDIA machine",
        ) from None
    return tensorrt


def _compute_capability() -> tuple[int, int]:
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
        major, minor = torch.cuda.get_device_capability(0)
    except Exception as exc:
        raise RuntimeUnavailable(
            f"no CUDA GPU: {short_reason(exc)}", hint="build TensorRT engines on the NVIDIA target"
        ) from None
    return int(major), int(minor)
