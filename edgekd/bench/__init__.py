"""Benchmarks: one latency loop and one accuracy evaluator for every backend, the
bench.json document (schema), and its renderings (terminal table, Markdown, HTML).

Modules: ``latency``, ``accuracy``, ``environment``, ``schema``, ``entries`` (one entry from
empty to measured), ``executor`` (where candidates run: here, or an executor from
``edgekd.remote``), ``runner`` (``run_bench``), ``table``, ``html_report``. Import them
directly; this package imports nothing heavy, and nothing from ``edgekd.remote``.
"""
