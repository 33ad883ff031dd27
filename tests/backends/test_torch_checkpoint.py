"""The torch backend opening real edgekd ``.pt`` checkpoints (edgekd.models.checkpoint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.backends import SessionOptions, session_from_artifact
from edgekd.errors import InputFileError
from tests.backends.tiny_models import SAMPLE_SHAPE, CheckpointArtifacts, build_checkpoint_artifacts

pytest.importorskip("edgekd.models.checkpoint")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> CheckpointArtifacts:
    return build_checkpoint_artifacts(tmp_path_factory.mktemp("checkpoint"))


def test_pt_loads_through_load_checkpoint(cnn: CheckpointArtifacts) -> None:
    session = session_from_artifact("torch", cnn.pt, SessionOptions(threads=1))
    assert session.input_shape == (None, *SAMPLE_SHAPE)
    assert session.executed_precision == "fp32" and session.load_seconds > 0
    x = np.random.default_rng(5).standard_normal((3, *SAMPLE_SHAPE)).astype(np.float32)
    with torch.inference_mode():
        expected = cnn.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(x), expected, atol=1e-5, rtol=0)
    # The same network through onnxruntime: the cross-runtime contract.
    np.testing.assert_allclose(
        session_from_artifact("onnxruntime", cnn.onnx).run(x), expected, atol=1e-4, rtol=0
    )


def test_pt_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"definitely not a zip archive")
    with pytest.raises(InputFileError):
        session_from_artifact("torch", bogus)
