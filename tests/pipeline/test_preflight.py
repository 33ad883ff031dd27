"""Bad inputs refused before any stage writes, in one line naming the files involved.

Through the CLI, as a user meets them: a model that does not fit the data names both files;
a recipe's model error names the recipe and its key; `edgekd run` opens every file its later
stages read (calibration recipe, target profile, teacher checkpoint) before it trains; and
RadioML frames that do not fit the teacher are refused before data.npz is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from tests.pipeline.files import Files, write_rml2016


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_refused(result, *names: object) -> str:
    """Exit 2 and one ``edgekd: error:`` line naming each of ``names``; returns the line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), result.output
    assert "Traceback" not in result.output
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any stage that starts: a refusal at the door starts none."""
    from edgekd.pipeline import data_stage, distill_stage, teacher_stage

    started: list[str] = []
    for module, name in (
        (data_stage, "stage_data"),
        (teacher_stage, "stage_teacher"),
        (distill_stage, "stage_distill"),
    ):

        def record(*_args, _name=name, **_kwargs):
            started.append(_name)
            raise AssertionError(f"{_name} ran")

        monkeypatch.setattr(module, name, record)
    return started


# ------------------------------------------------------------ model vs data: both files named


def _model_entries(files: Files, out: Path, data: Path) -> dict[str, list[object]]:
    return {
        "distill": ["distill", "--config", files.recipe(out.parent / "r.yaml"), "--data", data,
                    "--teacher", files.teacher, "--out", out, "-q"],
        "export": ["export", files.teacher, "--data", data, "--out", out, "--no-openvino", "-q"],
        "qat": ["qat", files.teacher, "--teacher", files.teacher, "--data", data, "--out", out, "-q"],
        "deploy": ["deploy", files.teacher, "--target", files.target, "--data", data, "--out", out,
                   "--runtimes", "onnxruntime", "-q"],
    }  # fmt: skip


@pytest.mark.parametrize("entry", ["distill", "export", "qat", "deploy"])
def test_frames_that_do_not_fit_the_model_name_the_model_and_the_data(files: Files, tmp_path, entry):
    out = tmp_path / "out"
    result = _invoke(*_model_entries(files, out, files.short_npz)[entry])
    line = assert_refused(result, "teacher.pt", "short.npz")
    assert "[2, 128]" in line and "[2, 64]" in line
    assert not out.exists()


def test_a_teacher_of_other_classes_names_the_teacher_and_the_data(files: Files, tmp_path):
    out = tmp_path / "out"
    args = ["distill", "--config", files.recipe(tmp_path / "r.yaml"), "--data", files.npz,
            "--teacher", files.other_teacher, "--out", out, "-q"]  # fmt: skip
    line = assert_refused(_invoke(*args), "other_teacher.pt", "data.npz")
    assert "'AM'" in line and "'QPSK'" in line
    assert not out.exists()


def test_export_for_a_target_of_other_frames_names_the_target_and_the_model(files: Files, tmp_path):
    target = tmp_path / "target-64.yaml"
    target.write_text(files.target.read_text().replace("[1, 2, 128]", "[1, 2, 64]"))
    out = tmp_path / "out"
    args = ["export", files.teacher, "--data", files.npz, "--out", out, "--no-openvino", "--target", target]
    line = assert_refused(_invoke(*args, "-q"), "target-64.yaml", "teacher.pt")
    assert "[1, 2, 64]" in line and not out.exists()
    good = _invoke(*args[:-1], files.target, "-q")
    assert good.exit_code == 0, good.output


# ------------------------------------------------------------ recipe model errors name the recipe


@pytest.mark.parametrize(
    ("key", "text", "says"),
    [
        ("student", "student:\n  model: cnn1d_smal\n", "did you mean 'cnn1d_small'"),
        ("student", "student:\n  model: cnn1d_small\n  kwargs: {colour: 1}\n", "no argument 'colour'"),
        ("teacher", "teacher:\n  model: resnet1x\n", "unknown model 'resnet1x'"),
    ],
)
@pytest.mark.parametrize("command", ["distill", "run"])
def test_recipe_model_errors_name_the_recipe_and_the_key(
    files, tmp_path, no_training, key, text, says, command
):
    recipe = files.recipe(tmp_path / "bad-model.yaml", **{key: text})
    args = ["distill", "--config", recipe] if command == "distill" else ["run", recipe]
    line = assert_refused(_invoke(*args, "--out", tmp_path / "out", "-q"), recipe, f"{key}.model")
    assert says in line
    assert no_training == [] and not (tmp_path / "out").exists()


# ------------------------------------------------------------ `edgekd run`: every file, before training


def _bad_inputs(files: Files, tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    bad_calibration = tmp_path / "bad-calibration.yaml"
    bad_calibration.write_text("name: x\nnum_samples: 0\n")
    bad_target = tmp_path / "bad-target.yaml"
    bad_target.write_text(files.target.read_text().replace("runtime: onnxruntime", "runtime: onnxruntme"))
    return {
        "gate-target-missing": ({"gate": "gate:\n  target: no-such-target\n"}, "no-such-target"),
        "gate-target-broken": ({"gate": f"gate:\n  target: {bad_target}\n"}, "bad-target.yaml"),
        "calibration-missing": (
            {"quantize": "quantize:\n  calibration: /nonexistent/calib.yaml\n"},
            "calib.yaml",
        ),
        "calibration-broken": (
            {"quantize": f"quantize:\n  calibration: {bad_calibration}\n"},
            "bad-calibration.yaml",
        ),
        "teacher-missing": ({"teacher": "teacher:\n  checkpoint: /nonexistent/t.pt\n"}, "t.pt"),
        "teacher-vs-data-input-shape": (
            {"data": f"data:\n  source: npz\n  path: {files.npz}\n  input_shape: [2, 64]\n"},
            "teacher.pt",
        ),
        "deploy-target-missing": (
            {"extra": "deploy:\n  enabled: true\n  target: no-such-deploy-target\n"},
            "no-such-deploy-target",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "gate-target-missing",
        "gate-target-broken",
        "calibration-missing",
        "calibration-broken",
        "teacher-missing",
        "teacher-vs-data-input-shape",
        "deploy-target-missing",
    ],
)
def test_run_refuses_what_a_later_stage_reads_before_it_trains(files, tmp_path, no_training, case):
    keys, offender = _bad_inputs(files, tmp_path)[case]
    recipe = files.recipe(tmp_path / "r.yaml", **keys)
    out = tmp_path / "out"
    assert_refused(_invoke("run", recipe, "--out", out, "-q"), offender)
    assert no_training == [], "a stage started before the refusal"
    assert not out.exists()


def test_run_with_npz_frames_that_do_not_fit_the_teacher_keeps_nothing(files, tmp_path):
    """The npz source is used in place; recipe.resolved.yaml, written first, goes again."""
    recipe = files.recipe(tmp_path / "r.yaml", data_path=files.short_npz)
    out = tmp_path / "out"
    assert_refused(_invoke("run", recipe, "--out", out, "-q"), "teacher.pt", "short.npz")
    assert not out.exists()


def _frame_dependent(files: Files, tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    target = tmp_path / "target-64.yaml"
    target.write_text(files.target.read_text().replace("[1, 2, 128]", "[1, 2, 64]"))
    needs_snr = tmp_path / "needs-snr.yaml"
    needs_snr.write_text("name: s\nnum_samples: 16\nselection: stratified_snr\n")
    return {
        "deploy-target-shape": (
            {"extra": f"deploy:\n  enabled: true\n  target: {target}\n"},
            "target-64.yaml",
        ),
        "calibration-needs-snr": ({"quantize": f"quantize:\n  calibration: {needs_snr}\n"}, "needs-snr.yaml"),
    }


@pytest.mark.parametrize("case", ["deploy-target-shape", "calibration-needs-snr"])
def test_what_later_stages_need_of_the_frames_is_checked_before_training(files, tmp_path, monkeypatch, case):
    """Deploy and quantize would refuse these frames after training: the data stage does, first,
    naming the file that asks for what the data (named too) does not have."""
    from edgekd.pipeline import teacher_stage

    def stage_teacher(*_args, **_kwargs):
        raise AssertionError("the teacher stage ran")

    monkeypatch.setattr(teacher_stage, "stage_teacher", stage_teacher)
    keys, offender = _frame_dependent(files, tmp_path)[case]
    recipe = files.recipe(tmp_path / "r.yaml", **keys)
    out = tmp_path / "out"
    assert_refused(_invoke("run", recipe, "--out", out, "-q"), offender, "data.npz")
    assert not out.exists()


# ------------------------------------------------------------ RadioML frames vs the teacher


@pytest.mark.parametrize("command", ["distill", "run"])
@pytest.mark.parametrize(
    ("length", "mods", "says"),
    [(64, None, "[2, 64]"), (128, ["AM", "FM", "GFSK", "PAM4"], "'GFSK'")],
)
def test_radioml_frames_that_do_not_fit_the_teacher_leave_no_data_npz(
    files, tmp_path, command, length, mods, says
):
    pkl = write_rml2016(tmp_path / "RML-bad.pkl", length=length, **({"mods": mods} if mods else {}))
    recipe = files.recipe(tmp_path / "r.yaml", source="rml2016", data_path=pkl)
    out = tmp_path / "out"
    args = ["distill", "--config", recipe] if command == "distill" else ["run", recipe]
    line = assert_refused(_invoke(*args, "--out", out, "-q"), "RML-bad.pkl", "teacher.pt")
    assert says in line
    assert not (out / "data.npz").exists() and not out.exists()
