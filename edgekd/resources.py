"""Find built-in target profiles, calibration recipes and pipeline recipes.

A name (``x86-cpu-onnxruntime-int8``) or a path may be given. Paths win; names
are looked up in the wheel's ``edgekd/_builtin/<kind>/`` copy, then in the
source checkout's top-level ``<kind>/`` folder (editable installs), and for
recipes in ``edgekd/recipes/``.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import ConfigError
from edgekd.registry import suggestion

_PACKAGE = Path(__file__).resolve().parent
KINDS = ("targets", "calibration", "recipes")


def search_dirs(kind: str) -> list[Path]:
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}")
    if kind == "recipes":
        return [_PACKAGE / "recipes"]
    return [d for d in (_PACKAGE / "_builtin" / kind, _PACKAGE.parent / kind) if d.is_dir()]


def builtin_names(kind: str) -> list[str]:
    names: set[str] = set()
    for folder in search_dirs(kind):
        names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def resolve(kind: str, name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """Return the YAML file for ``name_or_path``; ConfigError listing the built-ins if none."""
    text = str(name_or_path)
    candidates = [Path(text)]
    if relative_to is not None and not Path(text).is_absolute():
        candidates.append(relative_to / text)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    stem = Path(text).name.removesuffix(".yaml").removesuffix(".yml")
    for folder in search_dirs(kind):
        path = folder / f"{stem}.yaml"
        if path.is_file():
            return path
    singular = {"targets": "target profile", "calibration": "calibration recipe", "recipes": "recipe"}[kind]
    raise ConfigError(
        f"{singular} {text!r} is neither a file nor a built-in name",
        hint=suggestion(stem, builtin_names(kind), f"built-in {singular}s"),
    )
