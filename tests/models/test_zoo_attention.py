"""clst1d: the conv + attention teacher: size, attention, ONNX export run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.errors import ConfigError
from edgekd.models import count_params, create_model
from edgekd.models.zoo_attention import SelfAttention


def test_registered_and_sized_as_a_teacher():
    teacher = create_model("edgekd:clst1d", num_classes=11)
    params = count_params(teacher)
    assert 150_000 <= params <= 400_000
    for student in ("cnn1d_small", "mobilenet1d"):
        assert params >= 10 * count_params(create_model(student, 11)), student
    names = dict(teacher.named_modules())
    assert {"stem", "pos", "blocks.0", "blocks.2", "norm", "head"} <= set(names)


def test_attention_matches_the_textbook_formula():
    torch.manual_seed(0)
    attn = SelfAttention(dim=8, heads=2).eval()
    x = torch.randn(3, 5, 8)
    q, k, v = attn.qkv(x).split(8, dim=-1)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, dim=-1)  # sqrt(4) = 2
        heads.append(weights @ v[..., sl])
    torch.testing.assert_close(attn(x), attn.proj(torch.cat(heads, dim=-1)))


def test_attention_mixes_distant_time_steps():
    # A conv stack of this depth sees ~30 samples; attention lets the first output depend on the last input.
    model = create_model("clst1d", 4, dim=32, depth=1, heads=2, dropout=0.0).eval()
    x = torch.randn(1, 2, 256, requires_grad=True)
    tokens = model.blocks(((t := model.stem(x)) + model.pos(t)).transpose(1, 2))
    tokens[0, 0].sum().backward()
    assert x.grad[0, :, -16:].abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"dim": 30, "heads": 4}, "not divisible"), ({"depth": 0}, "depth"), ({"dropout": 1.0}, "dropout")],
)
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        create_model("clst1d", 4, **kwargs)


def test_onnx_export_opset17_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    torch.manual_seed(0)
    model = create_model("clst1d", 6, dim=32, depth=2, heads=4).eval()
    path = tmp_path / "clst1d.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 2, 128),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 2, 128)).astype(np.float32)
    got = session.run(None, {"x": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (5, 6)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
