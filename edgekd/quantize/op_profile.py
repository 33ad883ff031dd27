"""Where the time of an ONNX model goes on this CPU: ONNX Runtime's own per-node profile,
summed by kind of work.

INT8 pays off unevenly: on x86 without VNNI the integer kernels speed up dense and
pointwise convolutions, while depthwise convolutions, the first convolution over 3 input
channels and every float island (HardSigmoid, Q/DQ pairs around ops without an integer
kernel) do not get faster or add work. Summing ORT's profile by kind, FP32 next to INT8,
shows which. Convolutions are told apart by the graph ORT really runs (after its own
fusions), read back from ``optimized_model_filepath``.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np

_CONV = {"Conv", "QLinearConv", "FusedConv"}
_WARMUP = 3  # first runs allocate and pack weights: not the steady state


def time_by_kind(
    path: str | os.PathLike[str], frame: np.ndarray, threads: int, runs: int = 20
) -> dict[str, float]:
    """Mean ms per run of each kind of node of the ONNX model at ``path`` on ``frame`` ``[1, ...]``.

    Kinds: ``conv depthwise`` (group == channels), ``conv pointwise`` (1x1), ``conv dense``
    (any other kernel), ``conv first`` (the first convolution, over the image), then every
    other op by its ORT kernel name (``QuantizeLinear``, ``Transpose``, ``HardSigmoid``...).
    Profiling adds a little time to every node alike; compare kinds and models measured
    the same way, not these figures with plain latencies.
    """
    import onnx

    from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort

    with tempfile.TemporaryDirectory(prefix="edgekd-profile-") as folder:
        settings = OrtSettings(
            intra_op_threads=threads,
            inter_op_threads=1,
            enable_profiling=True,
            profile_prefix=os.path.join(folder, "profile"),
            optimized_model_path=os.path.join(folder, "optimized.onnx"),
        )
        session = open_ort(path, settings)
        feed = {session.get_inputs()[0].name: frame}
        for _ in range(runs + _WARMUP):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        kinds = node_kinds(onnx.load(os.path.join(folder, "optimized.onnx")))
    warm = _steady_runs(events, skip=_WARMUP)
    totals: dict[str, float] = collections.defaultdict(float)
    for event in warm:
        name = event["name"][: -len("_kernel_time")]
        totals[kinds.get(name, event["args"].get("op_name", "other"))] += event["dur"] / 1e3
    return {kind: ms / runs for kind, ms in sorted(totals.items(), key=lambda kv: -kv[1])}


def node_kinds(model) -> dict[str, str]:
    """Node name -> kind (see ``time_by_kind``) for an ONNX ``ModelProto`` in topological order."""
    kinds, first = {}, True
    for node in model.graph.node:
        if node.op_type in _CONV:
            # The first convolution (3 input channels) reads the image, directly in FP32 and
            # through QuantizeLinear/Transpose in INT8: it is named by position, not by input.
            kinds[node.name] = "conv first" if first else _conv_kind(node)
            first = False
        else:
            kinds[node.name] = node.op_type
    return kinds


def _conv_kind(node) -> str:
    attrs = {a.name: a for a in node.attribute}
    group = attrs["group"].i if "group" in attrs else 1
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
    if group > 1:
        return "conv depthwise"
    if kernel and all(k == 1 for k in kernel):
        return "conv pointwise"
    return "conv dense"


def _steady_runs(events: list[dict], skip: int) -> list[dict]:
    """Node kernel-time events of every run after the first ``skip`` (ORT numbers runs in
    ``model_run`` events; node events between two of them belong to the later run)."""
    nodes, seen_runs = [], 0
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            seen_runs += 1
        elif event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            nodes.append((seen_runs, event))
    return [event for run, event in nodes if run >= skip]
