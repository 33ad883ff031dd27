"""QAT training and the Q/DQ ONNX export: loss goes down, weights stay on the grid, every
Conv/Gemm runs quantized, ONNX Runtime and OpenVINO agree with the fake-quant torch model."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgekd.distill.config import KDConfig
from edgekd.distill.objective import DistillObjective
from edgekd.errors import ParityError
from edgekd.export.onnx_export import run_onnxruntime
from edgekd.qat import QatConfig, calibrate, export_qat_onnx, prepare_qat
from edgekd.qat.export import openvino_logits, torch_logits
from edgekd.qat.onnx_qdq import unquantized_compute_nodes

# Integer kernels requantize with their own rounding: a few frames near a tie may flip, and
# the logits differ by a fraction of a quantization step. Stated tolerances for these tests:
MIN_AGREEMENT = 0.97  # top-1 agreement with the fake-quant torch model
MAX_RELATIVE_ERROR = 0.05  # mean |logit difference| / std of the torch logits


def _kd_loss_steps(model, teacher, x, y, steps: int) -> list[float]:
    objective = DistillObjective(KDConfig().resolved_terms())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with torch.no_grad():
        target = teacher.eval()(x)
    losses = []
    model.train()
    for _ in range(steps):
        loss, _parts = objective(model(x), target, y, {}, {})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def calibrated(qat_data, qat_student):
    model = prepare_qat(qat_student, QatConfig())
    calibrate(model, qat_data.subset("train").x[:128])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, calibrated, qat_data, qat_teacher):
    model = copy.deepcopy(calibrated)
    train = qat_data.subset("train")
    _kd_loss_steps(model, qat_teacher, torch.from_numpy(train.x[:64]), torch.from_numpy(train.y[:64]), 5)
    path = tmp_path_factory.mktemp("qat") / "student.qat.onnx"
    report = export_qat_onnx(model, qat_data.subset("test").x, path, QatConfig())
    return model, path, report


def test_prepare_folds_batchnorm_and_wraps_every_layer(calibrated):
    assert calibrated.bn_folded
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in calibrated.modules())
    assert len(calibrated.quantized_layers()) == 4  # 3 convs + the linear head
    assert all(q.is_calibrated for q in calibrated.activation_quantizers())


def test_qat_step_decreases_the_kd_loss(calibrated, qat_data, qat_teacher):
    model = copy.deepcopy(calibrated)
    train = qat_data.subset("train")
    x, y = torch.from_numpy(train.x[:64]), torch.from_numpy(train.y[:64])
    losses = _kd_loss_steps(model, qat_teacher, x, y, 8)
    assert losses[-1] < losses[0] * 0.97, losses  # monotone in practice; a margin, not noise
    assert any(q.log_gain.grad is not None for q in model.activation_quantizers())


def test_weights_and_biases_on_the_grid_after_export(exported):
    model, path, _report = exported
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    layers = model.quantized_layers()
    assert len(convs) == len(layers)
    for node, layer in zip(convs, layers, strict=True):
        w_dq = producer[node.input[1]]
        q, scale = inits[w_dq.input[0]], inits[w_dq.input[1]]
        assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
        with torch.no_grad():
            fake = layer.weight_quant(layer.layer.weight).numpy()
        shape = [-1] + [1] * (q.ndim - 1)
        np.testing.assert_allclose(q * scale.reshape(shape), fake, rtol=0, atol=1e-7)
        b_dq = producer[node.input[2]]
        assert inits[b_dq.input[0]].dtype == np.int32


def test_every_conv_and_gemm_has_qdq_and_runs_in_integer_kernels(exported):
    _model, path, report = exported
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert unquantized_compute_nodes(onnx.load(str(path))) == []
    for node in (n for n in graph.node if n.op_type in ("Conv", "Gemm")):
        act_dq = producer[node.input[0]]
        assert act_dq.op_type == "DequantizeLinear"
        assert producer[act_dq.input[0]].op_type == "QuantizeLinear"
    assert report.coverage["mac_fraction_int8"] == 1.0
    # What ONNX Runtime really executes after its fusions: no float Conv or Gemm left.
    kernels = report.onnxruntime_kernels
    assert kernels.get("QLinearConv") == 3 and kernels.get("QGemm") == 1
    assert "Conv" not in kernels and "Gemm" not in kernels


def test_onnxruntime_and_openvino_agree_with_fake_quant_torch(exported, qat_data):
    model, path, report = exported
    x = qat_data.subset("test").x
    reference = torch_logits(model, x)
    candidates = {"onnxruntime": run_onnxruntime(path, x)}
    ov = openvino_logits(path, x)
    assert ov is not None, "OpenVINO is a core dependency: it must run here, not be skipped"
    candidates["openvino"] = ov
    for runtime, logits in candidates.items():
        agreement = np.mean(logits.argmax(1) == reference.argmax(1))
        relative = np.abs(logits - reference).mean() / reference.std()
        assert agreement >= MIN_AGREEMENT, (runtime, agreement)
        assert relative <= MAX_RELATIVE_ERROR, (runtime, relative)
    openvino = next(c for c in report.checks if c.runtime == "openvino")
    assert openvino.executes in ("u8", "i8"), openvino  # the CPU plugin really runs INT8


def test_failed_check_leaves_nothing(tmp_path, calibrated, qat_data):
    path = tmp_path / "student.qat.onnx"
    strict = QatConfig(max_logit_error=1e-12)  # integer kernels are never this exact
    with pytest.raises(ParityError, match="disagrees with the fake-quant model"):
        export_qat_onnx(calibrated, qat_data.subset("test").x, path, strict)
    assert list(tmp_path.iterdir()) == []
