"""Deploy-cache records: file names and figures read back from the cache never choose a path.

A cache is edgekd's own scratch space, so a tampered entry is a broken entry: the command
still succeeds (exit 0), but it rebuilds or re-measures instead of following the record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from tests.robustness.entries import argv
from tests.robustness.harness import expect_acceptance


def _records(folder, pattern: str):
    return sorted(folder.glob(pattern))


def _files_elsewhere(box, absolute: bool) -> None:
    """Every build record names a decoy outside its folder, with the decoy's hash."""
    decoy = box.dir / "decoy.onnx"
    decoy.write_bytes(b"not the artifact the cache built")
    digest = hashlib.sha256(decoy.read_bytes()).hexdigest()
    for record_path in _records(box.out / "cache", "builds/*/record.json"):
        record = json.loads(record_path.read_text())
        name = str(decoy) if absolute else os.path.relpath(decoy, record_path.parent)
        record.update(files=[name], sha256=digest)
        record_path.write_text(json.dumps(record))


def _forged_measurements(box, _absolute: bool) -> None:
    """Every stored measurement claims a negative latency and perfect accuracy."""
    for path in _records(box.out / "cache", "measurements/*.json"):
        stored = json.loads(path.read_text())
        latency = stored["entry"].get("latency_ms") or {}
        for key in ("p50", "p90", "mean", "min", "max"):
            latency[key] = -1.0
        stored["entry"]["latency_ms"] = latency
        path.write_text(json.dumps(stored))


TAMPER = {
    "record-files-relative-traversal": (_files_elsewhere, False, "build_hits"),
    "record-files-absolute-path": (_files_elsewhere, True, "build_hits"),
    "measurement-negative-latency": (_forged_measurements, False, "measure_hits"),
}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(name, id=f"{name}-deploy-pt", marks=pytest.mark.robustness(
            kind="deploy-cache", entry="deploy-pt", expect="accept"))
        for name in TAMPER
    ],
)  # fmt: skip
def test_tampered_cache_is_not_followed(valid, box, tamper):
    command = argv("deploy-pt", valid, box)
    expect_acceptance(box, command)  # fills OUT/cache
    if not _records(box.out / "cache", "builds/*/record.json"):
        pytest.fail("deploy wrote no cache entries to tamper with")
    apply, absolute, counter = TAMPER[tamper]
    apply(box, absolute)
    (box.out / "deploy.json").unlink()
    for path in box.out.glob("deployed.*"):
        path.unlink()
    expect_acceptance(box, command)
    cache = json.loads((box.out / "deploy.json").read_text())["cache"]
    assert cache[counter] == 0, f"a tampered cache entry was used: {cache}"
    shutil.rmtree(box.out)
