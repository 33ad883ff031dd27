"""``edgekd.gate``: a result against a target's budgets (and a baseline); the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.api.results import BenchReport, GateVerdict, verdict_of


def gate(
    result: Any,
    *,
    target: str | Path,
    baseline: str | Path | None = None,
    update_baseline: bool = False,
    junit: str | Path | None = None,
    markdown: str | Path | None = None,
    json_path: str | Path | None = None,
    log: Any = None,
) -> GateVerdict:
    """Judge ``result`` against ``target``'s budgets (and a ``baseline`` bench).

    Args:
        result: a :class:`BenchReport`, a bench document, a bench.json, or a model file
            (``.onnx``, ``.pt``, ``.xml``, TensorRT engine) for a static gate of size,
            parameters and MACs that needs no benchmark run.
        target: the target profile (name or YAML) whose budgets apply.
        baseline: a previous bench.json to compare accuracy and latency with;
            ``update_baseline`` writes ``result`` there after judging (created on a first run).
        junit, markdown, json_path: files to write the verdict to (JUnit XML, Markdown, JSON).

    Returns:
        a :class:`GateVerdict`: ``passed``, ``checks`` (metric, current, limit, status), ``exit_code``.

    Raises:
        EdgeKDError: a missing or malformed file, an entry the target needs that the result
            lacks, or ``update_baseline`` without ``baseline``.
    """
    from edgekd.api.distill_api import default_log
    from edgekd.artifacts import atomic_write_json
    from edgekd.errors import ConfigError
    from edgekd.gate import write_outputs
    from edgekd.gate.evaluate import check_result_fits
    from edgekd.targets import load_target

    profile = load_target(str(target))
    doc, label = _result_document(result, profile)
    check_result_fits(doc, profile, label)
    if update_baseline and baseline is None:
        raise ConfigError(
            "--update-baseline needs --baseline PATH", hint="name the file the baseline lives in"
        )
    if update_baseline and doc.get("static"):
        raise ConfigError("a static result cannot become a baseline", hint="gate a bench.json instead")
    baseline = Path(baseline) if baseline is not None else None
    base_doc = _baseline(baseline, profile, first_run=update_baseline)
    verdict = _judge(doc, profile, label, baseline, base_doc)
    write_outputs(
        verdict,
        junit=_path(junit),
        markdown=_path(markdown),
        json_path=_path(json_path),
    )
    if update_baseline:
        atomic_write_json(baseline, doc)
        default_log(log)(f"baseline updated: {baseline}")
    return verdict_of(verdict)


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _result_document(result: Any, profile: Any) -> tuple[dict[str, Any], str]:
    """The bench document to judge and how errors name it."""
    from edgekd.artifacts import require_file
    from edgekd.bench.schema import load_bench
    from edgekd.gate.static import static_result

    if isinstance(result, BenchReport):
        return result.document, str(result.path or "the bench report")
    if isinstance(result, dict):
        return result, "the bench document"
    path = require_file(Path(result), "result")
    doc = load_bench(path) if path.suffix.lower() == ".json" else static_result(path, profile)
    return doc, str(path)


def _baseline(path: Path | None, profile: Any, *, first_run: bool) -> dict[str, Any] | None:
    """The baseline bench document, None without one (or on a first --update-baseline run,
    which creates it)."""
    from edgekd.artifacts import require_file
    from edgekd.bench.schema import load_bench
    from edgekd.gate.evaluate import check_result_fits

    if path is None:
        return None
    if path.exists():
        doc = load_bench(path)
        check_result_fits(doc, profile, str(path))
        return doc
    if not first_run:
        require_file(path, "baseline")
    return None


def _judge(doc: dict[str, Any], profile: Any, result: str, baseline: Path | None, base_doc: Any) -> Any:
    """The verdict; an error (a missing entry or anchor) names the files judged."""
    from edgekd.errors import EdgeKDError
    from edgekd.gate import evaluate_gate

    try:
        name = str(baseline) if base_doc is not None else None
        return evaluate_gate(doc, profile, baseline=base_doc, baseline_name=name)
    except EdgeKDError as exc:
        files = [str(result)] + ([str(baseline)] if base_doc is not None else [])
        if not any(f in exc.message for f in files):
            exc.message = f"{' with baseline '.join(files)}: {exc.message}"
        raise
