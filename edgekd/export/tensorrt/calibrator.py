"""TensorRT 10's implicit-INT8 calibrator, fed from calibration-recipe frames.

Built lazily inside a function because ``tensorrt.IInt8EntropyCalibrator2`` only exists
once TensorRT is importable (and not at all in TensorRT 11). Device buffers are torch
CUDA tensors: torch is already a dependency, so no pycuda/cuda-python is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_write_bytes


def entropy_calibrator(trt: Any, batches: list[np.ndarray], cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` serving ``batches`` (float32 ``[B, ...]`` each, one input)
    in order, reading/writing its calibration table at ``cache_path``."""
    import torch

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._pending = iter(batches)
            self._device: Any = None  # the current batch must stay alive until the next call

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._pending, None)
            if batch is None:
                return None  # tells TensorRT calibration data is exhausted
            self._device = torch.from_numpy(batch).to("cuda")
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

    return _EntropyCalibrator()
