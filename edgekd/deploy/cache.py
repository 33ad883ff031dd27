"""Content-addressed cache of built artifacts and of measurements.

Build key: sha256 over (input artifact sha256, candidate recipe, calibration hash, library
versions). Measurement key: sha256 over (artifact sha256, runtime options, bench settings,
evaluation-data hash, machine fingerprint). A key is the sha256 of the canonical JSON of
its parts, and the parts are stored beside the entry, so a reader can see why two runs
did or did not share an entry. Changing the student changes the hash of everything built
from it; changing the calibration recipe changes only the INT8 builds; re-running with
nothing changed builds and measures nothing.

Layout under the cache folder::

    builds/<key>/record.json + the artifact's files
    measurements/<key>.json

Entries are built in a temporary folder and moved into place with their record last, so a
killed run leaves no entry that looks whole; a build entry without a sound record, or whose
files no longer match their recorded hash, is rebuilt. The moves are journaled
(:mod:`edgekd.artifacts`): a deploy that fails (exit 2) leaves no cache entry of its own
behind, as it leaves no other file; one that finishes or ends with a verdict keeps them.
A record is data read from a file, so it never chooses a path: its file names must be plain
names of regular files inside the entry's own folder (no ``/``, ``..``, absolute paths or
symbolic links), and a measurement must hold the figures deploy reads; anything else is a
broken entry, rebuilt or re-measured, never followed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_json, ensure_dir, place, sha256_file

CACHE_SCHEMA = "edgekd.deploy-cache/1"


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def files_sha256(files: list[Path]) -> str:
    """One file: its sha256. Several (an IR's .xml and .bin): sha256 of their hashes in order,
    the same rule as the bench's ``artifact_record``."""
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()


@dataclasses.dataclass
class CacheCounters:
    """Hits and misses of one deploy run; recorded in deploy.json and asserted by the tests."""

    build_hits: int = 0
    build_misses: int = 0
    measure_hits: int = 0
    measure_misses: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BuildEntry:
    """A built artifact in the cache: ``path`` the main file, ``files`` all of them."""

    key: str
    path: Path
    files: list[Path]
    sha256: str
    record: dict[str, Any]
    cached: bool


class DeployCache:
    """Built artifacts and measurements under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str], *, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.counters = CacheCounters()

    # ------------------------------------------------------------------ builds

    def build(
        self,
        parts: dict[str, Any],
        main_name: str,
        make: Callable[[Path], dict[str, Any]],
    ) -> BuildEntry:
        """The artifact for ``parts``: from the cache, or made by ``make(work_dir)``.

        ``make`` writes ``work_dir/main_name`` (and any sidecar files, e.g. the IR's .bin)
        and returns a report (plain data) that is stored in the record.
        """
        key = cache_key(parts)
        folder = self.root / "builds" / key
        cached = self._valid_build(folder, main_name) if self.enabled else None
        if cached is not None:
            self.counters.build_hits += 1
            return cached
        self.counters.build_misses += 1
        ensure_dir(folder.parent)
        work = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=folder.parent))
        try:
            report = make(work)
            files = _artifact_files(work / main_name)
            record = {
                "schema": CACHE_SCHEMA,
                "key": key,
                "parts": parts,
                "file": main_name,
                "files": [f.name for f in files],
                "sha256": files_sha256(files),
                "report": report,
            }
            atomic_write_json(work / "record.json", record)
            _discard(folder)  # a stale or broken entry under this key
            _store(work, folder, [*record["files"], "record.json"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._entry(folder, record, cached=False)

    def _valid_build(self, folder: Path, main_name: str) -> BuildEntry | None:
        """The entry in ``folder`` when its record is sound and its files match their hash, else None."""
        try:
            if folder.is_symlink() or folder.resolve().parent != (self.root / "builds").resolve():
                return None
            record = json.loads((folder / "record.json").read_text(encoding="utf-8"))
            if not _sound_record(record, folder, main_name):
                return None
            if files_sha256([folder / name for name in record["files"]]) != record["sha256"]:
                return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return self._entry(folder, record, cached=True)

    @staticmethod
    def _entry(folder: Path, record: dict[str, Any], *, cached: bool) -> BuildEntry:
        return BuildEntry(
            key=record["key"],
            path=folder / record["file"],
            files=[folder / name for name in record["files"]],
            sha256=record["sha256"],
            record=record,
            cached=cached,
        )

    # ------------------------------------------------------------ measurements

    def measurement_key(self, parts: dict[str, Any]) -> str:
        return cache_key(parts)

    def load_measurement(self, key: str) -> dict[str, Any] | None:
        """The stored bench entry for ``key`` (counted as a hit), or None (not counted)."""
        if not self.enabled:
            return None
        try:
            stored = json.loads((self.root / "measurements" / f"{key}.json").read_text(encoding="utf-8"))
            entry = stored["entry"]
            if stored.get("key") != key or not _sound_measurement(entry):
                return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        self.counters.measure_hits += 1
        return entry

    def store_measurement(self, key: str, parts: dict[str, Any], entry: dict[str, Any]) -> None:
        """Keep a finished ("ok") entry; failed or skipped ones are measured again next time."""
        self.counters.measure_misses += 1
        if self.enabled and entry.get("status") == "ok":
            atomic_write_json(
                self.root / "measurements" / f"{key}.json",
                {"schema": CACHE_SCHEMA, "key": key, "parts": parts, "entry": entry},
            )


def _store(work: Path, folder: Path, names: list[str]) -> None:
    """Move the finished entry's files from ``work`` into ``folder``, the record last (an entry
    without its record is incomplete and rebuilt). Journaled (:func:`edgekd.artifacts.place`):
    a command that fails keeps no build of its own, as it keeps no other file; a deploy that
    finishes, or ends with a verdict, keeps every entry for the next run."""
    ensure_dir(folder)
    for name in names:
        place(work / name, folder / name)


def _artifact_files(main: Path) -> list[Path]:
    """The main file, plus an OpenVINO IR's .bin beside its .xml."""
    files = [main]
    if main.suffix == ".xml" and main.with_suffix(".bin").is_file():
        files.append(main.with_suffix(".bin"))
    return files


def _plain_name(name: Any) -> bool:
    """A file name with no folder part: not empty, ``.``, ``..``, absolute, nor holding a separator."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(sep in name for sep in ("/", "\\", "\0"))
        and Path(name).name == name
    )


def _sound_record(record: Any, folder: Path, main_name: str) -> bool:
    """A build record written by :meth:`DeployCache.build` for this folder, naming only its own files."""
    if not isinstance(record, dict) or record.get("schema") != CACHE_SCHEMA:
        return False
    names = record.get("files")
    if record.get("key") != folder.name or record.get("file") != main_name or not isinstance(names, list):
        return False
    if not names or names[0] != main_name or not isinstance(record.get("sha256"), str):
        return False
    inside = folder.resolve()
    for name in names:
        if not _plain_name(name):
            return False
        path = folder / name
        if path.is_symlink() or not path.is_file() or path.resolve().parent != inside:
            return False
    return True


def _number(value: Any, low: float = 0.0, high: float = math.inf) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _sound_measurement(entry: Any) -> bool:
    """A finished bench entry holding the figures deploy reads (latency, runs, accuracy)."""
    if not isinstance(entry, dict) or entry.get("status") != "ok":
        return False
    lat, acc = entry.get("latency_ms"), entry.get("accuracy")
    if not isinstance(lat, dict) or not isinstance(acc, dict):
        return False
    if not all(_number(lat.get(k)) for k in ("p50", "p90", "std")) or not _number(lat.get("runs"), 1):
        return False
    return _number(acc.get("overall"), 0.0, 1.0)


def _discard(folder: Path) -> None:
    """Remove a broken entry: a symbolic link is unlinked, never followed."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink(missing_ok=True)
    elif folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
