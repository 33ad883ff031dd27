"""deploy.json, the winner file with its manifest, and the terminal / Markdown tables.

The document format is described in docs/deploy.md (``schema: edgekd.deploy/1``). Every
file goes through :mod:`edgekd.artifacts`' atomic writes: a killed run leaves either the
previous file or the new one, never half of one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_path, atomic_write_json, manifest_path, write_manifest
from edgekd.deploy.cache import files_sha256

DEPLOY_SCHEMA = "edgekd.deploy/1"
DEPLOYED_STEM = "deployed"
_VERDICT_STYLE = {"chosen": "bold green", "kept": "", "rejected": "yellow", "skipped": "dim", "failed": "red"}


def figures_of(entry: dict[str, Any], requested_precision: str) -> dict[str, Any]:
    """The figures the rule and the tables read, from a bench entry that ran."""
    lat = entry["latency_ms"]
    return {
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "std_ms": lat["std"],
        "runs": lat["runs"],
        "noisy": entry.get("noisy"),
        "accuracy": entry["accuracy"]["overall"],
        "requested_precision": requested_precision,
        "executed_precision": entry.get("executed_precision"),
        "size_bytes": (entry.get("artifact") or {}).get("size_bytes"),
        "load_ms": entry.get("load_ms"),
    }


def write_winner(out_dir: Path, record: dict[str, Any], doc: dict[str, Any], student: Path) -> dict[str, Any]:
    """Copy the chosen artifact to ``out_dir/deployed.<ext>`` (an IR's .bin first) with a
    manifest naming the choice and every candidate's figures; returns the ``deployed`` record."""
    source = [Path(p) for p in record["artifact"]["files"]]
    main = source[0]
    targets = [out_dir / f"{DEPLOYED_STEM}{f.suffix.lower()}" for f in source]
    for src, dst in reversed(list(zip(source, targets, strict=True))):  # .bin before .xml
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    deployed = {
        "file": targets[0].name,
        "files": [t.name for t in targets],
        "sha256": files_sha256(targets),
        "candidate": record["id"],
        "session_options": record["session_options"],
    }
    write_manifest(
        targets[0],
        f"deployed-{record['backend']}",
        parents=[main, student],
        config={"candidate": record["id"], "session_options": record["session_options"], "rule": doc["rule"]},
        metrics=record["figures"],
        extra={
            "deploy": {"document": "deploy.json", "choice": doc["choice"], "candidates": summary_rows(doc)}
        },
    )
    return deployed


def remove_stale_winners(out_dir: Path, keep: list[str]) -> None:
    """Remove ``deployed.*`` files (and manifests) an earlier run chose but this one did not."""
    keep_all = {*keep, *(manifest_path(out_dir / k).name for k in keep)}
    for path in out_dir.glob(f"{DEPLOYED_STEM}.*"):
        if path.name not in keep_all and path.is_file():
            path.unlink()


def write_document(doc: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / "deploy.json"
    atomic_write_json(path, doc)
    return path


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One compact row per candidate: id, verdict, why, p50, accuracy, drop, size."""
    rows = []
    for c in doc["candidates"]:
        fig = c.get("figures") or {}
        rows.append(
            {
                "id": c["id"],
                "verdict": c["verdict"],
                "why": c["why"],
                "p50_ms": fig.get("p50_ms"),
                "accuracy": fig.get("accuracy"),
                "accuracy_drop": c.get("accuracy_drop"),
                "size_bytes": fig.get("size_bytes"),
                "executed_precision": fig.get("executed_precision"),
            }
        )
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _pt(value: float | None) -> str:
    return "-" if value is None else f"{-value * 100 + 0.0:+.2f}"  # + 0.0: no "-0.00"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if value < 1 << 20 else f"{value / (1 << 20):.2f} MiB"


def _cache_cell(c: dict[str, Any]) -> str:
    build = (c.get("build") or {}).get("cached")
    measure = (c.get("measurement") or {}).get("cached")
    if build is None and measure is None:
        return "-"
    marks = {True: "hit", False: "new", None: "-"}
    return f"{marks[build]}/{marks[measure]}"


def table_cells(c: dict[str, Any]) -> list[str]:
    fig = c.get("figures") or {}
    return [
        c["id"],
        fig.get("executed_precision") or "-",
        _ms(fig.get("p50_ms")),
        _pct(fig.get("accuracy")),
        _pt(c.get("accuracy_drop")),
        _size(fig.get("size_bytes")),
        _cache_cell(c),
        c["verdict"],
        c["why"],
    ]


HEADERS = ["candidate", "executes", "p50 ms", "accuracy", "Δ pt", "size", "cache b/m", "verdict", "why"]


def caption(doc: dict[str, Any]) -> str:
    rule, choice = doc["rule"], doc["choice"]
    budget = rule["max_accuracy_drop"]
    budget_text = "none" if budget is None else f"{budget * 100:.2f} pt ({rule['budget_source']})"
    ref_acc = choice.get("reference_accuracy")
    reference = "none ran" if ref_acc is None else f"{choice['reference']} ({ref_acc:.2%})"
    return (
        f"target {doc['target']['name']} on {doc['host']}; reference {reference}; "
        f"accuracy budget {budget_text}; chosen {choice['chosen'] or 'none'}"
    )


def deploy_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"edgekd deploy: {doc['student']['file']}"), caption=Text(caption(doc)))
    for header in HEADERS:
        numeric = header in ("p50 ms", "accuracy", "Δ pt", "size")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=header != "why")
    for c in doc["candidates"]:
        # Text, not markup: a reason such as "pip install 'edgekd[tensorrt]'" must print as is.
        table.add_row(
            *(Text(cell) for cell in table_cells(c)), style=_VERDICT_STYLE.get(c["verdict"] or "", "")
        )
    return table


def print_deploy(doc: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console

    (console or Console()).print(deploy_table(doc))


def deploy_markdown(doc: dict[str, Any]) -> str:
    """The candidate table as Markdown (for docs/benchmarks.md and CI summaries)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for c in doc["candidates"]:
        cells = [str(x).replace("|", "\\|") for x in table_cells(c)]
        if c["verdict"] == "chosen":
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + caption(doc) + "\n"
