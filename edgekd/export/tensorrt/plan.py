"""Everything about a TensorRT build that needs no GPU: config, optimization-profile shapes,
calibration batches and the engine cache key.

Engines are not portable: one built by TensorRT 10.8 for compute capability 8.7 (Orin)
will not load under another TensorRT version or on another GPU, and FP16/INT8 engines
differ. So the cache key hashes exactly what makes an engine: the ONNX file's sha256,
the TensorRT version, the GPU's compute capability, the build flags and the optimization
profile's shapes.

TensorRT 10 vs 11: 10 takes precision flags (FP16, INT8 with an IInt8EntropyCalibrator2)
on a weakly typed network; 11 removed those flags and the calibrator API, every network
is strongly typed, and INT8 comes from Q/DQ nodes in the ONNX
(``edgekd.quantize.tensorrt_qdq.quantize_for_tensorrt``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgekd.errors import ConfigError, ShapeError


@dataclass
class TensorRTConfig:
    """``precision``: "fp32", "fp16" or "int8". ``int8_mode``: "calibrator" (TensorRT 10 implicit
    INT8, IInt8EntropyCalibrator2 over calibration frames), "qdq" (explicit Q/DQ ONNX, strongly
    typed network; TensorRT 10 and 11) or "auto" (calibrator on 10, qdq on 11).
    ``min_batch``/``opt_batch``/``max_batch``: the optimization profile of a dynamic batch axis
    (``opt_batch`` None -> the target's batch). ``calibration_batch``: frames per calibrator
    batch. ``workspace_mb``: builder workspace limit in MiB. ``cache_dir``: engines and the
    timing cache live here. ``calibration``: the calibration recipe (``calibration/``) whose
    frames calibrate INT8, through the calibrator or the Q/DQ scales."""

    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    int8_mode: Literal["auto", "calibrator", "qdq"] = "auto"
    min_batch: int = 1
    opt_batch: int | None = None
    max_batch: int = 32
    calibration_batch: int = 16
    workspace_mb: int = 1024
    cache_dir: str = ".edgekd-trt-cache"
    calibration: str = "random-256"

    def validate(self) -> None:
        if self.min_batch < 1 or self.max_batch < self.min_batch:
            raise ConfigError(
                "tensorrt batches must satisfy 1 <= min_batch <= max_batch, "
                f"got {self.min_batch}..{self.max_batch}",
                hint="e.g. min_batch: 1, max_batch: 32",
            )
        if self.opt_batch is not None and not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"tensorrt.opt_batch {self.opt_batch} is outside min_batch..max_batch "
                f"({self.min_batch}..{self.max_batch})",
                hint="set opt_batch to the batch you serve, or leave it unset to use the target's",
            )
        if self.calibration_batch < 1 or self.workspace_mb < 1:
            raise ConfigError("tensorrt.calibration_batch and workspace_mb must be >= 1")


@dataclass(frozen=True)
class ProfileShapes:
    """min/opt/max shapes of one input for ``IOptimizationProfile.set_shape``."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def resolve_int8_mode(cfg: TensorRTConfig, trt_major: int) -> str | None:
    """The INT8 route for this TensorRT major version; None when precision is not int8."""
    if cfg.precision != "int8":
        return None
    if cfg.int8_mode == "auto":
        return "calibrator" if trt_major < 11 else "qdq"
    if cfg.int8_mode == "calibrator" and trt_major >= 11:
        raise ConfigError(
            f"TensorRT {trt_major} removed implicit INT8 calibration (IInt8EntropyCalibrator2)",
            hint="use tensorrt.int8_mode: qdq (explicit Q/DQ from the ONNX quantizer) or auto",
        )
    return cfg.int8_mode


def builder_flags(cfg: TensorRTConfig, trt_major: int) -> list[str]:
    """Names of the ``trt.BuilderFlag`` members to set. TensorRT 11 has no precision flags:
    its networks are strongly typed, precision comes from the ONNX types and Q/DQ nodes."""
    if trt_major >= 11:
        if cfg.precision == "fp16":
            raise ConfigError(
                f"TensorRT {trt_major} has no FP16 builder flag; it builds the types in the ONNX",
                hint="convert the ONNX to FP16 first (NVIDIA ModelOpt AutoCast), or use precision int8/fp32",
            )
        return []
    mode = resolve_int8_mode(cfg, trt_major)
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"] if mode == "calibrator" else []}
    # Implicit INT8 keeps FP16 on so layers TensorRT cannot run in INT8 fall back to FP16, not FP32.
    return flags[cfg.precision]


def strongly_typed(cfg: TensorRTConfig, trt_major: int) -> bool:
    """Strongly typed network: always on TensorRT 11; on 10 for explicit Q/DQ INT8."""
    return trt_major >= 11 or resolve_int8_mode(cfg, trt_major) == "qdq"


def profile_shapes(
    name: str, onnx_shape: list[int | str | None], target_shape: list[int] | None, cfg: TensorRTConfig
) -> ProfileShapes:
    """min/opt/max shapes for an input whose ONNX shape is e.g. ``["batch", 2, 128]``.

    The batch axis takes ``min_batch``/``opt_batch``/``max_batch`` (``opt_batch`` defaults to
    the target's batch, ``target_shape[0]``); other dims come from the ONNX when static, else
    from the target profile's ``input_shape``. A static batch gives a fixed profile.
    """
    cfg.validate()
    if not onnx_shape:
        raise ShapeError(
            f"input {name} has no shape in the ONNX model", hint="re-export with shape inference"
        )
    rest = []
    for axis, dim in enumerate(onnx_shape[1:], start=1):
        if isinstance(dim, int) and dim > 0:
            rest.append(dim)
        elif target_shape and len(target_shape) == len(onnx_shape):
            rest.append(int(target_shape[axis]))
        else:
            raise ShapeError(
                f"input {name} axis {axis} is dynamic ({dim}) and the target gives no input_shape",
                hint="set input_shape in the target profile, e.g. [1, 3, 224, 224]",
            )
    batch = onnx_shape[0]
    if isinstance(batch, int) and batch > 0:
        fixed = (batch, *rest)
        return ProfileShapes(name, fixed, fixed, fixed)
    target_batch = int(target_shape[0]) if target_shape else cfg.min_batch
    opt = cfg.opt_batch if cfg.opt_batch is not None else min(max(target_batch, cfg.min_batch), cfg.max_batch)
    return ProfileShapes(name, (cfg.min_batch, *rest), (opt, *rest), (cfg.max_batch, *rest))


def calibration_batches(samples: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """C-contiguous float32 ``[batch, ...]`` slices of ``samples`` ``[N, ...]``, in order.

    The calibrator has one fixed batch size, so a short last batch is dropped rather than
    padded (padding with repeats would skew the activation histograms).
    """
    samples = np.asarray(samples, dtype=np.float32)
    full = len(samples) // batch
    if full == 0:
        raise ShapeError(
            f"{len(samples)} calibration frames are fewer than one calibration batch of {batch}",
            hint="pass more calibration frames or lower tensorrt.calibration_batch",
        )
    for index in range(full):
        yield np.ascontiguousarray(samples[index * batch : (index + 1) * batch])


def engine_cache_parts(
    onnx_sha256: str,
    trt_version: str,
    compute_capability: tuple[int, int],
    cfg: TensorRTConfig,
    trt_major: int,
    calibration_sha256: str | None = None,
    *,
    profiles: Sequence[ProfileShapes],
) -> dict[str, Any]:
    """What makes an engine, as plain data: the ONNX bytes' sha256, the TensorRT version, the
    GPU's compute capability (major, minor), the build flags (precision, INT8 route, profile
    batches, workspace), the optimization profile's min/opt/max shape of every input (the opt
    batch and dynamic dims come from the target, so two targets build two engines), and for
    the calibrator route the calibration frames' sha256 (the Q/DQ route carries its scales
    inside the ONNX). Anything else (cache paths) is excluded."""
    mode = resolve_int8_mode(cfg, trt_major)
    flags = {
        "precision": cfg.precision,
        "int8_mode": mode,
        "strongly_typed": strongly_typed(cfg, trt_major),
        "builder_flags": builder_flags(cfg, trt_major),
        "batches": [cfg.min_batch, cfg.opt_batch, cfg.max_batch],
        "calibration_batch": cfg.calibration_batch if mode == "calibrator" else None,
        "workspace_mb": cfg.workspace_mb,
    }
    if calibration_sha256 is not None and mode == "calibrator":
        flags["calibration_sha256"] = calibration_sha256
    return {
        "onnx_sha256": onnx_sha256,
        "tensorrt": trt_version,
        "compute_capability": list(compute_capability),
        "flags": flags,
        "profiles": [
            {"name": p.name, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
            for p in sorted(profiles, key=lambda p: p.name)
        ],
    }


def engine_cache_key(*args: Any, **kwargs: Any) -> str:
    """Hex sha256 (first 24 chars) of :func:`engine_cache_parts` of the same arguments."""
    return parts_key(engine_cache_parts(*args, **kwargs))


def parts_key(parts: dict[str, Any]) -> str:
    """Hex sha256 (first 24 chars) of ``parts`` (from :func:`engine_cache_parts`) as sorted JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def engine_file_name(key: str, cfg: TensorRTConfig) -> str:
    return f"{cfg.precision}-{key}.engine"


__all__ = [
    "ProfileShapes",
    "TensorRTConfig",
    "builder_flags",
    "calibration_batches",
    "engine_cache_key",
    "engine_cache_parts",
    "parts_key",
    "profile_shapes",
    "resolve_int8_mode",
    "strongly_typed",
]
