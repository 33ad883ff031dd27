"""What the engine cache and the TensorRT backend check before an engine is used (no GPU needed).

A serialized engine is deserialized into GPU code by TensorRT, so bytes that someone swapped
into the cache folder (or beside an exported engine) must not be loaded on the strength of
a file name. Every engine edgekd writes has a manifest (``<engine>.json``) recording its
sha256; the cache keeps an engine only when its bytes still hash to that value and the
manifest records the same cache key, and the backend refuses an engine whose bytes differ
from the sha256 its manifest records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgekd.artifacts import manifest_path, sha256_file, write_manifest
from edgekd.errors import InputFileError

CACHE_KIND = "tensorrt-engine-cache"


def _manifest(engine: Path) -> Any:
    """The parsed manifest beside ``engine``; None when there is none. Raises ValueError/OSError."""
    path = manifest_path(engine)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def record_cached_engine(engine: Path, key: str, parts: dict[str, Any]) -> None:
    """Write the cache manifest of ``engine`` (its sha256, the key and what the key hashes)."""
    write_manifest(engine, CACHE_KIND, config={"key": key, "parts": parts})


def cached_engine_is_sound(engine: Path, key: str) -> bool:
    """True when ``engine`` exists, is a regular file, its manifest records ``key`` and its bytes
    hash to the recorded sha256. Anything else (no manifest, another key, swapped or truncated
    bytes, a symbolic link) means: build it again."""
    try:
        if engine.is_symlink() or not engine.is_file():
            return False
        record = _manifest(engine)
        if not isinstance(record, dict) or record.get("kind") != CACHE_KIND:
            return False
        config = record.get("config")
        if not isinstance(config, dict) or config.get("key") != key:
            return False
        return isinstance(record.get("sha256"), str) and sha256_file(engine) == record["sha256"]
    except (OSError, ValueError):
        return False


def verify_engine_bytes(engine: Path, data: bytes) -> None:
    """Refuse ``data`` (the bytes read from ``engine``) when the engine's manifest records another sha256.

    An engine without a manifest (built by trtexec, named by the person on the command line)
    is theirs to load; one with a manifest must match it, since edgekd wrote that record.

    Raises:
        InputFileError: the bytes differ from the recorded sha256, or the manifest is unreadable.
    """
    try:
        record = _manifest(engine)
    except (OSError, ValueError):
        raise InputFileError(
            f"engine {engine}: its manifest {manifest_path(engine)} is unreadable",
            hint="rebuild the engine with edgekd export --tensorrt",
        ) from None
    if record is None:
        return
    recorded = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(recorded, str):
        raise InputFileError(
            f"engine {engine}: its manifest {manifest_path(engine)} records no sha256",
            hint="rebuild the engine with edgekd export --tensorrt",
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise InputFileError(
            f"engine {engine} is not the engine its manifest records (sha256 {actual[:12]}..., "
            f"recorded {recorded[:12]}...); it was changed or swapped and is not loaded",
            hint="rebuild the engine with edgekd export --tensorrt",
        )
