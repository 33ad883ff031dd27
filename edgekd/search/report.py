"""What a search writes: ``search.json`` (schema ``edgekd.search/1``), a self-contained
``search.html`` with the accuracy-against-measured-latency plot, and the terminal table.

The plot's accuracy is each candidate's first-round short-training accuracy: every trained
candidate has it, from the same number of epochs, so the points compare like with like. The
winner's full-distillation accuracy is drawn as its own marker.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_text
from edgekd.bench.html_report import figure_svg, new_figure, pareto_front

SCHEMA = "edgekd.search/1"


def mark_pareto(candidates: list[dict[str, Any]]) -> None:
    """Set ``pareto`` on every candidate record: True when no other trained candidate is both
    faster (p50) and more accurate (short accuracy); False otherwise, and for the untrained."""
    points = {
        c["key"]: (c["latency_ms"]["p50"], c["short_accuracy"])
        for c in candidates
        if c.get("latency_ms") and c.get("short_accuracy") is not None
    }
    front = set(pareto_front(list(points.values())))
    for c in candidates:
        c["pareto"] = c["key"] in points and points[c["key"]] in front


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per candidate, in the document's order (fastest first)."""
    winner = (doc.get("winner") or {}).get("key")
    rows = []
    for c in doc["candidates"]:
        lat = c.get("latency_ms") or {}
        proxy = c.get("proxy") or {}
        state = "winner" if c["key"] == winner else ("within" if c.get("within_budget") else c["status"])
        rows.append(
            [
                c["label"],
                f"{c['params']:,}" if c.get("params") is not None else "-",
                f"{c['macs']:,}" if c.get("macs") is not None else "-",
                _ms(lat.get("p50")),
                _ms(lat.get("p90")),
                c.get("precision") or "-",
                "-" if not proxy else f"{proxy['score']:.3f}",
                _pct(c.get("short_accuracy")),
                _pct(c.get("final_accuracy")),
                "yes" if c.get("pareto") else "",
                state,
            ]
        )
    return rows


COLUMNS = [
    "candidate", "params", "MACs", "p50 ms", "p90 ms", "executes", "proxy",
    "short acc %", "final acc %", "Pareto", "state",
]  # fmt: skip


def caption(doc: dict[str, Any]) -> str:
    budget = doc.get("budget_ms")
    where = f"{doc['target']} ({doc['runtime']}/{doc['precision']}, {doc['host']})"
    limit = "no latency budget" if budget is None else f"budget {budget:g} ms {doc['budget_percentile']}"
    tau = doc.get("proxy_kendall_tau")
    tau_text = "n/a" if tau is None else f"{tau:.2f}"
    return (
        f"search of {doc['family']} on {where}: {len(doc['candidates'])} candidates, {limit}; "
        f"proxy Kendall tau vs short training {tau_text}"
    )


def print_search(doc: dict[str, Any], console: Any = None) -> None:
    """The candidates table and the winner on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=caption(doc), title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("candidate", "executes", "state") else "right")
    for row in table_rows(doc):
        table.add_row(*row)
    console.print(table)
    for line in doc.get("notes", []):
        console.print(line)


def latency_accuracy_svg(doc: dict[str, Any]) -> str | None:
    """Short accuracy (%) against measured p50 (ms) of the trained candidates, with the Pareto
    front, the budget line and the winner's full-distillation accuracy."""
    trained = [c for c in doc["candidates"] if c.get("latency_ms") and c.get("short_accuracy") is not None]
    if not trained:
        return None
    fig, ax = new_figure(7.5, 4.8)
    xs = [c["latency_ms"]["p50"] for c in trained]
    ys = [100 * c["short_accuracy"] for c in trained]
    ax.scatter(xs, ys, s=36, alpha=0.7, edgecolors="black", linewidths=0.5, label="first-round accuracy")
    front = pareto_front(list(zip(xs, ys, strict=True)))
    if len(front) > 1:
        fx, fy = zip(*front, strict=True)
        ax.plot(fx, fy, drawstyle="steps-post", color="tab:red", linewidth=1.2, label="Pareto front")
    if doc.get("budget_ms") is not None:
        ax.axvline(doc["budget_ms"], color="tab:gray", linestyle="--", linewidth=1.0, label="latency budget")
    winner = next((c for c in trained if c["key"] == (doc.get("winner") or {}).get("key")), None)
    if winner is not None and winner.get("final_accuracy") is not None:
        ax.scatter(
            [winner["latency_ms"]["p50"]], [100 * winner["final_accuracy"]], marker="*", s=180,
            color="tab:green", edgecolors="black", label="winner, full distillation",
        )  # fmt: skip
    ax.set_xlabel(f"measured p50 latency (ms) on {doc['target']}")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure_svg(fig, "edgekd-search")


def render_html(doc: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in table_rows(doc)
    )
    svg = latency_accuracy_svg(doc)
    figure = "<p><em>no candidate was trained</em></p>" if svg is None else f"<figure>{svg}</figure>"
    notes = "".join(f"<p>{e(line)}</p>" for line in doc.get("notes", []))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>edgekd search</title>'
        "<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
        "svg{max-width:100%;height:auto}</style></head><body>\n"
        f"<h1>edgekd search</h1><p>{e(caption(doc))}</p>{notes}{figure}"
        f"<table><tr>{head}</tr>{body}</table>\n</body></html>\n"
    )


def write_search(doc: dict[str, Any], out_dir: Path) -> Path:
    """Write ``search.json`` and ``search.html`` into ``out_dir``; the JSON's path."""
    import json

    path = out_dir / "search.json"
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    atomic_write_text(out_dir / "search.html", render_html(doc))
    return path


__all__ = ["SCHEMA", "mark_pareto", "print_search", "render_html", "table_rows", "write_search"]
