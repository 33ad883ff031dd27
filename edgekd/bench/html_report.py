"""A self-contained HTML bench report: no external URLs, no JavaScript.

Plots are drawn with matplotlib (imported lazily, Agg canvas, no pyplot state) and
embedded as inline SVG. Every string from the bench document is HTML-escaped, and
``$`` is escaped for matplotlib so a model name is never read as mathtext.
"""

from __future__ import annotations

import html
import io
import os
from typing import Any

from edgekd.artifacts import atomic_write_text
from edgekd.bench.table import COLUMNS, NUMERIC_COLUMNS, row_cells

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.skipped td{color:#8a6d00}tr.failed td{color:#b00020}
figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}svg{max-width:100%;height:auto}
.kv td:first-child{font-weight:600}
"""


# No creator/date/RDF block: keeps the page free of URLs and byte-identical across runs.
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _label(text: str) -> str:
    """A string safe for matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def _ok(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e
        for e in doc.get("entries", [])
        if e.get("status") == "ok" and e.get("latency_ms") and e.get("accuracy")
    ]


def figure_svg(fig: Any, salt: str) -> str:
    import matplotlib

    buf = io.StringIO()
    # Text stays text (smaller, searchable; matplotlib XML-escapes it); a fixed salt makes ids
    # deterministic and distinct between the figures of one page.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata=_NO_METADATA)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def new_figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # Agg canvas, no pyplot: no global state, safe off the main thread
    return fig, fig.add_subplot()


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower latency x, higher accuracy y), by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def latency_accuracy_svg(doc: dict[str, Any]) -> str | None:
    """Scatter: x p50 ms, y accuracy %, marker area proportional to artifact size."""
    entries = _ok(doc)
    if not entries:
        return None
    fig, ax = new_figure(7.5, 4.8)
    xs = [e["latency_ms"]["p50"] for e in entries]
    ys = [100 * e["accuracy"]["overall"] for e in entries]
    sizes = [(e.get("artifact") or {}).get("size_bytes") or 0 for e in entries]
    biggest = max(sizes) or 1
    areas = [max(12.0, 900.0 * s / biggest) for s in sizes]  # floor keeps tiny models visible
    ax.scatter(xs, ys, s=areas, alpha=0.55, edgecolors="black", linewidths=0.6)
    for x, y, e in zip(xs, ys, entries, strict=True):
        ax.annotate(_label(e["id"]), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    front = pareto_front(list(zip(xs, ys, strict=True)))
    if len(front) > 1:
        fx, fy = zip(*front, strict=True)
        ax.plot(fx, fy, drawstyle="steps-post", color="tab:red", linewidth=1.2, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.2, y=0.15)  # room for the point labels
    low, high = ax.get_ylim()
    if high - low < 4.0:
        # Hundredths of a point apart would otherwise fill the whole axis and look like a gulf.
        middle = (low + high) / 2
        ax.set_ylim(middle - 2.0, middle + 2.0)
    ax.set_xlabel("p50 latency (ms), lower is better")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    return figure_svg(fig, "edgekd-scatter")


def snr_svg(doc: dict[str, Any]) -> str | None:
    """Accuracy (%) against SNR (dB), one line per ok entry; None without SNR labels."""
    entries = [e for e in _ok(doc) if e["accuracy"].get("per_snr")]
    if not entries:
        return None
    fig, ax = new_figure(7.5, 4.2)
    for e in entries:
        pairs = sorted((int(k), 100 * v) for k, v in e["accuracy"]["per_snr"].items())
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o", markersize=3, label=_label(e["id"]))
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_svg(fig, "edgekd-snr")


def per_class_svg(doc: dict[str, Any]) -> str | None:
    """Grouped bars: accuracy (%) per class, one bar per ok entry."""
    entries = _ok(doc)
    classes = list(doc.get("dataset", {}).get("class_names", []))
    if not entries or not classes:
        return None
    fig, ax = new_figure(max(7.5, 0.45 * len(classes) * max(1, len(entries)) ** 0.5), 4.2)
    width = 0.8 / len(entries)
    for i, e in enumerate(entries):
        values = [100 * (e["accuracy"]["per_class"].get(c) or 0.0) for c in classes]
        positions = [j + (i - (len(entries) - 1) / 2) * width for j in range(len(classes))]
        ax.bar(positions, values, width=width, label=_label(e["id"]))
    ax.set_xticks(
        range(len(classes)),
        [_label(c) for c in classes],
        rotation=45 if len(classes) > 6 else 0,
        ha="right" if len(classes) > 6 else "center",
        fontsize=8,
    )
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return figure_svg(fig, "edgekd-classes")


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if value and all(isinstance(v, bool) for v in value.values()):  # ISA flags: list those present
            return [(prefix, " ".join(k for k, v in value.items() if v) or "none")]
        rows: list[tuple[str, str]] = []
        for key, sub in value.items():
            rows += _flatten(f"{prefix}.{key}" if prefix else str(key), sub)
        return rows
    return [(prefix, "n/a" if value is None else str(value))]


def _kv_table(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _results_table(doc: dict[str, Any]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in COLUMNS)
    body = []
    for entry in doc.get("entries", []):
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if col in NUMERIC_COLUMNS else f"<td>{_e(c)}</td>"
            for col, c in zip(COLUMNS, row_cells(entry), strict=True)
        )
        body.append(f'<tr class="{_e(entry.get("status", ""))}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


DETAILS = (
    ("entry", None),
    ("load ms", "load_ms"),
    ("first call ms", "first_inference_ms"),
    ("p95 ms", "p95"),
    ("cv", "cv"),
    ("throughput /s", "throughput_per_s"),
    ("peak memory MiB", "peak_memory_mib"),
    ("GFLOP/s", "achieved_gflops"),
    ("% of peak", "fraction_of_peak"),
)


def _details_table(doc: dict[str, Any]) -> str:
    """Per ok entry: session creation and first call apart, tail, spread, throughput, memory, roofline."""
    head = "".join(f"<th>{_e(label)}</th>" for label, _ in DETAILS)
    body = []
    for e in doc.get("entries", []):
        if e.get("status") != "ok":
            continue
        lat = e.get("latency_ms") or {}
        cells = [f"<td>{_e(e['id'])}</td>"]
        for _, key in DETAILS[1:]:
            value = lat.get(key, e.get(key))
            if key == "fraction_of_peak" and value is not None:
                value = 100 * value
            text = "—" if value is None else f"{value:.4g}"
            cells.append(f'<td class="num">{_e(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        return ""
    return f"<h3>Details</h3><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _roofline_html(doc: dict[str, Any]) -> str:
    """One paragraph: the machine's GEMM peak and each entry's achieved GFLOP/s."""
    roofline = doc.get("roofline")
    if not roofline:
        return "<p>Roofline: the machine's peak was not measured.</p>"
    parts = [
        f"{e['id']} {e['achieved_gflops']:.3g} GFLOP/s"
        for e in doc.get("entries", [])
        if e.get("achieved_gflops") is not None
    ]
    return (
        f"<p>Roofline: this machine's float32 GEMM peak is {roofline['peak_gflops']:.1f} GFLOP/s "
        f"(numpy, {roofline['gemm_n']}² matrices, median of {roofline['repeats']}); achieved "
        "(2 × MACs × batch / p50): " + _e("; ".join(parts) or "no entry has MACs") + ". "
        "“% peak” is the ratio: small models are bound by call overhead and memory, not arithmetic.</p>"
    )


def _figure_html(svg: str | None, caption: str, missing: str) -> str:
    if svg is None:
        return f"<p><em>{_e(missing)}</em></p>"
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def render_html(doc: dict[str, Any]) -> str:
    """The whole report page as a string."""
    ds = doc.get("dataset", {})
    title = f"edgekd bench: {doc.get('name', '')}"
    sections = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{_e(doc.get('created', ''))} · schema {_e(doc.get('schema', ''))} · dataset "
        f"{_e(ds.get('name', '?'))}/{_e(ds.get('split', '?'))}, {_e(ds.get('n', '?'))} frames · "
        f"agreement measured against {_e(doc.get('reference') or 'none')}</p>",
        "<h2>Results</h2>",
        _results_table(doc),
        "<p>Latency per call in ms at batch "
        f"{_e(doc.get('settings', {}).get('batch_size', '?'))}; * marks a noisy measurement "
        "(cv &gt; 0.15 or p99 &gt; 3 × p50). “executes” is the precision the runtime really ran.</p>",
        _details_table(doc),
        _roofline_html(doc),
        "<h2>Latency against accuracy</h2>",
        _figure_html(
            latency_accuracy_svg(doc),
            "marker area ∝ artifact size; red: Pareto front",
            "no entry ran, nothing to plot",
        ),
        "<h2>Accuracy against SNR</h2>",
        _figure_html(snr_svg(doc), "one line per entry", "the dataset has no SNR labels"),
        "<h2>Accuracy per class</h2>",
        _figure_html(per_class_svg(doc), "one bar per entry", "no entry ran, nothing to plot"),
        "<h2>Environment</h2>",
        _kv_table(_flatten("", doc.get("environment", {}))),
        "<h2>Settings</h2>",
        _kv_table(_flatten("", doc.get("settings", {}))),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_html_report(doc: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the report for a bench document to ``path`` atomically."""
    atomic_write_text(path, render_html(doc))
