"""A teacher that exists only as an ONNX file, run through ONNX Runtime as a black box.

Users sometimes have a teacher only as ``teacher.onnx`` (exported by another team, or from a
framework edgekd does not load). :class:`OnnxTeacher` makes it a drop-in for a PyTorch teacher
in logit-based distillation: an ``nn.Module`` without parameters whose forward maps a torch
tensor [N, ...] to float32 logits [N, K], computed without autograd. It has no intermediate
features to tap (``supports_features = False``); :func:`require_feature_support` turns a
feature loss asked of it into one clear line.

The class order is checked against the data only when the file says it: a ``class_names``
metadata entry (a JSON list, or comma-separated names, in logit order), which
``onnx.helper.set_model_props(model, {"class_names": json.dumps(names)})`` adds. Without it
one warning line says the order cannot be checked (:mod:`edgekd.models.fit`).

>>> teacher = OnnxTeacher("teacher.onnx")
>>> logits = teacher(torch.randn(8, 2, 128))   # float32 [8, K], on the input's device
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.errors import ConfigError, InputFileError, ShapeError
from edgekd.optional import require_module

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
DEFAULT_BATCH = 256  # frames per ORT call: bounds the memory of one teacher pass
# onnx.TensorProto element types of weights: FLOAT, FLOAT16, DOUBLE, BFLOAT16 (integer
# initializers are shapes and indices, not parameters).
_WEIGHT_TYPES = (1, 10, 11, 16)
#: How the parameter count of an ONNX teacher is taken, for the log and the manifest.
PARAMETERS_AS_EXPORTED = "as exported with batch norms folded"


def _ort() -> Any:
    # lazy: only an ONNX teacher needs onnxruntime at distillation time
    return require_module("onnxruntime", "an ONNX teacher")


def is_onnx_path(name: str | os.PathLike[str]) -> bool:
    """True when a teacher reference names an ONNX file (by its ``.onnx`` suffix)."""
    return str(name).lower().endswith(".onnx")


class OnnxTeacher(nn.Module):
    """An ONNX classifier as a frozen teacher: torch [N, ...] -> float32 logits [N, K], no grad.

    Args:
        path: the ``.onnx`` file; one input (float32, float16 or float64) and the logits as
            first output.
        providers: ONNX Runtime execution providers in order of preference; default CUDA when
            ORT has it, then CPU.
        threads: intra-op threads of ONNX Runtime (default: edgekd's thread policy,
            :mod:`edgekd.runtime.threads`); ``distill.train.num_threads`` sets it in a recipe.
        batch_size: frames per ORT call when the graph's batch is dynamic. A graph exported
            with a fixed batch B is fed exactly B frames per call, the last chunk padded by
            repeating its last frame (those rows are dropped), as ``bench`` does.

    Attributes:
        input_shape: per-sample input dims ``[C, ...]``, ``None`` where the graph leaves a dim free.
        num_classes: K when the graph fixes it, else None.
        class_names: from the model's ``class_names`` metadata (JSON list), else None.
        num_parameters: elements of the graph's float initializers, as exported: an exporter
            folds batch norms into the convolutions before them, so a network with batch norms
            counts fewer than in PyTorch; batch-norm running statistics left in the graph are
            not counted. None without the ``onnx`` package.
        parameters_note: how ``num_parameters`` was counted (:data:`PARAMETERS_AS_EXPORTED`
            when the graph holds no batch norm), for wherever the count is reported.
    """

    supports_features = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError(f"ONNX teacher {self.path} does not exist", hint="check teacher.checkpoint")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort

        available = _ort().get_available_providers()
        wanted = list(providers) if providers else ["CUDAExecutionProvider", "CPUExecutionProvider"]
        chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = open_ort(
                self.path, OrtSettings(providers=tuple(chosen), intra_op_threads=int(threads or 0))
            )
        except Exception as exc:  # ORT raises its own InvalidProtobuf/Fail/InvalidGraph types
            reason = " ".join(str(exc).split())[:200]
            raise InputFileError(
                f"ONNX teacher {self.path} cannot be loaded by ONNX Runtime: {reason}",
                hint="check that the file is a complete, valid ONNX model",
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise InputFileError(
                f"ONNX teacher {self.path} has {len(inputs)} inputs; a teacher takes one tensor",
                hint="export the teacher with a single input [N, ...]",
            )
        self.input_name = inputs[0].name
        self.input_dtype = _ORT_TYPES.get(inputs[0].type)
        if self.input_dtype is None:
            raise InputFileError(f"ONNX teacher {self.path} takes {inputs[0].type}; expected a float tensor")
        dims = [d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape]
        if len(dims) < 2:
            raise InputFileError(
                f"ONNX teacher {self.path} input has shape {inputs[0].shape}; expected [N, ...]"
            )
        self.fixed_batch = dims[0]
        self.input_shape: list[int | None] = dims[1:]
        out_shape = outputs[0].shape
        self.num_classes = out_shape[-1] if isinstance(out_shape[-1], int) and len(out_shape) == 2 else None
        self.class_names = self._metadata_class_names()
        # How num_parameters was counted, printed beside it (the log, the student's manifest).
        self.parameters_note: str | None = None
        self.num_parameters = self._count_parameters()

    def _metadata_class_names(self) -> list[str] | None:
        raw = self.session.get_modelmeta().custom_metadata_map.get("class_names")
        if not raw:
            return None
        try:
            names = json.loads(raw)
        except json.JSONDecodeError:
            names = raw.split(",")
        return [str(n).strip() for n in names] if isinstance(names, list) else None

    def _count_parameters(self) -> int | None:
        """Float initializer elements; sets :attr:`parameters_note` to how they were counted."""
        try:
            import onnx
        except ImportError:
            return None
        graph = onnx.load(os.fspath(self.path), load_external_data=False).graph
        norms = [node for node in graph.node if node.op_type == "BatchNormalization"]
        # A BatchNormalization left in the graph takes its running mean and variance as inputs
        # 3 and 4: buffers in PyTorch, not parameters. None left: the exporter folded them.
        stats = {name for node in norms for name in node.input[3:5]}
        self.parameters_note = "as exported" if norms else PARAMETERS_AS_EXPORTED
        weights = [i for i in graph.initializer if i.data_type in _WEIGHT_TYPES and i.name not in stats]
        return int(sum(int(np.prod(init.dims)) for init in weights))

    def check_input_shape(self, sample_shape: Sequence[int], what: str = "data") -> None:
        """ShapeError unless samples of shape ``sample_shape`` (no batch axis) fit the graph input."""
        sample_shape = tuple(int(d) for d in sample_shape)
        fits = len(sample_shape) == len(self.input_shape) and all(
            want is None or want == got for want, got in zip(self.input_shape, sample_shape, strict=True)
        )
        if not fits:
            want = ["?" if d is None else d for d in self.input_shape]
            raise ShapeError(
                f"ONNX teacher {self.path.name} takes samples of shape {want}, "
                f"the {what} has {list(sample_shape)}",
                hint="feed data shaped like the teacher's input, or re-export the teacher",
            )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] tensor (any float dtype, any device) -> float32 logits [N, K] on ``x.device``."""
        if x.ndim < 1:
            raise ShapeError("the ONNX teacher needs a batch [N, ...], got a scalar")
        self.check_input_shape(x.shape[1:], "batch")
        frames = x.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        step = self.fixed_batch or self.batch_size
        chunks = [self._run_chunk(frames[i : i + step]) for i in range(0, len(frames), step)]
        logits = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, self.num_classes or 0))
        if logits.ndim != 2 or len(logits) != len(frames):
            raise ShapeError(
                f"ONNX teacher {self.path.name} returned shape {list(logits.shape)} for {len(frames)} "
                "samples; expected logits [N, K]",
                hint="export the teacher so its first output is the logits",
            )
        return torch.from_numpy(logits.astype(np.float32, copy=False)).to(x.device)

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        """The first output for ``chunk``; a fixed-batch graph gets its batch, the shortfall made
        up by repeating the last frame, and only the rows of ``chunk`` are kept."""
        real = len(chunk)
        if self.fixed_batch and real < self.fixed_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.fixed_batch - real, axis=0)])
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(chunk)})[0]
        return out[:real] if self.fixed_batch and len(out) == self.fixed_batch else out

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input_shape={self.input_shape}, num_classes={self.num_classes}"


def require_feature_support(teacher: nn.Module, losses: Sequence[str]) -> None:
    """ConfigError when feature losses (``losses``, e.g. ["fitnet"]) are asked of a black-box teacher."""
    if losses and not getattr(teacher, "supports_features", True):
        raise ConfigError(
            f"loss(es) {', '.join(losses)} need intermediate features, but the teacher "
            f"{getattr(teacher, 'path', type(teacher).__name__)} is an ONNX file run as a black box",
            hint="use logit losses (kd, rkl, js, dkd, nkd, dist) or give a PyTorch teacher checkpoint",
        )
