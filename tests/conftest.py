"""Shared fixtures: everything is generated in-process, nothing is downloaded."""

from __future__ import annotations

import os

# Two cores on CI: keep each test's thread pools small and predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")
