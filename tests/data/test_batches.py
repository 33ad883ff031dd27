"""How many DataLoader workers "auto" means, and the start method beside fork-unsafe runtimes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgekd.data import batches
from edgekd.data.dataset import ArrayDataset
from edgekd.data.mapstyle import MapDataset, MemoryDataset
from edgekd.errors import ConfigError


class _Lazy(MapDataset):
    def __init__(self) -> None:
        super().__init__(rows=np.arange(4), y=np.arange(4) % 2, class_names=["a", "b"], input_shape=(2, 8))

    def _read(self, rows):
        return np.zeros((len(rows), 2, 8), np.float32)


def _memory() -> MemoryDataset:
    return MemoryDataset(
        ArrayDataset(x=np.zeros((4, 2, 8), np.float32), y=np.arange(4) % 2, class_names=["a", "b"])
    )


def test_auto_workers_follow_the_cores_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(batches.WORKERS_ENV, raising=False)
    monkeypatch.setattr(batches, "available_cores", lambda: 3)
    assert batches.resolve_workers("auto", _Lazy()) == 3
    monkeypatch.setattr(batches, "available_cores", lambda: 64)
    assert batches.resolve_workers(None, _Lazy()) == batches.MAX_AUTO_WORKERS
    monkeypatch.setenv(batches.WORKERS_ENV, "1")
    assert batches.resolve_workers("auto", _Lazy()) == 1
    assert batches.resolve_workers(5, _Lazy()) == 5  # a count given outright wins


def test_data_in_memory_never_gets_workers(monkeypatch):
    monkeypatch.setenv(batches.WORKERS_ENV, "4")
    assert batches.resolve_workers("auto", _memory()) == 0


@pytest.mark.parametrize("bad", [-1, True, 1.5, "two"])
def test_a_bad_worker_count_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="num_workers"):
        batches.resolve_workers(bad, _Lazy())


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv(batches.WORKERS_ENV, "many")
    with pytest.raises(ConfigError, match="EDGEKD_NUM_WORKERS='many'"):
        batches.resolve_workers("auto", _Lazy())


def test_workers_start_from_a_forkserver_once_a_fork_unsafe_runtime_is_loaded(monkeypatch):
    for name in batches.FORK_UNSAFE:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert batches.start_method() is None
    monkeypatch.setitem(sys.modules, "openvino", object())
    assert batches.start_method() == ("forkserver" if sys.platform.startswith("linux") else None)
    assert batches.loader_options(2)["multiprocessing_context"] == batches.start_method()
    assert "multiprocessing_context" not in batches.loader_options(0)
