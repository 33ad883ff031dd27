"""Atomic artifact writes and the manifest sidecar every stage leaves.

Each artifact ``model.onnx`` gets ``model.onnx.json``: kind, sha256, size, the
parents' sha256, the resolved config, library versions and metrics. Writes go to
a temporary file in the same folder and are renamed into place, so a killed run
never leaves a half-written artifact under the final name.

A command also undoes what it wrote when it fails: :func:`rollback_on_failure` (wrapped
around every CLI command) keeps a journal of the files that :func:`atomic_path`,
:func:`place` and :func:`remove` create or replace and the folders :func:`ensure_dir`
creates. On failure (exit code 2 or 3) each new file is removed, each replaced file gets
its previous content back (kept as a hard link until then) and each new folder left
empty is removed, so a failed command leaves the destination as it found it. Stages
that finish call :func:`commit_written` to keep their results; writes inside
:func:`durable` (training resume state, caches) are never undone.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from edgekd.errors import InputFileError

P = ParamSpec("P")
R = TypeVar("R")

MANIFEST_SCHEMA = "edgekd.manifest/1"
_TRACKED_LIBRARIES = ("edgekd", "torch", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place on success.

    Use for writers that want a filename (torch.save, onnx.save, ort quantizer):

    >>> with atomic_path("model.onnx") as tmp:
    ...     onnx.save(model, tmp)
    """
    final = Path(final)
    ensure_dir(final.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp makes the file private (0600); artifacts get the usual umask mode.
            tmp.chmod(0o666 & ~_umask())
        place(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- the write journal: what a command created or replaced, so a failure can undo it ---


@dataclass
class _Written:
    """One path a command wrote: ``backup`` holds its previous content (a hard link or a copy
    beside it) when it existed before, None when the command created it."""

    path: Path
    backup: Path | None = None
    is_dir: bool = False


@dataclass
class WriteJournal:
    """The files and folders one command has created or replaced since the last commit."""

    entries: list[_Written] = field(default_factory=list)
    _seen: set[Path] = field(default_factory=set)

    def before_replace(self, final: Path) -> None:
        """Record ``final`` just before it is created, replaced or removed (once per path)."""
        key = final.absolute()
        if key in self._seen:
            return  # the first record holds the state before the command
        self._seen.add(key)
        backup = _backup(final) if final.is_file() or final.is_symlink() else None
        self.entries.append(_Written(final, backup))

    def created_dir(self, folder: Path) -> None:
        self._seen.add(folder.absolute())
        self.entries.append(_Written(folder, is_dir=True))

    def commit(self) -> None:
        """Keep everything written so far: drop the previous contents."""
        for entry in self.entries:
            if entry.backup is not None:
                entry.backup.unlink(missing_ok=True)
        self.entries.clear()
        self._seen.clear()

    def rollback(self) -> list[str]:
        """Undo every entry, newest first; returns what could not be undone (best effort)."""
        problems = []
        for entry in reversed(self.entries):
            try:
                if entry.is_dir:
                    with contextlib.suppress(FileNotFoundError, OSError):
                        entry.path.rmdir()  # only when empty: files from elsewhere stay
                elif entry.backup is not None:
                    os.replace(entry.backup, entry.path)
                elif entry.path.is_dir() and not entry.path.is_symlink():
                    continue  # something else made a folder there; not ours to remove
                else:
                    entry.path.unlink(missing_ok=True)
            except OSError as exc:
                problems.append(f"{entry.path}: {exc.strerror or exc}")
        self.entries.clear()
        self._seen.clear()
        return problems


_JOURNAL: contextvars.ContextVar[WriteJournal | None] = contextvars.ContextVar("edgekd_journal", default=None)


def _backup(final: Path) -> Path:
    """A second name for ``final``'s current content in its folder (a hard link, else a copy)."""
    while True:
        backup = final.with_name(f".{final.name}.edgekd-previous.{secrets.token_hex(4)}")
        try:
            os.link(final, backup, follow_symlinks=False)
            return backup
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            shutil.copy2(final, backup, follow_symlinks=False)
            return backup


def ensure_dir(folder: str | os.PathLike[str]) -> Path:
    """``mkdir -p folder``; the folders this creates are journaled (removed on rollback when empty)."""
    folder = Path(folder)
    journal = _JOURNAL.get()
    if journal is not None and not folder.is_dir():
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        for created in reversed(missing):  # outermost first, so rollback empties inner ones first
            journal.created_dir(created)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def place(src: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Rename the finished file ``src`` to ``final`` (same file system), journaled: the only way
    a checked result should reach its final name."""
    final = Path(final)
    _drop_stale_manifest(final)
    journal = _JOURNAL.get()
    if journal is not None:
        journal.before_replace(final)
    os.replace(src, final)
    return final


def _drop_stale_manifest(final: Path) -> None:
    """Remove the manifest of the file about to be replaced: from here until the new manifest
    is written (next), a killed process leaves a file without a manifest ("re-run the stage"),
    never a manifest whose sha256 describes another file. Only a real edgekd manifest of
    ``final`` is touched; a rollback brings it back."""
    sidecar = manifest_path(final)
    if not final.is_file() or not sidecar.is_file():
        return
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    if (
        isinstance(record, dict)
        and record.get("schema") == MANIFEST_SCHEMA
        and record.get("file") == final.name
    ):
        remove(sidecar)


def remove(path: str | os.PathLike[str]) -> None:
    """Delete a file (a stale sidecar, a failed result), journaled: a rollback brings it back."""
    path = Path(path)
    if not (path.is_file() or path.is_symlink()):
        return
    journal = _JOURNAL.get()
    if journal is not None:
        journal.before_replace(path)
    path.unlink(missing_ok=True)


def command_failed(exc: BaseException) -> bool:
    """Whether ``exc`` ends a command as failed (exit code >= 2), so its writes are undone.

    A gate verdict (exit 1) is a result, not a failure; an interrupt (Ctrl-C, click's Abort)
    keeps what was finished, since every file in place is whole.
    """
    if isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
        return False
    click = sys.modules.get("click")
    if click is not None and isinstance(exc, click.exceptions.Abort):
        return False
    code = exc.code if isinstance(exc, SystemExit) else getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code >= 2
    return isinstance(exc, (Exception, SystemExit))


@contextlib.contextmanager
def rollback_on_failure() -> Iterator[WriteJournal]:
    """Journal every write inside; undo them when the block fails (see :func:`command_failed`),
    keep them otherwise. Nested use joins the outer journal (the outermost decides)."""
    outer = _JOURNAL.get()
    if outer is not None:
        yield outer
        return
    journal = WriteJournal()
    token = _JOURNAL.set(journal)
    try:
        yield journal
    except BaseException as exc:
        if command_failed(exc):
            problems = journal.rollback()
            if problems:  # never hide the original error behind a cleanup one
                print(f"edgekd: could not undo {'; '.join(problems)}", file=sys.stderr)
        else:
            journal.commit()
        raise
    else:
        journal.commit()
    finally:
        _JOURNAL.reset(token)


def commit_written() -> None:
    """Keep everything the current command has written so far (a finished stage's results):
    a later failure undoes only what comes after. No-op outside :func:`rollback_on_failure`."""
    journal = _JOURNAL.get()
    if journal is not None:
        journal.commit()


def commits_on_success(stage: Callable[P, R]) -> Callable[P, R]:
    """Decorate a pipeline stage: once it returns, what it wrote is kept (:func:`commit_written`).

    A finished stage's artifacts are valid and any later stage can be re-run from them, so a
    multi-stage command that fails later undoes only the stage that failed.
    """

    @functools.wraps(stage)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        result = stage(*args, **kwargs)
        commit_written()
        return result

    return run


@contextlib.contextmanager
def durable() -> Iterator[None]:
    """Writes inside are never undone: training resume state, caches that stay valid."""
    token = _JOURNAL.set(None)
    try:
        yield
    finally:
        _JOURNAL.reset(token)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    # numpy scalars and Paths show up in metrics and configs.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def manifest_path(artifact: str | os.PathLike[str]) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_manifest(
    artifact: str | os.PathLike[str],
    kind: str,
    *,
    parents: list[str | os.PathLike[str]] | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``<artifact>.json`` describing an artifact that already exists.

    ``parents`` are artifact paths whose sha256 is recorded (from their own
    manifest when present, else hashed now).
    """
    artifact = Path(artifact)
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "kind": kind,
        "file": artifact.name,
        "sha256": sha256_file(artifact) if artifact.is_file() else None,
        "size_bytes": artifact.stat().st_size if artifact.is_file() else None,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parents": [_parent_record(p) for p in parents or []],
        "config": config or {},
        "versions": library_versions(),
        "metrics": metrics or {},
    }
    if extra:
        manifest.update(extra)
    atomic_write_json(manifest_path(artifact), manifest)
    return manifest


def _parent_record(parent: str | os.PathLike[str]) -> dict[str, Any]:
    parent = Path(parent)
    known = read_manifest(parent, required=False)
    digest = known.get("sha256") if known else None
    if digest is None and parent.is_file():
        digest = sha256_file(parent)
    return {"file": parent.name, "kind": known.get("kind") if known else None, "sha256": digest}


def read_manifest(artifact: str | os.PathLike[str], *, required: bool = True) -> dict[str, Any]:
    path = manifest_path(artifact)
    if not path.is_file():
        if required:
            raise InputFileError(
                f"no manifest {path} beside {artifact}",
                hint="use an artifact written by edgekd, or re-run the stage that makes it",
            )
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"manifest {path} is unreadable: {exc}", hint="re-run the stage that wrote it"
        ) from None


def require_file(path: str | os.PathLike[str], what: str, hint: str | None = None) -> Path:
    """Return ``path`` as a Path, or raise one clear line when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{what} {path} does not exist", hint=hint or "check the path")
    return path
