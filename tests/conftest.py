"""Shared fixtures: everything is generated in-process, nothing is downloaded."""

from __future__ import annotations

import os

# Two cores on CI: keep each test's thread pools small and predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# "auto" DataLoader workers read in the test process: forking workers in a process that has
# run NNCF/OpenVINO and then spawning subprocesses crashed pytest (SIGSEGV). Tests of worker
# behaviour pass an explicit count and run it in a fresh interpreter.
os.environ.setdefault("EDGEKD_NUM_WORKERS", "0")
