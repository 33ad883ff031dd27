"""The TensorRT engine as a run-folder artifact: where a built engine is placed, and the
parity tolerances an engine of each precision is held to.

The sequence (Q/DQ quantization, build, placement, parity) is the pipeline's:
:func:`edgekd.pipeline.tensorrt_stage.tensorrt_engine_stage`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_path, manifest_path, sha256_file
from edgekd.errors import InputFileError
from edgekd.export.parity import ParityConfig
from edgekd.export.tensorrt.plan import TensorRTConfig

#: Parity tolerances by engine precision when the config sets none.
DEFAULT_PARITY = {
    "fp32": ParityConfig(atol=1e-3, rtol=1e-3, min_top1_agreement=0.999),
    # TF32 is off for fp32 engines only when asked; fp16 keeps ~3 significant digits.
    "fp16": ParityConfig(atol=5e-2, rtol=5e-2, min_top1_agreement=0.99),
    # INT8 moves logits by whole quantization steps: agreement is the meaningful check.
    "int8": ParityConfig(atol=1e9, rtol=0.0, min_top1_agreement=0.8),
}


def parity_for(cfg: TensorRTConfig, override: ParityConfig | None) -> ParityConfig:
    return override if override is not None else DEFAULT_PARITY[cfg.precision]


def engine_path_for(onnx_path: Path, out_dir: Path, cfg: TensorRTConfig) -> Path:
    """``out_dir/<onnx stem>.<precision>.engine``: the name the bench looks for."""
    return out_dir / f"{onnx_path.stem}.{cfg.precision}.engine"


def place_engine(build: Any, engine_path: Path) -> None:
    """Copy a built (or cached) engine, ``build.path``, to ``engine_path`` atomically; the
    previous engine's manifest is removed first, and InputFileError when the cache file
    changed while it was copied (its sha256 no longer ``build.sha256``)."""
    manifest_path(engine_path).unlink(missing_ok=True)  # an earlier engine's record is not this one's
    with atomic_path(engine_path) as tmp:
        shutil.copyfile(build.path, tmp)
        if build.sha256 is not None and sha256_file(tmp) != build.sha256:
            raise InputFileError(
                f"engine cache file {build.path} changed while it was copied to {engine_path}",
                hint="run the export again; nothing else may write the TensorRT cache folder meanwhile",
            )
