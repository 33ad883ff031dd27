"""Atomic artifact writes and the manifest sidecar every stage leaves.

Each artifact ``model.onnx`` gets ``model.onnx.json``: kind, sha256, size, the
parents' sha256, the resolved config, library versions and metrics. Writes go to
a temporary file in the same folder and are renamed into place, so a killed run
never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekd.errors import InputFileError

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
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp makes the file private (0600); artifacts get the usual umask mode.
            tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


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
