"""The bench document as a terminal table (rich) and as a Markdown table."""

from __future__ import annotations

import html
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

COLUMNS = (
    "entry",
    "executes",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "accuracy %",
    "agreement %",
    "size KiB",
    "params",
    "% peak",
    "status",
)
NUMERIC_COLUMNS = frozenset(COLUMNS[2:10])
DASH = "—"


def _num(value: float | None, fmt: str) -> str:
    return DASH if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.2f}"


def _count(value: int | None) -> str:
    if value is None:
        return DASH
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return str(value)


def row_cells(entry: dict[str, Any]) -> list[str]:
    """The table cells of one entry, as plain strings (shared by every renderer).

    "% peak" is the entry's achieved GFLOP/s (2 x MACs x batch / p50) as a share of the
    machine's GEMM peak (memory, throughput and load times are in the HTML report's details).
    A noisy latency gets a trailing ``*``; a skipped or failed entry shows its reason
    in the status cell and dashes elsewhere.
    """
    lat = entry.get("latency_ms") or {}
    acc = entry.get("accuracy") or {}
    size = (entry.get("artifact") or {}).get("size_bytes")
    mark = "*" if entry.get("noisy") else ""
    status = (
        entry["status"] if entry["status"] == "ok" else f"{entry['status']}: {entry.get('reason') or '?'}"
    )
    return [
        str(entry["id"]),
        str(entry.get("executed_precision") or DASH),
        _num(lat.get("p50"), ".3f") + (mark if lat else ""),
        _num(lat.get("p90"), ".3f"),
        _num(lat.get("p99"), ".3f"),
        _pct(acc.get("overall")),
        _pct(entry.get("agreement_with_reference")),
        _num(None if size is None else size / 1024, ".1f"),
        _count(entry.get("params")),
        _num(None if entry.get("fraction_of_peak") is None else 100 * entry["fraction_of_peak"], ".2f"),
        status,
    ]


def _caption(doc: dict[str, Any]) -> str:
    ds = doc.get("dataset", {})
    settings = doc.get("settings", {})
    threads = settings.get("threads")
    parts = [
        f"{ds.get('name', '?')}/{ds.get('split', '?')}, {ds.get('n', '?')} frames",
        f"batch {settings.get('batch_size', '?')}, threads {threads if threads is not None else 'default'}",
        f"agreement vs {doc.get('reference') or DASH}",
    ]
    roofline = doc.get("roofline")
    if roofline:
        parts.append(f"peak {roofline['peak_gflops']:.1f} GFLOP/s (float32 GEMM)")
    host = (doc.get("environment") or {}).get("host")
    if host:
        parts.append(f"on {host}")
    if any(e.get("noisy") for e in doc.get("entries", [])):
        parts.append("* noisy latency (cv > 0.15 or p99 > 3 x p50)")
    return "; ".join(parts)


def bench_table(doc: dict[str, Any]) -> Table:
    """A rich Table of every entry; columns as :data:`COLUMNS`.

    Reasons of skipped/failed entries are numbered footnotes in the caption, so the
    table stays readable in an 80-column CI log.
    """
    notes: list[str] = []
    table = Table(
        title=Text(f"edgekd bench: {doc.get('name', '')}", style="bold"),
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        caption_justify="left",
    )
    for col in COLUMNS:
        # Two-line headers ("p50 / ms") keep numeric columns narrow.
        table.add_column(
            col.replace(" ", "\n"),
            justify="right" if col in NUMERIC_COLUMNS else "left",
            overflow="fold",
            no_wrap=col == "entry",
        )
    for entry in doc.get("entries", []):
        cells = row_cells(entry)
        status = entry["status"]
        if status != "ok":
            notes.append(f"[{len(notes) + 1}] {entry['id']}: {entry.get('reason') or '?'}")
            cells[-1] = f"{status} [{len(notes)}]"
        style = {"ok": "green", "skipped": "yellow", "failed": "red"}.get(status, "")
        # Text objects: a model name such as "[bold]" must not be read as rich markup.
        table.add_row(*(Text(c) for c in cells[:-1]), Text(cells[-1], style=style))
    table.caption = Text("\n".join([_caption(doc), *notes]))
    return table


def print_bench(doc: dict[str, Any], console: Console | None = None) -> None:
    """Print :func:`bench_table` to ``console`` (stdout by default)."""
    (console or Console()).print(bench_table(doc))


def _md_cell(text: str) -> str:
    # Escape <, > and & too: Markdown renderers pass raw HTML through.
    text = html.escape(text, quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def bench_markdown(doc: dict[str, Any]) -> str:
    """The same table as GitHub-flavoured Markdown, with the caption below it."""
    align = ["---:" if col in NUMERIC_COLUMNS else ":---" for col in COLUMNS]
    lines = [
        f"### edgekd bench: {_md_cell(str(doc.get('name', '')))}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for entry in doc.get("entries", []):
        lines.append("| " + " | ".join(_md_cell(c) for c in row_cells(entry)) + " |")
    lines += ["", _md_cell(_caption(doc)), ""]
    return "\n".join(lines)
