"""Session.run skips re-checking a shape it already accepted, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.backends.base import session_from_artifact
from edgekd.errors import ShapeError
from tests.backends.tiny_models import TinyArtifacts


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_fast_path_still_refuses_bad_inputs(name: str, tiny: TinyArtifacts) -> None:
    path = tiny.onnx if name == "onnxruntime" else tiny.xml
    session = session_from_artifact(name, path)
    x = tiny.frames[:2]
    first = session.run(x)
    assert np.array_equal(session.run(x), first)  # the cached path gives the same logits
    with pytest.raises(ShapeError, match="float32"):
        session.run(x.astype(np.float64))  # same shape, wrong dtype
    with pytest.raises(ShapeError):
        session.run(x[:, :1])  # another shape is checked again
    # Changing the batch back and forth (latency batch, then accuracy batches) stays correct.
    assert session.run(tiny.frames).shape == (16, 4)
    np.testing.assert_allclose(session.run(x), first, rtol=1e-5, atol=1e-6)
