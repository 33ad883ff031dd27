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

Entries are written into a temporary name and renamed into place, so a killed run leaves
no half entry; a build entry whose files no longer match their recorded hash is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_json, sha256_file

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
        folder.parent.mkdir(parents=True, exist_ok=True)
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
            if folder.exists():  # a stale or broken entry under this key
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(work, folder)
            except OSError:  # another deploy just stored the same key: same inputs, use its entry
                raced = self._valid_build(folder, main_name)
                if raced is None:
                    raise
                return raced
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._entry(folder, record, cached=False)

    def _valid_build(self, folder: Path, main_name: str) -> BuildEntry | None:
        try:
            record = json.loads((folder / "record.json").read_text(encoding="utf-8"))
            files = [folder / name for name in record["files"]]
            if record["file"] != main_name or files_sha256(files) != record["sha256"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
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
        except (OSError, ValueError, KeyError, TypeError):
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


def _artifact_files(main: Path) -> list[Path]:
    """The main file, plus an OpenVINO IR's .bin beside its .xml."""
    files = [main]
    if main.suffix == ".xml" and main.with_suffix(".bin").is_file():
        files.append(main.with_suffix(".bin"))
    return files
