"""The deploy cache never follows a path a record names, and never trusts a broken entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgekd.deploy.cache import DeployCache, cache_key, files_sha256

PARTS = {"input": "ab" * 32, "recipe": "onnxruntime/fp32"}
MAIN = "model.onnx"


def _make(content: bytes = b"model bytes"):
    def make(work: Path) -> dict:
        (work / MAIN).write_bytes(content)
        return {"note": "built"}

    return make


def _stored(cache: DeployCache) -> Path:
    entry = cache.build(PARTS, MAIN, _make())
    assert not entry.cached
    return entry.path.parent


def _rewrite(folder: Path, **fields) -> None:
    record = json.loads((folder / "record.json").read_text())
    record.update(fields)
    (folder / "record.json").write_text(json.dumps(record))


def test_an_unchanged_entry_is_a_hit(tmp_path: Path) -> None:
    cache = DeployCache(tmp_path / "cache")
    folder = _stored(cache)
    again = cache.build(PARTS, MAIN, _make(b"never built"))
    assert again.cached and again.path == folder / MAIN and again.path.read_bytes() == b"model bytes"
    assert cache.counters.build_hits == 1 and cache.counters.build_misses == 1


@pytest.mark.parametrize("how", ["parent", "absolute", "nested", "empty", "dot", "not a list", "key"])
def test_a_record_naming_files_outside_its_folder_is_rebuilt(tmp_path: Path, how: str) -> None:
    cache = DeployCache(tmp_path / "cache")
    folder = _stored(cache)
    outside = tmp_path / "cache" / "builds" / "outside.onnx"
    outside.write_bytes(b"the attacker's model")
    names = {
        "parent": [MAIN, "../outside.onnx"],
        "absolute": [MAIN, str(outside)],
        "nested": [MAIN, "sub/x.onnx"],
        "empty": [],
        "dot": [MAIN, "."],
        "not a list": MAIN,
    }
    if how == "key":
        _rewrite(folder, key="0" * 64)
    else:
        # What an attacker writes: the hash of the files the record names, so only the names can tell.
        listed = [folder / n for n in names[how]] if how in ("parent", "absolute") else None
        _rewrite(folder, files=names[how], **({"sha256": files_sha256(listed)} if listed else {}))
    entry = cache.build(PARTS, MAIN, _make(b"rebuilt"))
    assert not entry.cached and entry.path.read_bytes() == b"rebuilt"
    assert all(f.parent == folder for f in entry.files)
    assert outside.read_bytes() == b"the attacker's model"


def test_a_symlinked_file_is_not_followed(tmp_path: Path) -> None:
    cache = DeployCache(tmp_path / "cache")
    folder = _stored(cache)
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(b"model bytes")  # same bytes: the recorded hash would match
    (folder / MAIN).unlink()
    os.symlink(outside, folder / MAIN)
    entry = cache.build(PARTS, MAIN, _make(b"rebuilt"))
    assert not entry.cached and not entry.path.is_symlink() and entry.path.read_bytes() == b"rebuilt"
    assert outside.read_bytes() == b"model bytes"


def test_a_symlinked_entry_folder_is_unlinked_not_followed(tmp_path: Path) -> None:
    cache = DeployCache(tmp_path / "cache")
    folder = _stored(cache)
    elsewhere = tmp_path / "elsewhere"
    os.replace(folder, elsewhere)  # a sound entry, moved out of the cache ...
    os.symlink(elsewhere, folder)  # ... and linked back in
    entry = cache.build(PARTS, MAIN, _make(b"rebuilt"))
    assert not entry.cached and not folder.is_symlink() and entry.path.read_bytes() == b"rebuilt"
    assert (elsewhere / MAIN).read_bytes() == b"model bytes" and (elsewhere / "record.json").is_file()


def test_swapped_bytes_are_rebuilt(tmp_path: Path) -> None:
    cache = DeployCache(tmp_path / "cache")
    folder = _stored(cache)
    (folder / MAIN).write_bytes(b"swapped")
    entry = cache.build(PARTS, MAIN, _make(b"rebuilt"))
    assert not entry.cached and entry.path.read_bytes() == b"rebuilt"


ENTRY = {
    "status": "ok",
    "latency_ms": {"p50": 1.0, "p90": 1.2, "std": 0.1, "runs": 50},
    "accuracy": {"overall": 0.9},
}


@pytest.mark.parametrize(
    "change",
    [
        {"status": "failed"},
        {"latency_ms": {"p50": -1.0, "p90": 1.2, "std": 0.1, "runs": 50}},
        {"latency_ms": {"p50": float("nan"), "p90": 1.2, "std": 0.1, "runs": 50}},
        {"latency_ms": {"p50": 1.0, "p90": 1.2, "std": 0.1, "runs": 0}},
        {"latency_ms": None},
        {"accuracy": {"overall": 1.5}},
        {"accuracy": {}},
    ],
)
def test_a_broken_measurement_is_measured_again(tmp_path: Path, change: dict) -> None:
    cache = DeployCache(tmp_path / "cache")
    key = cache_key({"m": 1})
    cache.store_measurement(key, {"m": 1}, dict(ENTRY))
    assert cache.load_measurement(key) == ENTRY
    stored = tmp_path / "cache" / "measurements" / f"{key}.json"
    doc = json.loads(stored.read_text())
    doc["entry"] = {**ENTRY, **change}
    stored.write_text(json.dumps(doc))
    assert cache.load_measurement(key) is None


def test_a_measurement_filed_under_another_key_is_ignored(tmp_path: Path) -> None:
    cache = DeployCache(tmp_path / "cache")
    key, other = cache_key({"m": 1}), cache_key({"m": 2})
    cache.store_measurement(key, {"m": 1}, dict(ENTRY))
    measurements = tmp_path / "cache" / "measurements"
    (measurements / f"{other}.json").write_text((measurements / f"{key}.json").read_text())
    assert cache.load_measurement(other) is None
