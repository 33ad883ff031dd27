"""What the command line needs beside the API verbs: process-level plumbing, not work.

The thread policy (applied before torch is imported), version lines, the scope of trusted
modules, verbosity, the journal that undoes a failed
command's writes, JSON encoding and artifact summaries. Not exported from :mod:`edgekd`:
library callers get the same behaviour from the verbs themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.artifacts import json_default, library_versions, read_manifest, rollback_on_failure
from edgekd.config import dump_yaml
from edgekd.models.trust import trusted_code
from edgekd.runtime.threads import apply_thread_policy
from edgekd.verbosity import is_verbose, set_verbose


def artifact_summary(path: Path) -> dict[str, Any]:
    """What a command wrote, for ``--json``: path, kind, sha256 and metrics from its manifest."""
    manifest = read_manifest(path, required=False)
    return {
        "path": str(path),
        "kind": manifest.get("kind"),
        "sha256": manifest.get("sha256"),
        "metrics": manifest.get("metrics") or {},
    }


__all__ = [
    "apply_thread_policy",
    "artifact_summary",
    "dump_yaml",
    "is_verbose",
    "json_default",
    "library_versions",
    "rollback_on_failure",
    "set_verbose",
    "trusted_code",
]
