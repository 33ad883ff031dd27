"""search.json's Pareto flags, the HTML report and the --grid parser."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import ConfigError
from edgekd.search.command import parse_grid
from edgekd.search.report import mark_pareto, render_html, table_rows, write_search


def _cand(key, p50, short, *, final=None, within=True):
    return {
        "key": key, "label": f"cand {key}", "model": "edgekd:mobilenet1d", "kwargs": {}, "status": "ok",
        "params": 1000, "macs": 20000, "latency_ms": None if p50 is None else {"p50": p50, "p90": p50 * 1.1},
        "precision": "int8", "within_budget": within, "proxy": {"score": -1.0}, "short_accuracy": short,
        "final_accuracy": final,
    }  # fmt: skip


def _doc(cands):
    return {
        "target": "x86-cpu-onnxruntime-int8", "runtime": "onnxruntime", "precision": "int8", "host": "local",
        "budget_ms": 0.05, "budget_percentile": "p50", "family": "mobilenet1d", "proxy_kendall_tau": 0.4,
        "winner": {"key": "b"}, "candidates": cands, "notes": ["proxy: <tau> & friends"],
    }  # fmt: skip


def test_pareto_marks_only_undominated_trained_candidates():
    cands = [
        _cand("a", 0.01, 0.40),
        _cand("b", 0.02, 0.50),
        _cand("c", 0.03, 0.45),  # slower and worse than b: dominated
        _cand("d", 0.04, 0.55),
        _cand("e", 0.005, None),  # not trained: never on the front
        _cand("f", None, None, within=False),
    ]
    mark_pareto(cands)
    assert {c["key"]: c["pareto"] for c in cands} == {
        "a": True, "b": True, "c": False, "d": True, "e": False, "f": False
    }  # fmt: skip


def test_report_escapes_and_plots(tmp_path):
    cands = [_cand("a", 0.01, 0.40), _cand("b", 0.02, 0.50, final=0.6), _cand("<x>", 0.06, 0.3, within=False)]
    mark_pareto(cands)
    doc = _doc(cands)
    page = render_html(doc)
    assert "<svg" in page and "&lt;tau&gt; &amp; friends" in page and "cand &lt;x&gt;" in page
    rows = table_rows(doc)
    assert rows[1][-1] == "winner" and rows[1][8] == "60.00" and rows[2][-1] == "ok"
    path = write_search(doc, tmp_path)
    assert json.loads(path.read_text())["winner"] == {"key": "b"}
    assert (tmp_path / "search.html").read_text() == page


def test_report_without_trained_candidates_says_so():
    page = render_html(_doc([_cand("a", 0.01, None)]))
    assert "no candidate was trained" in page and "<svg" not in page


def test_parse_grid_reads_values_as_data():
    assert parse_grid(["width_mult=0.5,0.75", "stem_stride=1", "blocks=[1,1,1];[2,2,2]"]) == {
        "width_mult": [0.5, 0.75],
        "stem_stride": [1],
        "blocks": [[1, 1, 1], [2, 2, 2]],
    }
    assert parse_grid(["variant=mobilenetv3_small_050,mobilenetv3_small_100"]) == {
        "variant": ["mobilenetv3_small_050", "mobilenetv3_small_100"]
    }


@pytest.mark.parametrize("bad", ["width_mult", "=1,2", "width_mult=", "blocks=[1,2"])
def test_parse_grid_refuses_malformed_items(bad):
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid([bad])
