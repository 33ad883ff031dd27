"""`edgekd qat --config FILE`: every error about the file's settings names the file."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.errors import ConfigError
from edgekd.qat.files import load_qat_config

BAD = {
    "activations-int4": "activations: int4\n",
    "ranges-unknown": "ranges: guessed\n",
    "calibration-frames-zero": "calibration_frames: 0\n",
    "epochs-zero": "train: {epochs: 0, batch_size: 16}\n",
    "epochs-too-many": "train: {epochs: 500}\n",
    "temperature-zero": "kd: {loss: kd, temperature: 0.0}\n",
    "alpha-above-1": "kd: {loss: kd, alpha: 1.5}\n",
    "unknown-key": "colour: red\n",
    "opset-out-of-range": "opset: 99\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_qat_config_errors_name_the_file(tmp_path, name):
    """Read before the student, teacher and data are opened: the config is the only problem."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(BAD[name])
    result = CliRunner().invoke(
        cli,
        ["qat", str(tmp_path / "student.pt"), "--teacher", str(tmp_path / "t.pt"), "--data",
         str(tmp_path / "d.npz"), "--config", str(config), "--out", str(tmp_path / "out")],
    )  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), result.output
    assert config.name in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_without_a_file_the_message_is_the_setting_alone():
    with pytest.raises(ConfigError) as info:
        load_qat_config(None, ["activations=int4"])
    assert info.value.message.startswith("qat.activations")


def test_a_valid_file_loads(tmp_path):
    config = tmp_path / "qat.yaml"
    config.write_text("activations: int8\ntrain: {epochs: 2}\n")
    cfg = load_qat_config(config)
    assert cfg.activations == "int8" and cfg.train.epochs == 2
