"""Shared fixtures: everything is generated in-process, nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Two cores on CI: keep each test's thread pools small and predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# "auto" DataLoader workers read in the test process: forking workers in a process that has
# run NNCF/OpenVINO and then spawning subprocesses crashed pytest (SIGSEGV). Tests of worker
# behaviour pass an explicit count and run it in a fresh interpreter.
os.environ.setdefault("EDGEKD_NUM_WORKERS", "0")


@pytest.fixture(autouse=True)
def _no_model_hub(monkeypatch, tmp_path_factory):
    """No test asks a model hub for weights (``pretrained: true/auto`` in recipes such as kd-oct):
    HF_HUB_OFFLINE, and empty weight caches, so weights cached on a developer's machine do not
    change what a test builds."""
    empty = tmp_path_factory.getbasetemp() / "empty-weight-caches"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(empty / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(empty / "torch"))
