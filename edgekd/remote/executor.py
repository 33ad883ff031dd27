"""The SSH executor: a bench's candidates measured on a device, by the bench's own code.

The device needs python3, numpy and the runtime (onnxruntime or openvino), not edgekd and not
torch. :mod:`edgekd.remote.staging` ships the models, the frames and the runtime package;
the device runs :mod:`edgekd.runtime.device_runner`, the very functions that time and predict
locally, so a remote entry is measured exactly as a local one. The host keeps the labels and
scores the device's predictions with the same evaluator (:func:`edgekd.bench.accuracy.score`),
and :func:`edgekd.bench.runner.run_bench` builds the same bench document.

Cleanup: the local staging folder is a TemporaryDirectory; the device folder is made by
``mktemp -d`` (mode 0700) under ``remote_tmp``, removed by the runner when it ends (also
when hung up on) and again by the host afterwards, success or failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.accuracy import score
from edgekd.bench.entries import BenchCandidate, complete_entry, empty_entry, log_entry
from edgekd.bench.executor import LocalExecutor, Measured
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError
from edgekd.remote.ssh import RemoteError, SshHost, SshOptions, SshTransport, parse_ssh_url
from edgekd.remote.staging import PACKAGE, candidate_settings, stage_job
from edgekd.runtime import device_runner
from edgekd.runtime.inputs import input_mismatch

Say = Callable[[str], None]


def _run_timeout(cfg: Any, n: int) -> float:
    """Seconds the device may take: both phases of every candidate at their cap, plus loading."""
    return 120.0 + n * (2 * cfg.latency.max_seconds + 60.0)


def _runner_command(remote_python: str, remote_dir: str) -> list[str]:
    """The device's command: the shipped package run as a module, found through PYTHONPATH."""
    return ["env", f"PYTHONPATH={remote_dir}", remote_python, "-m", f"{PACKAGE}.device_runner", remote_dir]


def _parse_result(out: str, transport: SshTransport, remote_python: str) -> dict[str, Any]:
    """The runner's JSON (its last stdout line); RemoteError when absent or of another protocol."""
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RemoteError(
            f"the device runner on {transport.host.url} printed no result",
            hint=f"check that {remote_python} has numpy on the device",
        ) from None
    if result.get("protocol") != device_runner.RUNNER_PROTOCOL:
        raise RemoteError(
            f"the device runner speaks protocol {result.get('protocol')}, not {device_runner.RUNNER_PROTOCOL}"
        )
    return result


def run_on_device(
    transport: SshTransport,
    staging: Path,
    *,
    remote_python: str,
    remote_tmp: str,
    timeout_s: float,
    say: Say,
) -> dict[str, Any]:
    """Copy ``staging`` to a fresh device folder, run the runner there, return its result.

    The device folder is removed afterwards whatever happens; when even that fails (the
    connection is gone) the error names the folder left behind.
    """
    remote_dir = transport.make_temp_dir(remote_tmp)
    try:
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        say(f"    copying {size / 1024:.0f} KiB to {remote_dir}")
        transport.upload(sorted(staging.iterdir()), remote_dir, timeout_s=timeout_s)
        say("    running the device runner")
        out = transport.run(
            _runner_command(remote_python, remote_dir), what="running the bench", timeout_s=timeout_s
        )
    except RemoteError as exc:
        try:
            transport.remove_dir(remote_dir, timeout_s=30)
        except RemoteError:
            exc.message += f"; the folder {remote_dir} may remain on the device"
        raise
    except BaseException:  # Ctrl-C: still try to leave nothing behind
        with contextlib.suppress(RemoteError):
            transport.remove_dir(remote_dir, timeout_s=30)
        raise
    transport.remove_dir(remote_dir, timeout_s=30)
    return _parse_result(out, transport, remote_python)


def _host_precision(cand: BenchCandidate, cfg: Any) -> str:
    """ONNX Runtime's executed precision, read here from the graph and the settings sent (the
    device has no onnx package), as the local backend reads it."""
    from edgekd.runtime.onnxruntime_open import OrtSettings
    from edgekd.runtime.precision import onnx_executed_precision

    return onnx_executed_precision(Path(cand.artifact), OrtSettings.from_json(candidate_settings(cand, cfg)))


def entry_from_result(
    cand: BenchCandidate,
    res: dict[str, Any],
    dataset: ArrayDataset,
    cfg: Any,
    out_dir: Path,
    peak: float | None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The bench entry of one device result (and its predictions when it ran)."""
    entry = empty_entry(cand, out_dir, cfg)
    if res["status"] != "ok":
        entry.update(status=res["status"], reason=f"on the device: {res['reason']}")
        return entry, None
    if res["output_width"] != dataset.num_classes:
        entry.update(
            reason=f"{cand.artifact} outputs {res['output_width']} scores per frame but the dataset has "
            f"{dataset.num_classes} classes (fix: evaluate the model on the dataset it was trained for)"
        )
        return entry, None
    why = None
    if cfg.input_shape is not None and res.get("input_shape") is not None:
        why = input_mismatch(res["input_shape"], cfg.input_shape, "the target's input_shape")
    if why is not None:
        entry.update(reason=f"{cand.artifact}: {why} (fix: bench the model built for this target)")
        return entry, None
    executed = res.get("executed_precision") or _host_precision(cand, cfg)
    preds = np.asarray(res["predictions"], dtype=np.int64)
    complete_entry(
        entry,
        latency=res["latency"],
        load_ms=res["load_ms"],
        executed_precision=executed,
        accuracy=score(preds, dataset).to_dict(),
        peak_memory_mib=res.get("peak_memory_mib"),
        batch_size=cfg.latency.batch_size,
        peak_gflops=peak,
        input_shape=res.get("input_shape"),
    )
    return entry, preds


@dataclasses.dataclass
class SshExecutor:
    """Measure candidates on the device at ``host`` (``ssh://[user@]device[:port]``).

    ``ssh``: known_hosts file, identity, timeouts. ``remote_python``: the device's interpreter
    with numpy and the runtime. ``remote_tmp``: an existing device folder the private job
    folder is made in. ``timeout_s``: limit for the device run (default: from the latency caps).
    Raises ConfigError for a bad host URL or remote_tmp when made.
    """

    host: str
    ssh: SshOptions | None = None
    remote_python: str = "python3"
    remote_tmp: str = "/tmp"
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        self.target: SshHost = parse_ssh_url(self.host)
        if not self.remote_tmp.startswith("/"):
            raise ConfigError(f"remote_tmp {self.remote_tmp!r} must be an absolute folder on the device")

    def _device_result(self, candidates: list[BenchCandidate], dataset: Any, cfg: Any, say: Say):
        transport = SshTransport(self.target, self.ssh)
        with tempfile.TemporaryDirectory(prefix="edgekd-remote-") as tmp:
            staging = Path(tmp)
            job, decided = stage_job(candidates, dataset, cfg, staging)
            say(f"device {self.target.url}: {len(job['candidates'])} of {len(candidates)} entries run there")
            # Run even with no candidate left: the device's fingerprint and peak still matter.
            result = run_on_device(
                transport,
                staging,
                remote_python=self.remote_python,
                remote_tmp=self.remote_tmp,
                timeout_s=self.timeout_s or _run_timeout(cfg, len(job["candidates"])),
                say=say,
            )
        return result, decided

    def measure(
        self, candidates: list[BenchCandidate], dataset: Any, cfg: Any, out_dir: Path, say: Say
    ) -> Measured:
        result, decided = self._device_result(candidates, dataset, cfg, say)
        roofline = result.get("roofline")
        peak = roofline["peak_gflops"] if roofline else None
        by_id = {res["id"]: res for res in result["results"]}
        entries: list[dict[str, Any]] = []
        predictions: dict[str, np.ndarray] = {}
        for cand in candidates:
            if cand.id in decided:
                entry, preds = decided[cand.id], None
                entry["artifact"] = empty_entry(cand, out_dir)["artifact"]
            else:
                entry, preds = entry_from_result(cand, by_id[cand.id], dataset, cfg, out_dir, peak)
            if preds is not None:
                predictions[cand.id] = preds
            say(f"{cand.id} (on {self.target.url})")
            log_entry(say, entry)
            entries.append(entry)
        environment = dict(result["environment"], host=self.target.url)
        return Measured(entries, predictions, environment, roofline)


def executor_for(
    host: str, *, ssh: SshOptions | None = None, remote_python: str = "python3", **kwargs: Any
) -> LocalExecutor | SshExecutor:
    """The executor for ``host``: "local" measures here, ``ssh://...`` on that device."""
    if host == "local":
        return LocalExecutor()
    return SshExecutor(host, ssh=ssh, remote_python=remote_python, **kwargs)


def run_remote_bench(
    host: str,
    candidates: list[BenchCandidate],
    dataset: ArrayDataset,
    cfg: Any,
    *,
    reference_id: str = "onnxruntime/fp32",
    ssh: SshOptions | None = None,
    remote_python: str = "python3",
    remote_tmp: str = "/tmp",
    timeout_s: float | None = None,
    **bench: Any,
) -> dict[str, Any]:
    """:func:`edgekd.bench.runner.run_bench` on the device at ``host`` (see :class:`SshExecutor`);
    ``bench`` takes run_bench's name, out_dir, log, dataset_name and split. The reference
    defaults to onnxruntime/fp32: torch/fp32 cannot run remotely.

    Raises:
        ConfigError: a bad host URL. HostKeyError: unknown or changed host key.
        RemoteError: unreachable device, refused login, dropped connection, failed runner.
    """
    from edgekd.bench.runner import run_bench

    executor = SshExecutor(
        host, ssh=ssh, remote_python=remote_python, remote_tmp=remote_tmp, timeout_s=timeout_s
    )
    return run_bench(candidates, dataset, cfg, reference_id=reference_id, executor=executor, **bench)
