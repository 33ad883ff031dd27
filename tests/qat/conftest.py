"""Session fixtures for the QAT tests: data, a trained teacher and FP32 student (seconds)."""

from __future__ import annotations

import pytest

from tests.qat.tiny import split_tone_dataset, trained


@pytest.fixture(scope="session")
def qat_data():
    return split_tone_dataset()


@pytest.fixture(scope="session")
def qat_teacher(qat_data):
    return trained("cnn1d_small", qat_data, epochs=5, width=16)


@pytest.fixture(scope="session")
def qat_student(qat_data):
    return trained("cnn1d_small", qat_data, epochs=3, width=4)
