"""Benchmarks: one latency loop and one accuracy evaluator for every backend, the
bench.json document (schema), and its renderings (terminal table, Markdown, HTML).

Modules: ``latency``, ``accuracy``, ``environment``, ``schema``, ``runner``, ``table``,
``html_report``. Import them directly; this package imports nothing heavy.
"""
