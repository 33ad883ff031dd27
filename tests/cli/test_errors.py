"""User mistakes end in one line, exit 2, no traceback, and nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.data.dataset import ArrayDataset


def _invoke(*argv):
    result = CliRunner().invoke(cli, list(argv))
    return result.exit_code, result.output


def _assert_one_line(output: str, fragment: str):
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("edgekd: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in output


def test_missing_recipe(tmp_path):
    code, out = _invoke("run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"))
    assert code == 2
    _assert_one_line(out, "neither a file nor a built-in name")
    assert not (tmp_path / "o").exists()


def test_malformed_yaml(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ndata: [unclosed\n")
    code, out = _invoke("run", str(recipe), "--out", str(tmp_path / "o"))
    assert code == 2
    _assert_one_line(out, "not valid YAML")


def test_unknown_config_key_suggests(tmp_path):
    code, out = _invoke("demo", "--out", str(tmp_path / "o"), "--set", "distill.kd.temprature=2")
    assert code == 2
    _assert_one_line(out, "did you mean 'temperature'")


def test_unknown_model_name(tmp_path):
    code, out = _invoke(
        "demo",
        "--out",
        str(tmp_path / "o"),
        "--set",
        "student.model=edgekd:cnn1d_smal",
        "--set",
        "data.synthetic.frames_per_class_snr=2",
        "--set",
        "teacher.train.epochs=1",
    )
    assert code == 2
    _assert_one_line(out, "cnn1d_small")


def test_missing_checkpoint_for_export(tmp_path):
    code, out = _invoke("export", str(tmp_path / "student.pt"), "--data", str(tmp_path / "d.npz"))
    assert code == 2
    _assert_one_line(out, "does not exist")


def test_gate_bad_inputs(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text("{broken")
    code, out = _invoke("gate", str(bench), "--target", "x86-cpu-onnxruntime-int8")
    assert code == 2
    _assert_one_line(out, str(bench))
    code, out = _invoke("gate", str(bench), "--target", "no-such-target")
    assert code == 2
    _assert_one_line(out, "no-such-target")


@pytest.mark.slow
def test_shape_that_does_not_fit_the_model(tmp_path):
    """Data of 2x64 frames given to a model trained on 2x128: one line naming both shapes."""
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        cli,
        [
            "distill",
            "--config",
            "modrec",
            "--out",
            str(out),
            "-q",
            "--set",
            "data.synthetic.frames_per_class_snr=3",
            "--set",
            "data.synthetic.snr_min=10",
            "--set",
            "teacher.train.epochs=1",
            "--set",
            "distill.train.epochs=1",
        ],
    )
    assert result.exit_code == 0, result.output
    rng = np.random.default_rng(0)
    short = ArrayDataset(
        x=rng.normal(size=(12, 2, 64)).astype(np.float32),
        y=np.arange(12) % 8,
        class_names=["BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK"],
        split=np.repeat([0, 1, 2], 4),
    )
    short.save_npz(tmp_path / "short.npz")
    code, text = _invoke("export", str(out / "student.pt"), "--data", str(tmp_path / "short.npz"), "-q")
    assert code == 2
    _assert_one_line(text, "[2, 64]")
    assert not (out / "student.onnx").exists()
