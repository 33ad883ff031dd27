"""PyTorch -> ONNX, checked: exporter, ``onnx.checker`` (full), shape inference, then
ONNX Runtime outputs compared with PyTorch eval-mode outputs on real frames.

Nothing is left at the target path unless every check passed: the model is written
into a temporary folder beside it and renamed last (its external-data sidecar, when
the weights pass ``external_data_threshold_mb``, first). Optional onnxslim
simplification runs before the checks, so the simplified graph is what is verified.
Manifests are the caller's job (the pipeline knows the parents and the config).

Exporter choice: torch 2.13 offers the torch.export-based exporter (``dynamo=True``,
the default) and the TorchScript tracer (``dynamo=False``). For the small conv nets
this project ships, the tracer gives the cleaner, more portable graph: it honours
``opset_version=17`` exactly (the dynamo path only implements opset >= 18 and falls
back to 18 when the down-conversion fails), writes one self-contained file below the
external-data threshold (dynamo always writes a ``.onnx.data`` sidecar), folds
BatchNorm and maps adaptive pooling to ``GlobalAveragePool`` (dynamo emits
Unsqueeze/ReduceMean/Squeeze/Reshape), prints nothing, and takes ~0.3 s instead of ~5 s.
Its known weakness, data-dependent Python control flow baked in at trace time, is
exactly what the parity check catches; the tracer's warnings are quoted in that error.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.artifacts import ensure_dir, place, remove
from edgekd.errors import ConfigError, EdgeKDError, InputFileError, ParityError, ShapeError
from edgekd.export.onnx_graph import (  # noqa: F401  (re-exported: callers import them from here)
    external_data_files,
    inspect_onnx,
    load_onnx_checked,
    save_with_external_data_if_large,
    short_reason,
    simplify_onnx,
)
from edgekd.export.parity import ParityConfig, ParityReport, compare_outputs, require_finite_outputs
from edgekd.export.tensorrt.plan import TensorRTConfig
from edgekd.verbosity import is_verbose

if TYPE_CHECKING:
    import onnxruntime
    import torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Opset 13 is the floor for per-channel QuantizeLinear (INT8 stage); 20 is the
# highest opset the TorchScript exporter in torch 2.13 implements.
MIN_OPSET, MAX_OPSET = 13, 20
_BATCH = 64  # frames per inference call when computing parity; bounds memory for N in the hundreds


class ExportError(EdgeKDError):
    """The exporter or the ONNX checker rejected the model."""


@dataclass
class ExportConfig:
    """``opset``: ONNX opset of the exported graph; ``dynamic_batch``: batch axis named
    ``batch`` instead of fixed to 1; ``openvino``: also write OpenVINO IR (read by the
    pipeline); ``parity``: tolerances against PyTorch; ``simplify``: run onnxslim on the
    graph before the checks (needs the optional ``onnxslim`` package);
    ``external_data_threshold_mb``: weights above this many MiB go to a ``<name>.onnx.data``
    sidecar (protobuf cannot hold a message over 2 GiB; the margin leaves room for the graph).
    ``tensorrt``: also build a TensorRT engine (see edgekd/export/tensorrt/); null = none.
    Without TensorRT and a CUDA GPU the pipeline logs why and goes on without it."""

    opset: int = 17
    dynamic_batch: bool = True
    openvino: bool = True
    simplify: bool = False
    external_data_threshold_mb: float = 1900.0
    parity: ParityConfig = field(default_factory=ParityConfig)
    tensorrt: TensorRTConfig | None = None

    def validate(self) -> None:
        if not self.external_data_threshold_mb >= 0:
            raise ConfigError(
                f"export.external_data_threshold_mb must be >= 0, got {self.external_data_threshold_mb}",
                hint="keep the default 1900 (MiB) unless a runtime needs weights in a sidecar file",
            )
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ConfigError(
                f"export.opset must be between {MIN_OPSET} and {MAX_OPSET}, got {self.opset}",
                hint="use 17 unless the target runtime needs another",
            )
        self.parity.validate()


def export_onnx(
    model: torch.nn.Module,
    samples: np.ndarray,
    path: str | os.PathLike[str],
    cfg: ExportConfig,
    *,
    verbose: bool = False,
    source: str | os.PathLike[str] | None = None,
) -> ParityReport:
    """Export ``model`` to ``path`` (input ``"input"``, output ``"logits"``) and verify it.

    Args:
        model: a module returning one tensor, e.g. logits ``[N, classes]``. It is run
            in eval mode; its train/eval state is restored afterwards.
        samples: real input frames, float32 ``[N, C, L]`` (any ``[N, ...]`` works), N >= 1.
        path: target ``.onnx`` file; replaced only when every check passes.
        cfg: opset, dynamic batch axis and parity tolerances.
        verbose: let the exporter's own warnings through.
        source: the file the model was read from (a checkpoint), named in errors.

    Returns:
        The ParityReport of ONNX Runtime (CPU) against PyTorch on all ``samples``.

    Raises:
        InputFileError: NaN/Inf weights. ShapeError: the model rejects the samples.
        ExportError: exporter or checker failure. ParityError: NaN/Inf outputs, or ONNX
        Runtime disagrees with PyTorch. Nothing is written then.
    """
    import torch

    cfg.validate()
    samples = as_samples(samples, "export samples")
    name = f"model {source}" if source is not None else f"PyTorch model {type(model).__name__}"
    require_finite_weights(model, name)
    reference = torch_reference_outputs(model, samples)
    require_finite_outputs(reference, name)
    # Trace with 2 frames when the batch is dynamic so no batch-1 special case is baked in;
    # a static graph is traced with the batch size it will be served with (1).
    trace_batch = min(2, len(samples)) if cfg.dynamic_batch else 1
    dummy = torch.from_numpy(samples[:trace_batch]).to(_device_of(model))
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if cfg.dynamic_batch else None

    path = Path(path)
    ensure_dir(path.parent)
    # A work folder beside the target, not one temp file: the exporter of a > 2 GiB model
    # and the external-data rewrite both write sidecars that must keep their final names.
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = work / path.name
        tracer_warnings = _run_exporter(model, dummy, tmp, cfg.opset, dynamic_axes, verbose or is_verbose())
        notes = []
        if cfg.simplify:
            notes.append(simplify_onnx(tmp, tmp).summary())
        _check_and_infer_shapes(tmp)
        sidecar = save_with_external_data_if_large(tmp, int(cfg.external_data_threshold_mb * 2**20))
        if sidecar:
            notes.append(f"weights in external data {sidecar}")
        candidate = run_onnxruntime(tmp, samples)
        report = compare_outputs(
            reference,
            candidate,
            cfg.parity,
            what=f"ONNX export {path.name}",
            reference_name=name,
            candidate_name=f"ONNX Runtime on {path.name}",
        )
        report.notes = notes
        try:
            report.raise_if_failed()
        except ParityError as exc:
            if tracer_warnings:
                exc.hint = f"the TorchScript tracer warned: {tracer_warnings[0]}; {exc.hint}"
            raise
        _move_into_place(work, path, external_data_files(tmp))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _move_into_place(work: Path, target: Path, sidecars: list[str]) -> None:
    """Rename the checked model (and its sidecar) from ``work`` to ``target``'s folder:
    sidecar first, so a model under the final name always has its weights; a stale
    sidecar of a previous, larger export is removed."""
    for name in sidecars:
        place(work / name, target.parent / name)
    place(work / target.name, target)
    if not sidecars:
        remove(target.parent / f"{target.name}.data")


def require_finite_weights(model: torch.nn.Module, name: str) -> None:
    """InputFileError naming the first tensors when any floating-point weight or buffer in the
    state dict of ``model`` holds NaN or Inf (such a model can only give NaN/Inf outputs)."""
    import torch

    bad = []
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(key)
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise InputFileError(
            f"{name} has NaN/Inf weights in {len(bad)} tensor(s) ({shown})",
            hint="the training diverged or the file is damaged: retrain, or use an earlier checkpoint",
        )


def torch_reference_outputs(
    model: torch.nn.Module, samples: np.ndarray, batch_size: int = _BATCH
) -> np.ndarray:
    """Eval-mode outputs of ``model`` on ``samples`` ``[N, ...]`` -> float32 ``[N, ...]`` (on CPU)."""
    import torch

    samples = as_samples(samples, "samples")
    device = _device_of(model)
    chunks = []
    with _eval_mode(model), torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            batch = torch.from_numpy(samples[start : start + batch_size]).to(device)
            try:
                out = model(batch)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise ShapeError(
                    f"model {type(model).__name__} rejects samples of shape {list(samples.shape)}: "
                    f"{short_reason(exc)}",
                    hint="pass frames shaped like the model's input, e.g. [N, 2, 128]",
                ) from None
            if not isinstance(out, torch.Tensor):
                raise ShapeError(
                    f"model {type(model).__name__} returns {type(out).__name__}, not one tensor",
                    hint="export a wrapper whose forward returns only the logits",
                )
            chunks.append(out.detach().float().cpu().numpy())
    return np.concatenate(chunks, axis=0)


def run_onnxruntime(
    model: str | os.PathLike[str] | onnxruntime.InferenceSession,
    samples: np.ndarray,
    batch_size: int = _BATCH,
) -> np.ndarray:
    """Run a one-input ONNX model on CPU over ``samples`` ``[N, ...]`` -> its first output ``[N, ...]``.

    A graph with a static batch dimension is fed exactly that many frames per call
    (N must then be a multiple of it).
    """
    session = model if not isinstance(model, (str, os.PathLike)) else ort_session(model)
    inp = session.get_inputs()[0]
    check_frames_fit(inp.shape, samples, "frames")
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    step = fixed or batch_size
    if fixed and len(samples) % fixed:
        raise ShapeError(
            f"the model's batch size is fixed to {fixed}; {len(samples)} samples are not a multiple of it",
            hint="export with dynamic_batch: true or pass a multiple of the batch size",
        )
    outputs = [
        session.run(None, {inp.name: samples[start : start + step]})[0]
        for start in range(0, len(samples), step)
    ]
    return np.concatenate(outputs, axis=0)


def check_frames_fit(input_shape: list[int | str | None], frames: np.ndarray, what: str) -> None:
    """ShapeError unless ``frames`` ``[N, ...]`` fit an ONNX input shape such as ``["batch", 2, 128]``
    (symbolic or unknown dims match anything; the batch dim is not compared)."""
    fits = len(frames.shape) == len(input_shape) and all(
        not isinstance(want, int) or want <= 0 or want == got
        for want, got in zip(input_shape[1:], frames.shape[1:], strict=True)
    )
    if not fits:
        raise ShapeError(
            f"{what} of shape {list(frames.shape)} do not fit the model input {list(input_shape)}",
            hint="pass frames shaped like the model's input",
        )


def ort_session(
    path: str | os.PathLike[str], threads: int | None = None, *, optimize: bool = True
) -> onnxruntime.InferenceSession:
    """A CPU InferenceSession with ORT's warnings muted (severity >= error), through
    :func:`edgekd.runtime.onnxruntime_open.open_ort`.

    ``threads`` sets intra-op threads (inter-op 1); ``optimize=False`` disables graph
    optimisations, which for a QDQ model means float emulation instead of integer kernels.
    """
    from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort

    settings = OrtSettings(
        intra_op_threads=threads or 0,
        inter_op_threads=1 if threads else 0,
        graph_optimization_level="ORT_ENABLE_ALL" if optimize else "ORT_DISABLE_ALL",
    )
    try:
        return open_ort(path, settings)
    except ImportError:
        raise
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise ExportError(
            f"ONNX Runtime cannot load {path}: {short_reason(exc)}",
            hint="the graph uses an op or type ONNX Runtime's CPU provider lacks; try another opset",
        ) from None


def as_samples(samples: Any, what: str) -> np.ndarray:
    """``samples`` as a C-contiguous float32 array ``[N, ...]`` with N >= 1, else ShapeError."""
    try:
        array = np.ascontiguousarray(samples, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ShapeError(
            f"{what} are not numeric frames: {exc}", hint="pass a float32 array [N, C, L]"
        ) from None
    if array.ndim < 2 or array.shape[0] == 0:
        raise ShapeError(f"{what} have shape {list(array.shape)}", hint="pass a non-empty batch [N, C, L]")
    return array


def _run_exporter(
    model: torch.nn.Module,
    dummy: torch.Tensor,
    out: Path,
    opset: int,
    dynamic_axes: dict[str, dict[int, str]] | None,
    verbose: bool,
) -> list[str]:
    """Run the TorchScript exporter; return the tracer's warnings (shown only when verbose)."""
    import torch

    with _eval_mode(model), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.nullcontext() if verbose else _silenced_output():
                torch.onnx.export(
                    model,
                    (dummy,),
                    os.fspath(out),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                    training=torch.onnx.TrainingMode.EVAL,
                    export_params=True,
                )
        except Exception as exc:  # the exporter raises many types (SymbolicValueError, RuntimeError, ...)
            raise ExportError(
                f"torch.onnx export of {type(model).__name__} (opset {opset}) failed: {short_reason(exc)}",
                hint="replace the unsupported operation or try another export.opset",
            ) from None
    tracer = [
        str(w.message).splitlines()[0] for w in caught if issubclass(w.category, torch.jit.TracerWarning)
    ]
    if verbose:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return tracer


@contextlib.contextmanager
def _silenced_output():
    """Swallow stdout and stderr at the file-descriptor level for the duration.

    File descriptors, not just ``sys.stdout``: when it fails, the TorchScript exporter
    dumps its whole IR graph from C++ (torch 2.13 re-enables that log inside every
    export), which would bury the one-line error. Output of other threads is muted
    too for those ~0.3 s.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(io.StringIO()):
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                for fd, original in saved.items():
                    os.dup2(original, fd)
    finally:
        for original in saved.values():
            os.close(original)


def _check_and_infer_shapes(path: Path) -> None:
    """Full ONNX check, then strict shape inference written back into the file (value_info)."""
    import onnx

    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
        onnx.shape_inference.infer_shapes_path(
            os.fspath(path), os.fspath(path), check_type=True, strict_mode=True
        )
    except Exception as exc:  # ValidationError, InferenceError
        raise ExportError(
            f"the exported graph fails the ONNX checker: {short_reason(exc)}",
            hint="try another export.opset or simplify the model's forward",
        ) from None


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()  # safe: nn.Module.eval(), inference mode
    try:
        yield model
    finally:
        model.train(was_training)


def _device_of(model: torch.nn.Module) -> torch.device:
    import torch

    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
