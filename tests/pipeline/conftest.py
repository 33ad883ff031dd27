"""Fixtures of the pipeline tests: tiny valid files, built once per module."""

from __future__ import annotations

import pytest

from tests.pipeline.files import Files, build


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return build(tmp_path_factory.mktemp("pipeline_files"))
