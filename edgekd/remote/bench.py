"""Bench on a device over SSH: ship the models, the frames and the runner; bring back JSON.

The device needs python3, numpy and the runtime (onnxruntime or openvino), not edgekd
and not torch. It runs :mod:`edgekd.remote.device_runner`, the very file whose functions
time and predict locally, so a remote entry is measured exactly as a local one. The host
keeps the labels and scores the device's predictions with the same evaluator
(:func:`edgekd.bench.accuracy.score`), then builds the same bench document.

Cleanup: the local staging folder is a TemporaryDirectory; the device folder is made by
``mktemp -d`` (mode 0700) under ``remote_tmp``, removed by the runner when it ends (also
when hung up on) and again by the host afterwards, success or failure.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.accuracy import score
from edgekd.bench.runner import (
    BenchCandidate,
    BenchConfig,
    artifact_files,
    bench_document,
    check_frames_fit,
    complete_entry,
    empty_entry,
    latency_batch,
    log_entry,
    require_measured,
    session_options,
)
from edgekd.config import to_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, EdgeKDError
from edgekd.remote import device_runner
from edgekd.remote.device_runner import input_mismatch
from edgekd.remote.ssh import RemoteError, SshOptions, SshTransport, parse_ssh_url

#: Runtimes the device runner can open.
REMOTE_RUNTIMES = ("onnxruntime", "openvino")


def _candidate_options(cand: BenchCandidate, cfg: BenchConfig) -> dict[str, Any]:
    """The runtime settings the device applies, resolved here by the backends' own code."""
    options = session_options(cand, cfg)
    options.validate()
    if cand.backend == "onnxruntime":
        from edgekd.backends.onnxruntime_backend import resolve_ort_options

        return resolve_ort_options(options)
    from edgekd.backends.openvino_backend import compile_config

    device = options.device.upper()
    return {"device": device, "config": compile_config(device, options)}


def stage_job(
    candidates: list[BenchCandidate], dataset: ArrayDataset, cfg: BenchConfig, staging: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Write job.json, frames.npz and the models into ``staging``.

    Returns (the job, entries decided here by id: runtimes the runner cannot open and
    missing artifacts become skipped/failed entries without a trip to the device).
    """
    decided: dict[str, dict[str, Any]] = {}
    jobs: list[dict[str, Any]] = []
    for i, cand in enumerate(candidates):
        entry = empty_entry(cand, staging, cfg)
        if cand.backend not in REMOTE_RUNTIMES:
            entry.update(
                status="skipped",
                reason=f"{cand.backend} does not run on a remote device "
                f"(the device runner opens {' and '.join(REMOTE_RUNTIMES)})",
            )
            decided[cand.id] = entry
            continue
        files = [f for f in artifact_files(Path(cand.artifact)) if f.is_file()]
        if not files:
            entry.update(reason=f"{cand.backend} artifact {cand.artifact} does not exist (fix: re-export)")
            decided[cand.id] = entry
            continue
        try:
            options = _candidate_options(cand, cfg)
        except EdgeKDError as exc:
            entry.update(reason=exc.one_line())
            decided[cand.id] = entry
            continue
        for f in files:  # an IR keeps its .xml/.bin pair under one stem
            shutil.copyfile(f, staging / f"model{i}{f.suffix.lower()}")
        model = f"model{i}{Path(cand.artifact).suffix.lower()}"
        jobs.append(
            {
                "id": cand.id,
                "runtime": cand.backend,
                "model": model,
                "name": str(cand.artifact),
                "options": options,
            }
        )
    lat = to_dict(cfg.latency)
    job = {
        "protocol": device_runner.RUNNER_PROTOCOL,
        "latency": lat,
        "accuracy_batch_size": cfg.accuracy_batch_size,
        "pin_cpus": lat.get("pin_cpus"),
        "roofline": cfg.roofline,
        "candidates": jobs,
    }
    (staging / "job.json").write_text(json.dumps(job), encoding="utf-8")
    np.savez(staging / "frames.npz", x=dataset.x, sample=latency_batch(dataset.x, cfg.latency.batch_size))
    shutil.copyfile(device_runner.__file__, staging / "device_runner.py")
    return job, decided


def _run_timeout(cfg: BenchConfig, n: int) -> float:
    """Seconds the device may take: both phases of every candidate at their cap, plus loading."""
    return 120.0 + n * (2 * cfg.latency.max_seconds + 60.0)


def run_on_device(
    transport: SshTransport,
    staging: Path,
    *,
    remote_python: str,
    remote_tmp: str,
    timeout_s: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Copy ``staging`` to a fresh device folder, run the runner there, return its result.

    The device folder is removed afterwards whatever happens; when even that fails (the
    connection is gone) the error names the folder left behind.
    """
    remote_dir = transport.make_temp_dir(remote_tmp)
    try:
        say(f"    copying {sum(f.stat().st_size for f in staging.iterdir()) / 1024:.0f} KiB to {remote_dir}")
        transport.upload(sorted(staging.iterdir()), remote_dir, timeout_s=timeout_s)
        say("    running the device runner")
        out = transport.run(
            [remote_python, f"{remote_dir}/device_runner.py", remote_dir],
            what="running the bench",
            timeout_s=timeout_s,
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


def _entry_from_result(
    cand: BenchCandidate,
    res: dict[str, Any],
    dataset: ArrayDataset,
    cfg: BenchConfig,
    out_dir: Path,
    peak: float | None,
) -> tuple[dict[str, Any], np.ndarray | None]:
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
    executed = res.get("executed_precision")
    if executed is None:  # onnxruntime: from the graph and the options sent, as the local backend does
        from edgekd.backends.precision import onnx_executed_precision

        executed = onnx_executed_precision(Path(cand.artifact), _candidate_options(cand, cfg))
    preds = np.asarray(res["predictions"], dtype=np.int64)
    report = score(preds, dataset)
    complete_entry(
        entry,
        latency=res["latency"],
        load_ms=res["load_ms"],
        executed_precision=executed,
        accuracy=report.to_dict(),
        peak_memory_mib=res.get("peak_memory_mib"),
        batch_size=cfg.latency.batch_size,
        peak_gflops=peak,
        input_shape=res.get("input_shape"),
    )
    return entry, preds


def run_remote_bench(
    host: str,
    candidates: list[BenchCandidate],
    dataset: ArrayDataset,
    cfg: BenchConfig,
    *,
    name: str,
    out_dir: Path,
    reference_id: str = "onnxruntime/fp32",
    ssh: SshOptions | None = None,
    remote_python: str = "python3",
    remote_tmp: str = "/tmp",
    timeout_s: float | None = None,
    log: Callable[[str], None] | None = None,
    dataset_name: str = "dataset",
    split: str = "test",
) -> dict[str, Any]:
    """Bench ``candidates`` on the device at ``host``; the same bench document as
    :func:`edgekd.bench.runner.run_bench`, with the DEVICE's environment fingerprint.

    Args:
        host: ``ssh://[user@]device[:port]``.
        candidates: onnxruntime and openvino entries run on the device; others are skipped
            with their reason (torch does not run there).
        dataset: evaluation frames; only ``x`` travels, labels stay here.
        cfg: latency settings, threads, accuracy batch, roofline.
        name, out_dir, dataset_name, split: as for ``run_bench``.
        reference_id: the entry agreement is measured against (torch/fp32 cannot run remotely).
        ssh: known_hosts file, identity, timeouts.
        remote_python: the device's interpreter with numpy and the runtime.
        remote_tmp: an existing device folder the private job folder is made in.
        timeout_s: limit for the device run (default: from the latency caps).
        log: receives progress lines.

    Raises:
        ConfigError: a bad host URL. HostKeyError: unknown or changed host key.
        RemoteError: unreachable device, refused login, dropped connection, failed runner.
    """
    cfg.validate()
    check_frames_fit(dataset, cfg, dataset_name)
    say = log or (lambda _line: None)
    target = parse_ssh_url(host)
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"bench candidates repeat an id: {', '.join(ids)}")
    if not remote_tmp.startswith("/"):
        raise ConfigError(f"remote_tmp {remote_tmp!r} must be an absolute folder on the device")
    transport = SshTransport(target, ssh)
    with tempfile.TemporaryDirectory(prefix="edgekd-remote-") as tmp:
        staging = Path(tmp)
        job, decided = stage_job(candidates, dataset, cfg, staging)
        say(f"device {target.url}: {len(job['candidates'])} of {len(candidates)} entries run there")
        # Run even with no candidate left: the device's fingerprint and peak still matter.
        result = run_on_device(
            transport,
            staging,
            remote_python=remote_python,
            remote_tmp=remote_tmp,
            timeout_s=timeout_s or _run_timeout(cfg, len(job["candidates"])),
            say=say,
        )
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
            entry, preds = _entry_from_result(cand, by_id[cand.id], dataset, cfg, out_dir, peak)
        if preds is not None:
            predictions[cand.id] = preds
        say(f"{cand.id} (on {target.url})")
        log_entry(say, entry)
        entries.append(entry)
    require_measured(entries, cfg, dataset_name)
    environment = dict(result["environment"])
    environment["host"] = target.url
    return bench_document(
        entries,
        predictions,
        dataset,
        cfg,
        name=name,
        reference_id=reference_id,
        environment=environment,
        roofline=roofline,
        dataset_name=dataset_name,
        split=split,
    )
