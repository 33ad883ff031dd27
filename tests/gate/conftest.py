from __future__ import annotations

import pytest

from tests.backends.tiny_models import TinyArtifacts, build_tiny_artifacts


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyArtifacts:
    return build_tiny_artifacts(tmp_path_factory.mktemp("tiny_gate"))
