"""The whole flow (library and CLI): FP32 / PTQ / QAT report, artifacts with manifests, and
one-line errors for bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.data.dataset import ArrayDataset
from edgekd.distill.config import TrainConfig
from edgekd.errors import ConfigError
from edgekd.models.checkpoint import save_checkpoint
from edgekd.qat import QatConfig, QatError, prepare_qat, qat_distill
from edgekd.qat.files import load_qat_config


def _fast_cfg(**changes) -> QatConfig:
    cfg = QatConfig(train=TrainConfig(epochs=1, batch_size=64, lr=1e-3, weight_decay=0.0, device="cpu"))
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_qat_distill_writes_onnx_report_and_manifest(tmp_path, qat_data, qat_teacher, qat_student):
    before = {k: v.clone() for k, v in qat_student.state_dict().items()}
    result = qat_distill(qat_student, qat_teacher, qat_data, _fast_cfg(), tmp_path)
    # The caller's FP32 student is untouched (a copy trains).
    assert all(torch.equal(before[k], v) for k, v in qat_student.state_dict().items())
    names = [(r.name, r.runtime) for r in result.rows]
    assert names[:3] == [
        ("FP32", "torch"),
        ("PTQ INT8 (ORT static)", "onnxruntime"),
        ("PTQ INT8 + CLE (ORT static)", "onnxruntime"),  # equalize is on by default
    ]
    assert ("QAT INT8", "onnxruntime") in names
    fake, ort = result.row("QAT INT8 (fake-quant)"), next(r for r in result.rows if r.name == "QAT INT8")
    assert abs(fake.overall - ort.overall) <= 0.02  # the runtime scores what training measured
    assert result.onnx_path == tmp_path / "student.qat.onnx" and result.onnx_path.is_file()
    manifest = json.loads((tmp_path / "student.qat.onnx.json").read_text())
    assert manifest["kind"] == "onnx-qat-int8"
    assert manifest["metrics"]["accuracy"]["rows"][0]["name"] == "FP32"
    report = json.loads(result.report_path.read_text())
    assert report["schema"] == "edgekd.qat-report/1" and report["accuracy"]["frames"] == len(
        qat_data.subset("test")
    )
    assert "| PTQ INT8 (ORT static) |" in (tmp_path / "qat_report.md").read_text()
    assert report["ptq"]["equalized"]["activation_type"] == "uint8"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_bad_settings_are_config_errors():
    for changes, fragment in [
        ({"weight_bits": 6}, "weight_bits"),
        ({"calibration_frames": 0}, "calibration_frames"),
        ({"opset": 11}, "opset"),
        ({"min_top1_agreement": 1.5}, "min_top1_agreement"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            _fast_cfg(**changes).validate()
    with pytest.raises(ConfigError, match="bounded"):
        QatConfig(train=TrainConfig(epochs=500)).validate()
    with pytest.raises(ConfigError, match="unknown config key"):
        load_qat_config(None, ["rangez=frozen"])
    assert load_qat_config(None, ["weight_bits=7", "ranges=frozen"]).weight_bits == 7


def test_data_without_splits_and_models_without_layers(tmp_path, qat_data, qat_teacher, qat_student):
    flat = ArrayDataset(qat_data.x, qat_data.y, qat_data.class_names)
    with pytest.raises(ConfigError, match="train/val/test splits"):
        qat_distill(qat_student, qat_teacher, flat, _fast_cfg(), tmp_path)
    with pytest.raises(QatError, match="no Conv or Linear"):
        prepare_qat(torch.nn.Sequential(torch.nn.ReLU()), QatConfig())


def _checkpoint(path, model, data):
    save_checkpoint(
        path,
        model,
        model_name="cnn1d_small",
        model_kwargs={"width": 4 if "student" in path.name else 16},
        num_classes=data.num_classes,
        in_channels=2,
        input_shape=data.input_shape,
        class_names=data.class_names,
    )
    return path


def _invoke(*argv):
    result = CliRunner().invoke(cli, [str(a) for a in argv])
    return result.exit_code, result.output


def test_cli_qat_end_to_end(tmp_path, qat_data, qat_teacher, qat_student):
    data = tmp_path / "data.npz"
    qat_data.save_npz(data)
    student = _checkpoint(tmp_path / "student.pt", qat_student, qat_data)
    teacher = _checkpoint(tmp_path / "teacher.pt", qat_teacher, qat_data)
    config = tmp_path / "qat.yaml"
    config.write_text("ranges: frozen\ntrain: {epochs: 1, batch_size: 64, device: cpu}\n")
    code, out = _invoke("qat", student, "--teacher", teacher, "--data", data, "--config", config, "-q")
    assert code == 0, out
    assert "| QAT INT8 | onnxruntime |" in out
    assert (tmp_path / "student.qat.onnx").is_file() and (tmp_path / "qat_report.json").is_file()
    report = json.loads((tmp_path / "qat_report.json").read_text())
    assert report["config"]["ranges"] == "frozen"


def _assert_one_line(output: str, fragment: str):
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: ") and fragment in lines[0], output


@pytest.mark.parametrize(
    ("student", "teacher", "extra", "fragment"),
    [
        ("missing.pt", "t.pt", [], "does not exist"),
        ("junk.pt", "junk.pt", [], "junk.pt is refused"),
        ("junk.pt", "t.pt", ["--set", "x=1"], "unknown config key"),
        ("junk.pt", "t.pt", ["--epochs", "0"], "epochs"),
    ],
)
def test_cli_bad_inputs_are_one_line(tmp_path, student, teacher, extra, fragment):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2, 64), np.float32), y=np.zeros(4, np.int64))
    args = ["qat", tmp_path / student, "--teacher", tmp_path / teacher, "--data", tmp_path / "d.npz", *extra]
    code, out = _invoke(*args)
    assert code == 2
    _assert_one_line(out, fragment)
    assert not (tmp_path / "student.qat.onnx").exists()


def test_distill_qat_settings_come_from_the_recipe():
    from edgekd.pipeline.recipe import load_recipe
    from edgekd.qat.files import qat_config_for_recipe

    recipe = load_recipe("modrec", ["distill.kd.temperature=2.0", "distill.train.device=cpu"])
    cfg = qat_config_for_recipe(recipe)
    cfg.validate()
    assert cfg.kd.temperature == 2.0 and cfg.train.device == "cpu"
    assert cfg.train.epochs <= 5 and cfg.train.lr < recipe.distill.train.lr  # bounded fine-tuning


def test_distill_qat_refuses_torchrun_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out = _invoke("distill", "--config", "modrec", "--out", tmp_path / "run", "--qat")
    assert code == 2
    _assert_one_line(out, "single process")
    assert not (tmp_path / "run").exists()


def test_learned_ranges_freeze_after_the_configured_step():
    from edgekd.models import create_model
    from edgekd.qat.distill import _freezer

    model = prepare_qat(create_model("cnn1d_small", 4, width=4), QatConfig(freeze_ranges_after=2))
    on_step = _freezer(model, QatConfig(freeze_ranges_after=2))
    on_step(1)
    assert all(q.log_gain.requires_grad for q in model.activation_quantizers())
    on_step(2)
    assert not any(q.log_gain.requires_grad for q in model.activation_quantizers())
    frozen = prepare_qat(create_model("cnn1d_small", 4, width=4), QatConfig(ranges="frozen"))
    assert not any(q.log_gain.requires_grad for q in frozen.activation_quantizers())
