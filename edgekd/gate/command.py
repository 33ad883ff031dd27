"""``edgekd gate`` behind its options: load the result, the target and the baseline, judge,
print and write the verdict, update the baseline; the exit code is the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gate_command(
    result: Path,
    target: str,
    *,
    output: Any,
    baseline: Path | None = None,
    update_baseline: bool = False,
    junit: Path | None = None,
    markdown: Path | None = None,
    json_path: Path | None = None,
) -> int:
    """Judge ``result`` (a bench.json, or a model file for a static gate) against ``target``'s
    budgets and the optional ``baseline``. The table and, with ``output.as_json``, the verdict
    as JSON go through ``output`` (:class:`edgekd.cli.common.Output`); ``json_path``,
    ``junit`` and ``markdown`` are files to write. Returns 0 pass, 1 a budget broken.

    Raises:
        EdgeKDError: a missing or malformed file, or --update-baseline without --baseline (exit 2).
    """
    from edgekd.artifacts import atomic_write_json, require_file
    from edgekd.bench.schema import load_bench
    from edgekd.errors import ConfigError
    from edgekd.gate import gate_table, write_outputs
    from edgekd.gate.evaluate import check_result_fits
    from edgekd.gate.static import static_result
    from edgekd.targets import load_target

    profile = load_target(target)
    require_file(result, "result")
    doc = load_bench(result) if result.suffix.lower() == ".json" else static_result(result, profile)
    check_result_fits(doc, profile, str(result))
    if update_baseline and baseline is None:
        raise ConfigError(
            "--update-baseline needs --baseline PATH", hint="name the file the baseline lives in"
        )
    base_doc = _baseline(baseline, profile, first_run=update_baseline)
    verdict = _judge(doc, profile, result, baseline, base_doc)
    output.console().print(gate_table(verdict))
    write_outputs(verdict, junit=junit, markdown=markdown, json_path=json_path)
    if output.as_json:
        output.result(verdict.to_dict(), [])
    if update_baseline:
        if doc.get("static"):
            raise ConfigError("a static result cannot become a baseline", hint="gate a bench.json instead")
        atomic_write_json(baseline, doc)
        output.log(f"baseline updated: {baseline}")
    return verdict.exit_code


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


def _judge(doc: dict[str, Any], profile: Any, result: Path, baseline: Path | None, base_doc: Any) -> Any:
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
