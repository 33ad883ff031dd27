"""Frictions a new user hit on real data (issue #20, part 4, and part 2's end-of-run report).

- An objective of labels alone (``loss: ce``, ``kd`` at alpha 0) never runs the teacher in
  training, builds no teacher cache, and says so in the log instead of "T=4 alpha=0.7".
- A student trains alone: ``teacher.model: none`` in a recipe, ``teacher=None`` in Python.
- "(early stop)" only when training stopped before the scheduled end.
- The run ends with the student's val accuracy beside its teacher's, and a warning when a
  distilled student ends within noise of its teacher or above it.
- ``train.num_threads`` is documented; the RadioML recipes use the held-out alpha.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

import edgekd
from edgekd.artifacts import read_manifest
from edgekd.cli.main import cli
from edgekd.config import from_dict
from edgekd.distill.config import KDConfig, LossTerm, TrainConfig
from edgekd.distill.objective import DistillObjective
from edgekd.distill.reporting import teacher_comparison
from edgekd.distill.train import distill, train_supervised
from edgekd.errors import ConfigError
from edgekd.models import create_model
from edgekd.pipeline.recipe import load_recipe
from tests.pipeline.files import Files, build

ROOT = Path(__file__).resolve().parents[2]
FAST = TrainConfig(epochs=1, batch_size=64, device="cpu")
LEARN = TrainConfig(epochs=2, batch_size=64, lr=1e-2, device="cpu")  # enough to beat chance


class CountingTeacher(nn.Module):
    """A teacher that counts its forward passes on real frames (check_fits' all-zero probe
    and nothing else is allowed before training)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = create_model("cnn1d_small", 4, width=4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().sum() > 0):
            self.calls += 1
        return self.net(x)


def _torch_sets(tones) -> dict[str, TensorDataset]:
    """The tone datasets as the Python API's callers hold theirs."""
    return {
        name: TensorDataset(torch.from_numpy(ds.x), torch.from_numpy(ds.y))
        for name, ds in zip(("train", "val"), tones, strict=True)
    }


def _student() -> nn.Module:
    torch.manual_seed(1)
    return create_model("cnn1d_small", 4, width=4)


# ------------------------------------------------------------ labels alone: the teacher never runs


@pytest.mark.parametrize(
    "kd",
    [
        {"loss": "ce"},
        {"loss": "kd", "alpha": 0.0},
        {"loss": "dkd", "alpha": 0.0},
        {
            "terms": [
                {"name": "ce"},
                {"name": "fitnet", "weight": 0, "student": ["features.1"], "teacher": ["x"]},
            ]
        },
    ],
    ids=["ce", "kd-alpha-0", "dkd-alpha-0", "zero-weight-feature-term"],
)
def test_an_objective_of_labels_alone_never_runs_the_teacher(tones, tmp_path, kd) -> None:
    teacher = CountingTeacher()
    lines: list[str] = []
    config = from_dict(KDConfig, kd)
    result = distill(_student(), teacher, *tones, LEARN, config, log=lines.append, out_dir=tmp_path)
    assert teacher.calls == 0
    assert not (tmp_path / "teacher_cache").exists()
    assert result.history[-1]["val_accuracy"] > 0.5  # it did learn, from the labels
    said = [line for line in lines if "labels only" in line]
    assert len(said) == 1 and said[0].startswith("training with "), lines
    assert said[0].endswith(" (labels only, no teacher) on cpu")
    if "terms" not in kd:
        assert said == ["training with ce (labels only, no teacher) on cpu"]
    assert not any("alpha" in line or "T=4" in line or "teacher run per batch" in line for line in lines)


@pytest.mark.parametrize("cache", [True, False])
def test_a_kd_objective_still_runs_the_teacher(tones, cache) -> None:
    teacher = CountingTeacher()
    distill(_student(), teacher, *tones, FAST, KDConfig(cache_teacher=cache))
    batches = len(tones[0]) // FAST.batch_size
    # Cached: one pass over the training frames; per batch: once per step.
    assert teacher.calls >= (1 if cache else batches)


def test_label_only_objectives_describe_and_resolve_as_ce() -> None:
    assert KDConfig(loss="ce").describe() == "ce (labels only, no teacher)"
    assert KDConfig(loss="kd", alpha=0.0).describe() == "ce (labels only, no teacher)"
    assert not KDConfig(loss="ce").needs_teacher and KDConfig().needs_teacher
    assert KDConfig().describe() == "loss kd T=4 alpha=0.7"
    objective = DistillObjective(KDConfig(loss="kd", alpha=0.0).resolved_terms())
    assert [(t.name, t.resolved_weight()) for t in objective.terms] == [("ce", 1.0)]
    # X at alpha 1: the ce term of weight 0 adds nothing and is dropped.
    objective = DistillObjective(KDConfig(loss="nkd", alpha=1.0).resolved_terms())
    assert [t.name for t in objective.terms] == ["nkd"] and objective.needs_teacher
    with pytest.raises(ConfigError, match=r"every term .* has weight 0"):
        DistillObjective([LossTerm("kd", 0.0), LossTerm("ce", 0.0)])


def test_kd_at_alpha_0_trains_as_ce_does(tones) -> None:
    """Rewriting kd at alpha 0 as ce changes nothing but the teacher's work: same weights."""
    weights = []
    for kd in (KDConfig(loss="kd", alpha=0.0), KDConfig(loss="ce")):
        student = _student()
        distill(student, CountingTeacher(), *tones, FAST, kd)
        weights.append(student.state_dict())
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value)


# ------------------------------------------------------------ a student trained alone


def test_no_teacher_with_labels_alone_trains_and_a_kd_objective_is_refused(tones) -> None:
    result = distill(_student(), None, *tones, LEARN, KDConfig(loss="ce"))
    assert result.best_val_accuracy > 0.5
    with pytest.raises(ConfigError, match=r"no teacher, but the objective loss kd T=4 alpha=0\.7 needs one"):
        distill(_student(), None, *tones, FAST, KDConfig())


def test_the_python_api_trains_a_student_alone(tones, tmp_path) -> None:
    lines: list[str] = []
    run = edgekd.distill(None, _student(), **_torch_sets(tones), loss="ce", epochs=2, lr=1e-2, batch_size=64,
                         device="cpu", out=tmp_path / "alone", log=lines.append)  # fmt: skip
    assert run.teacher is None and run.val_accuracy > 0.5
    assert run.teacher_val_accuracy != run.teacher_val_accuracy  # NaN: there is no teacher
    metrics = read_manifest(run.checkpoint)["metrics"]
    assert "teacher_val_accuracy" not in metrics and metrics["val_accuracy"] == run.val_accuracy
    assert not any("warning" in line for line in lines)
    with pytest.raises(ConfigError, match="needs teacher= for the objective loss kd"):
        edgekd.distill(None, _student(), **_torch_sets(tones), epochs=1, device="cpu")


def test_the_python_api_reports_the_teacher_beside_the_student(tones, monkeypatch) -> None:
    train_module = importlib.import_module("edgekd.distill.train")  # ``edgekd.distill`` is a function

    lines: list[str] = []
    # A hopeless teacher: the distilled student ends above it (or, at 0 too, within noise).
    monkeypatch.setattr(train_module, "evaluate_model", lambda model, data: 0.0)
    edgekd.distill(CountingTeacher(), _student(), **_torch_sets(tones), epochs=1, device="cpu",
                   log=lines.append)  # fmt: skip
    assert any(line.startswith("distill: student val acc ") and ", teacher " in line for line in lines)
    assert sum("distill: warning: the student ends" in line for line in lines) == 1, lines


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return build(tmp_path_factory.mktemp("friction_files"))


def _distill_cli(recipe: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["distill", "--config", str(recipe), "--out", str(out), *extra])


def test_a_recipe_without_a_teacher_trains_the_student_alone(files: Files, tmp_path) -> None:
    recipe = files.recipe(tmp_path / "alone.yaml", teacher="teacher:\n  model: none\n")
    out = tmp_path / "out"
    result = _distill_cli(recipe, out, "--set", "distill.kd.loss=ce")
    assert result.exit_code == 0, result.output
    assert "teacher: none" in result.output and "no teacher -> edgekd:cnn1d_small" in result.output
    assert "training with ce (labels only, no teacher)" in result.output
    assert not (out / "teacher.pt").exists() and not (out / "teacher_cache").exists()
    manifest = read_manifest(out / "student.pt")
    assert "teacher_val_accuracy" not in manifest["metrics"] and len(manifest["parents"]) == 1


def test_a_recipe_without_a_teacher_but_a_kd_objective_is_refused_before_training(files, tmp_path) -> None:
    recipe = files.recipe(tmp_path / "alone.yaml", teacher="teacher:\n  model: none\n")
    out = tmp_path / "out"
    result = _distill_cli(recipe, out, "-q")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "teacher.model is none" in lines[0] and "distill.kd.loss=ce" in lines[0]
    assert not out.exists()


def test_no_teacher_refuses_the_stages_that_distil_from_one() -> None:
    from edgekd.pipeline.preflight import preflight_run, preflight_training

    recipe = load_recipe("modrec", ["teacher.model=none", "distill.kd.loss=ce"])
    assert recipe.teacher.absent
    preflight_training(recipe)  # labels alone, no QAT: fine
    with pytest.raises(ConfigError, match="quantization-aware training distils from the teacher"):
        preflight_training(recipe, qat=True)
    recipe.search.enabled = True
    with pytest.raises(ConfigError, match=r"search\.enabled distils each candidate from the teacher"):
        preflight_run(recipe)
    # A checkpoint is a teacher whatever teacher.model says.
    assert not load_recipe("modrec", ["teacher.model=none", "teacher.checkpoint=t.pt"]).teacher.absent


# ------------------------------------------------------------ student beside teacher at the end


def test_distill_stage_reports_the_teacher_and_warns_when_the_student_catches_up(
    files: Files, tmp_path, monkeypatch
) -> None:
    from edgekd.pipeline import distill_stage

    monkeypatch.setattr(distill_stage, "evaluate_model", lambda model, data: 0.0)  # a hopeless teacher
    recipe = files.recipe(tmp_path / "kd.yaml")
    kd = _distill_cli(recipe, tmp_path / "kd")
    assert kd.exit_code == 0, kd.output
    assert "distill: student val acc " in kd.output and "teacher 0.00%" in kd.output
    assert "16 val frames" in kd.output
    warnings = [line for line in kd.output.splitlines() if "distill: warning:" in line]
    assert len(warnings) == 1 and "KD's gain is bounded" in warnings[0], kd.output
    # Labels alone: the same comparison, no warning (nothing was distilled).
    ce = _distill_cli(recipe, tmp_path / "ce", "--set", "distill.kd.loss=ce")
    assert ce.exit_code == 0 and "distill: student val acc " in ce.output
    assert "distill: warning" not in ce.output, ce.output


def test_teacher_comparison_uses_two_binomial_standard_errors() -> None:
    # p = 0.8 on 400 frames: SE = 2 points, noise = 4 points.
    assert len(teacher_comparison(0.70, 0.80, 400, distilled=True)) == 1  # 10 points short: no warning
    assert len(teacher_comparison(0.759, 0.80, 400, distilled=True)) == 1  # 4.1 points: outside noise
    within = teacher_comparison(0.77, 0.80, 400, distilled=True)
    assert len(within) == 2 and "within noise" in within[1] and "2 binomial SE = 4.00 points" in within[1]
    above = teacher_comparison(0.81, 0.80, 400, distilled=True)
    assert len(above) == 2 and "above its teacher" in above[1] and "+1.00 points" in above[1]
    assert teacher_comparison(0.81, 0.80, 400, distilled=False) == above[:1]
    assert "400 val frames, binomial SE 2.00 points" in above[0]


# ------------------------------------------------------------ "(early stop)" only when it stopped


def _early_stop_run(tones, epochs: int) -> tuple[object, list[str]]:
    lines: list[str] = []
    # lr so small that val accuracy cannot improve after the first epoch: patience 2 runs out at epoch 3.
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-9, device="cpu", early_stop_patience=2,
                      schedule="constant")  # fmt: skip
    torch.manual_seed(0)
    result = train_supervised(create_model("cnn1d_small", 4, width=4), *tones, cfg, log=lines.append)
    return result, [line for line in lines if line.startswith("epoch ")]


def test_early_stop_is_said_only_when_training_stopped_before_its_schedule(tones) -> None:
    result, epochs = _early_stop_run(tones, 3)  # patience runs out on the last scheduled epoch
    assert len(epochs) == 3 and not any("early stop" in line for line in epochs)
    assert not result.stopped_early
    result, epochs = _early_stop_run(tones, 6)
    assert len(epochs) == 3 and "(early stop)" in epochs[-1] and result.stopped_early


# ------------------------------------------------------------ docs and recipes


def test_num_threads_is_documented_with_the_train_settings() -> None:
    config = importlib.import_module("edgekd.distill.config")  # ``edgekd.distill`` is a function
    assert "``train.num_threads``" in inspect.getdoc(config)
    assert "`train.num_threads`" in (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    assert "A student trained alone (the baseline)" in (ROOT / "docs" / "commands.md").read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize("name", ["modrec-rml2016", "modrec-rml2018"])
def test_radioml_recipes_use_the_alpha_chosen_on_held_out_frames(name) -> None:
    kd = load_recipe(name, ["data.path=unused"]).distill.kd
    assert (kd.loss, kd.temperature, kd.alpha) == ("kd", 4.0, 0.5)
    assert load_recipe("modrec").distill.kd.alpha == 0.7  # the demo (CI's gate) keeps its own


def test_recipe_comments_show_the_baseline_command() -> None:
    for name in ("modrec-rml2016", "modrec-rml2018"):
        text = (ROOT / "edgekd" / "recipes" / f"{name}.yaml").read_text(encoding="utf-8")
        assert "--set teacher.model=none --set distill.kd.loss=ce" in text
