from __future__ import annotations

import re
from pathlib import Path

from edgekd.bench.html_report import pareto_front, write_html_report
from tests.bench.sample_doc import sample_doc

HOSTILE = "<script>alert('x')</script> $a$ & --> "


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    doc = sample_doc(name=HOSTILE)
    doc["entries"][1]["id"] = f"{HOSTILE}/fp32"  # entry ids label the plots too
    doc["dataset"]["class_names"][0] = "<b>BPSK</b>"
    path = tmp_path / "report.html"
    write_html_report(doc, path)
    page = path.read_text(encoding="utf-8")

    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 3  # scatter, SNR curves, per-class bars
    assert "<script" not in page.lower()  # escaped everywhere, in HTML and in SVG text
    assert "&lt;script&gt;" in page
    assert "<b>BPSK" not in page
    # No external resources: the only URLs are XML namespace names inside the SVGs.
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert not re.search(r"\s(src|href)=\"https?:", page)
    for text in ("Test CPU", "Pareto front", "tensorrt is not installed", "Accuracy against SNR"):
        assert text in page
    assert not list(tmp_path.glob("*.tmp"))


def test_report_without_snr_or_ok_entries(tmp_path: Path) -> None:
    doc = sample_doc()
    for entry in doc["entries"][:3]:
        entry["accuracy"]["per_snr"] = {}
    doc["dataset"]["snrs"] = []
    write_html_report(doc, tmp_path / "a.html")
    page = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 2 and "no SNR labels" in page

    doc["entries"] = doc["entries"][3:]  # only skipped/failed entries
    write_html_report(doc, tmp_path / "b.html")
    assert (tmp_path / "b.html").read_text(encoding="utf-8").count("<svg") == 0


def test_pareto_front() -> None:
    points = [(1.0, 80.0), (2.0, 90.0), (3.0, 85.0), (0.5, 70.0), (2.0, 88.0), (4.0, 95.0)]
    assert pareto_front(points) == [(0.5, 70.0), (1.0, 80.0), (2.0, 90.0), (4.0, 95.0)]
