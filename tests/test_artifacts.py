from __future__ import annotations

import hashlib
import json

import click
import pytest

from edgekd.artifacts import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    command_failed,
    commit_written,
    commits_on_success,
    durable,
    ensure_dir,
    manifest_path,
    place,
    read_manifest,
    remove,
    rollback_on_failure,
    sha256_file,
    write_manifest,
)
from edgekd.errors import ConfigError, GateFailed, InputFileError


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


# --- the write journal: a failed command leaves the destination as it found it ---


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _write_pair(artifact, content: bytes) -> None:
    """An artifact and its manifest, as every stage writes them."""
    atomic_write_bytes(artifact, content)
    write_manifest(artifact, "onnx")


def test_rollback_removes_new_files_and_folders_and_restores_replaced_pairs(tmp_path):
    old = tmp_path / "model.onnx"
    _write_pair(old, b"old model")
    old_manifest = manifest_path(old).read_bytes()
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    new_dir = tmp_path / "a" / "b"
    with pytest.raises(InputFileError), rollback_on_failure():
        _write_pair(old, b"new model")  # overwrite: both files of the pair change
        _write_pair(new_dir / "model.xml", b"ir")
        assert old.read_bytes() == b"new model"
        raise InputFileError("a late check failed")
    assert old.read_bytes() == b"old model"
    assert manifest_path(old).read_bytes() == old_manifest  # the pair is the old, consistent one
    assert read_manifest(old)["sha256"] == sha256_file(old)
    assert foreign.read_text() == "mine"
    assert _names(tmp_path) == ["model.onnx", "model.onnx.json", "notes.txt"]  # no backups, no a/


def test_success_keeps_the_new_files_and_drops_the_old_content(tmp_path):
    target = tmp_path / "model.onnx"
    _write_pair(target, b"old")
    with rollback_on_failure():
        _write_pair(target, b"new")
        _write_pair(tmp_path / "sub" / "int8.onnx", b"int8")
    assert target.read_bytes() == b"new" and read_manifest(target)["sha256"] == sha256_file(target)
    assert _names(tmp_path) == ["model.onnx", "model.onnx.json", "sub"]
    assert _names(tmp_path / "sub") == ["int8.onnx", "int8.onnx.json"]


def test_a_folder_that_holds_files_from_elsewhere_stays(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), rollback_on_failure():
        ensure_dir(out)
        atomic_write_text(out / "ours.txt", "x")
        (out / "theirs.txt").write_text("written without the journal")
        raise RuntimeError("internal error: exit 3, rolled back too")
    assert _names(out) == ["theirs.txt"]


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (GateFailed("budget broken"), True),  # exit 1: a verdict, its report stays
        (KeyboardInterrupt(), True),  # every file in place is whole: keep what finished
        (click.exceptions.Exit(1), True),
        (click.exceptions.Exit(2), False),
        (ConfigError("bad"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_counts_as_a_failed_command(tmp_path, error, kept):
    with pytest.raises(type(error)), rollback_on_failure():
        atomic_write_text(tmp_path / "bench.json", "{}")
        raise error
    assert (tmp_path / "bench.json").exists() is kept
    assert command_failed(error) is not kept


def test_commit_keeps_finished_stages_and_durable_writes_are_never_undone(tmp_path):
    with pytest.raises(ConfigError), rollback_on_failure():
        atomic_write_text(tmp_path / "data.npz", "stage 1")
        commit_written()  # stage boundary: data.npz is a valid, re-usable result
        with durable():
            atomic_write_text(tmp_path / "run" / "train_state.pt", "resume me")
        atomic_write_text(tmp_path / "student.pt", "stage 3, half done")
        raise ConfigError("stage 3 failed")
    assert (tmp_path / "data.npz").read_text() == "stage 1"
    assert (tmp_path / "run" / "train_state.pt").read_text() == "resume me"
    assert not (tmp_path / "student.pt").exists()


def test_a_stage_that_returns_keeps_its_writes_and_a_later_failure_undoes_only_its_own(tmp_path):
    @commits_on_success
    def stage(name: str) -> str:
        atomic_write_text(tmp_path / name, name)
        return name

    with pytest.raises(ConfigError), rollback_on_failure():
        assert stage("data.npz") == "data.npz"
        atomic_write_text(tmp_path / "teacher.pt", "half trained")
        raise ConfigError("teacher stage failed")
    assert _names(tmp_path) == ["data.npz"]


def test_place_and_remove_are_journaled(tmp_path):
    stale = tmp_path / "model.onnx.data"
    stale.write_bytes(b"weights of the previous export")
    finished = tmp_path / "work.onnx"
    finished.write_bytes(b"model")
    with pytest.raises(ConfigError), rollback_on_failure():
        place(finished, tmp_path / "model.onnx")
        remove(stale)
        assert not stale.exists()
        raise ConfigError("parity failed")
    assert stale.read_bytes() == b"weights of the previous export"
    assert _names(tmp_path) == ["model.onnx.data"]


def test_replacing_an_artifact_drops_its_old_manifest_first(tmp_path):
    """Killed between the new file and its new manifest: no manifest, never a stale one."""
    model = tmp_path / "model.onnx"
    _write_pair(model, b"old")
    atomic_write_bytes(model, b"new")  # the process dies here, before write_manifest
    assert not manifest_path(model).exists()
    with pytest.raises(InputFileError, match="no manifest"):
        read_manifest(model)
    notes = tmp_path / "notes"
    notes.write_text("x")
    (tmp_path / "notes.json").write_text('{"not": "a manifest of notes"}')
    atomic_write_text(notes, "y")  # a JSON file that is not its manifest stays
    assert (tmp_path / "notes.json").exists()


def test_without_a_journal_writes_are_plain_atomic_writes(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")  # no backup is made outside a command
    commit_written()  # no-op
    assert _names(tmp_path) == ["a.txt"]


def test_every_cli_command_rolls_back_on_failure(tmp_path, monkeypatch):
    """Through the real root group: exit 2 and 3 undo, exit 0 and a gate verdict (1) keep."""
    from click.testing import CliRunner

    from edgekd.cli.main import cli

    @click.command("writes")
    @click.argument("how")
    def writes(how: str) -> None:
        atomic_write_text(tmp_path / how / "result.json", "{}")
        if how == "user-error":
            raise ConfigError("bad value")
        if how == "bug":
            raise ZeroDivisionError("oops")
        if how == "verdict":
            raise GateFailed("latency over budget")

    monkeypatch.setitem(cli.commands, "writes", writes)
    expected = {"ok": (0, True), "verdict": (1, True), "user-error": (2, False), "bug": (3, False)}
    for how, (code, kept) in expected.items():
        result = CliRunner().invoke(cli, ["writes", how])
        assert result.exit_code == code, result.output
        assert (tmp_path / how / "result.json").exists() is kept
        assert (tmp_path / how).exists() is kept  # the folder it created goes too
