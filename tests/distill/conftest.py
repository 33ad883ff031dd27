"""Shared fixtures for the distillation tests."""

from __future__ import annotations

import pytest

from edgekd.data.dataset import ArrayDataset
from tests.distill.synthetic import tone_dataset


@pytest.fixture(scope="session")
def tones() -> tuple[ArrayDataset, ArrayDataset]:
    """(train, val): 512 and 256 frames of 2x64, four classes."""
    return tone_dataset(512, seed=0), tone_dataset(256, seed=1)
