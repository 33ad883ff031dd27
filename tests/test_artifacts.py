from __future__ import annotations

import hashlib
import json

import pytest

from edgekd.artifacts import atomic_path, atomic_write_text, read_manifest, sha256_file, write_manifest
from edgekd.errors import InputFileError


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_manifest_records_hashes_of_self_and_parents(tmp_path):
    parent = tmp_path / "data.npz"
    parent.write_bytes(b"parent-bytes")
    child = tmp_path / "model.pt"
    child.write_bytes(b"child-bytes")
    write_manifest(child, "checkpoint", parents=[parent], config={"a": 1}, metrics={"acc": 0.5})
    manifest = json.loads((tmp_path / "model.pt.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(b"child-bytes").hexdigest() == sha256_file(child)
    assert manifest["parents"][0]["sha256"] == hashlib.sha256(b"parent-bytes").hexdigest()
    assert manifest["config"] == {"a": 1} and manifest["metrics"] == {"acc": 0.5}
    assert "python" in manifest["versions"]
    assert read_manifest(child)["kind"] == "checkpoint"


def test_missing_or_corrupt_manifest_is_one_line(tmp_path):
    artifact = tmp_path / "x.onnx"
    artifact.write_bytes(b"")
    with pytest.raises(InputFileError, match="no manifest"):
        read_manifest(artifact)
    (tmp_path / "x.onnx.json").write_text("{not json")
    with pytest.raises(InputFileError, match="unreadable"):
        read_manifest(artifact)
