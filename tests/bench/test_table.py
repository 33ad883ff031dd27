from __future__ import annotations

from rich.console import Console

from edgekd.bench.table import COLUMNS, bench_markdown, bench_table, print_bench
from tests.bench.sample_doc import sample_doc


def _render(doc: dict, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None)
    print_bench(doc, console)
    return console.export_text()


def test_table_rows_and_reasons() -> None:
    doc = sample_doc()
    doc["entries"][0]["noisy"] = True
    text = _render(doc)
    for entry_id in ("torch/fp32", "onnxruntime/fp32", "onnxruntime/int8", "tensorrt/int8", "openvino/bf16"):
        assert entry_id in text
    assert "0.500*" in text and "noisy" in text  # a noisy p50 is marked and the mark explained
    assert "90.00" in text and "97.00" in text and "39.1" in text
    assert "skipped [1]" in text and "tensorrt is not installed: pip install tensorrt" in text
    assert "failed [2]" in text
    assert bench_table(doc).row_count == 5
    assert len(bench_table(doc).columns) == len(COLUMNS)


def test_markup_in_names_is_literal() -> None:
    text = _render(sample_doc(name="[bold]x[/bold]"))
    assert "[bold]x[/bold]" in text


def test_narrow_console_still_shows_every_entry() -> None:
    text = _render(sample_doc(), width=80)
    assert "onnxruntime/int8" in text and "pip install tensorrt" in text


def test_markdown() -> None:
    doc = sample_doc(name="a|b <i>")
    md = bench_markdown(doc)
    lines = md.splitlines()
    assert lines[0] == "### edgekd bench: a\\|b &lt;i&gt;"
    header = lines[2]
    assert header.startswith("| entry | executes | p50 ms") and header.count("|") == len(COLUMNS) + 1
    rows = [ln for ln in lines if ln.startswith("| ") and "/" in ln.split("|")[1]]
    assert len(rows) == 5
    assert all(row.count("|") - row.count("\\|") == len(COLUMNS) + 1 for row in rows)
    assert "skipped: tensorrt is not installed" in md
