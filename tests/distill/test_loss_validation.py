"""Bad loss settings, mismatched shapes and non-finite teachers: clear errors, never NaN training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.config import from_dict
from edgekd.distill.config import PARAM_RANGES, KDConfig, LossTerm, TrainConfig, loss_names, loss_params
from edgekd.distill.distributed import DistContext
from edgekd.distill.feature_losses import FEATURE_LOSSES, LossInputs, ofa_term
from edgekd.distill.features import FeatureTaps
from edgekd.distill.finite import FiniteWatch
from edgekd.distill.objective import DistillObjective
from edgekd.distill.train import distill, train_supervised
from edgekd.errors import ConfigError, InputFileError, ShapeError
from edgekd.models import create_model

FAST = TrainConfig(epochs=1, batch_size=64, lr=1e-2, device="cpu", num_threads=1)


def test_every_loss_parameter_has_a_declared_range() -> None:
    for name in loss_names():
        for param in loss_params(name):
            assert param in PARAM_RANGES, f"{name}.{param} has no entry in PARAM_RANGES"


@pytest.mark.parametrize(
    ("term", "fragment"),
    [
        ({"name": "kd", "params": {"temperature": 0}}, "temperature must be a number > 0, got 0"),
        ({"name": "dkd", "params": {"temperature": -2.0}}, "temperature must be a number > 0"),
        ({"name": "kd", "params": {"alpha": 1.5}}, "alpha must be a number in [0, 1], got 1.5"),
        ({"name": "kd", "params": {"alpha": -0.1}}, "alpha must be a number in [0, 1]"),
        ({"name": "dkd", "params": {"alpha": -1.0}}, "alpha must be a number >= 0"),
        ({"name": "dkd", "params": {"beta": float("nan")}}, "beta must be a number >= 0, got nan"),
        ({"name": "dkd", "params": {"warmup_epochs": 2.5}}, "warmup_epochs must be an integer >= 0"),
        ({"name": "nkd", "params": {"gamma": "1.5"}}, "gamma must be a number >= 0, got '1.5'"),
        ({"name": "js", "params": {"temperature": True}}, "temperature must be a number > 0, got True"),
        ({"name": "ce", "params": {"label_smoothing": 2}}, "label_smoothing must be a number in [0, 1]"),
        ({"name": "at", "student": ["a"], "teacher": ["b"], "params": {"p": 0}}, "p must be a number > 0"),
        ({"name": "ofa", "student": ["a"], "params": {"eps": -1}}, "eps must be a number >= 0"),
        ({"name": "kd", "weight": -1}, "weight must be a finite number >= 0"),
        ({"name": "kd", "weight": float("nan")}, "inner"),  # refused by the config reader first
        ({"name": "kdd"}, "did you mean 'kd'"),
        ({"name": "dkd", "params": {"temprature": 2}}, "did you mean 'temperature'"),
    ],
)
def test_bad_term_values_are_one_line_config_errors(term: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(KDConfig, {"terms": [term]}, "distill.kd")
    line = info.value.one_line()
    if fragment == "inner":
        assert "weight must be a finite number" in line
    else:
        assert fragment in line, line
    assert "\n" not in line


def test_term_values_are_checked_when_built_from_python_too() -> None:
    with pytest.raises(ConfigError, match="weight must be a finite number"):
        DistillObjective([LossTerm("kd", float("inf"))])
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        KDConfig(temperature=float("inf")).validate()  # would zero the soft term: T^2 * KL(T=inf)
    with pytest.raises(ConfigError, match="alpha must be in"):
        KDConfig(alpha=float("nan")).validate()


def test_edges_of_the_ranges_are_accepted() -> None:
    cfg = from_dict(
        KDConfig,
        {
            "terms": [
                {"name": "kd", "weight": 0, "params": {"alpha": 1, "temperature": 0.5}},
                {"name": "dkd", "params": {"alpha": 2.0, "beta": 0, "warmup_epochs": 0}},
                {"name": "ce", "params": {"label_smoothing": 0.1}},
            ]
        },
    )
    assert [t.name for t in cfg.terms] == ["kd", "dkd", "ce"]


# --- shapes of logits and features ---


def test_ofa_refuses_teacher_logits_of_another_shape() -> None:
    student, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ShapeError) as info:
        ofa_term(student, torch.randn(4, 1), y)  # [N, 1] would broadcast silently
    assert "'ofa'" in info.value.one_line() and "[4, 1]" in info.value.one_line()
    loss = FEATURE_LOSSES.get("ofa")()
    loss.student_paths = ["features.1"]
    loss.build([torch.zeros(2, 8, 16)], [], num_classes=5)
    inputs = LossInputs(student, torch.randn(4, 3), y, [torch.randn(4, 8, 16)], [])
    with pytest.raises(ShapeError, match=r"teacher gives \[4, 3\], the student \[4, 5\]"):
        loss(inputs)


@pytest.mark.parametrize(
    ("name", "student", "teacher", "fragment"),
    [
        ("ofa", (2, 3, 4, 5, 6), None, "student feature 's.0' is [N, 3, 4, 5, 6]"),
        ("ofa", (2, 0, 16), None, "student feature 's.0' is [N, 0, 16]"),
        ("fitnet", (2, 8, 16), (2, 8, 4, 4), "student feature 's.0' [N, 8, 16] and teacher feature 't.0'"),
        ("fitnet", (2, 8, 2, 2, 2), (2, 8, 2, 2, 2), "is [N, 8, 2, 2, 2]"),
        ("at", (2, 8, 16), (2, 8, 4, 4), "differ in rank"),
        ("at", (2, 8), (2, 8, 4), "student feature 's.0' is [N, 8]; it needs [N, C, L] or [N, C, H, W]"),
        ("rkd", (2, 8), (2,), "teacher feature 't.0' is [2]; it needs [N, ...]"),
        ("rkd", (2, 0, 4), (2, 8), "student feature 's.0' is [N, 0, 4]"),
    ],
)
def test_feature_shapes_that_cannot_meet_name_the_modules(name, student, teacher, fragment) -> None:
    loss = FEATURE_LOSSES.get(name)()
    loss.student_paths, loss.teacher_paths = ["s.0"], ["t.0"]
    teachers = [torch.zeros(teacher)] if teacher is not None else []
    with pytest.raises(ShapeError) as info:
        loss.build([torch.zeros(student)], teachers, num_classes=4)
    assert fragment in info.value.one_line(), info.value.one_line()


def test_objective_gives_its_feature_terms_the_module_paths() -> None:
    objective = DistillObjective([LossTerm("fitnet", student=["features.1"], teacher=["stages.2"])])
    with pytest.raises(ShapeError, match=r"student feature 'features\.1' .* teacher feature 'stages\.2'"):
        objective.build({"features.1": torch.zeros(2, 4, 8)}, {"stages.2": torch.zeros(2, 4)}, 4)


def test_a_tapped_module_without_a_tensor_output_is_a_config_error() -> None:
    class Dicty(nn.Module):
        def forward(self, x):
            return {"x": x}

    model = nn.Sequential(Dicty())
    with FeatureTaps(model, ["0"]), pytest.raises(ConfigError, match="tapped module '0' returned dict"):
        model(torch.zeros(1, 2))


# --- non-finite teacher outputs and losses ---


class Poisoned(nn.Module):
    """``inner``'s logits, with ``value`` written into one sample from forward call ``after`` on."""

    def __init__(self, inner: nn.Module, after: int, value: float) -> None:
        super().__init__()
        self.inner, self.after, self.value, self.calls = inner, after, value, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(x)
        if self.calls >= self.after:
            out = out.clone()
            out[0, 1] = self.value
        return out


def _net(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn1d_small", 4, width=width)


@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_live_teacher_with_non_finite_logits_stops_naming_teacher_and_step(tmp_path, tones, value) -> None:
    # Call 1 is the fit check, then one call per step: the third step's logits are poisoned.
    teacher = Poisoned(_net(8), after=4, value=value)
    kd = KDConfig(cache_teacher=False)
    with pytest.raises(InputFileError) as info:
        distill(_net(), teacher, *tones, FAST, kd, out_dir=tmp_path, teacher_name="teacher t.pt")
    line = info.value.one_line()
    assert "the teacher t.pt gave NaN or infinite" in line and "step 3 (epoch 1, batch 3)" in line, line
    assert not any((tmp_path / name).exists() for name in ("best.pt", "last.pt", "train_state.pt"))


def test_cached_teacher_with_non_finite_logits_names_teacher_and_frame(tmp_path, tones) -> None:
    teacher = Poisoned(_net(8), after=2, value=float("inf"))
    with pytest.raises(InputFileError) as info:
        distill(_net(), teacher, *tones, FAST, KDConfig(), out_dir=tmp_path)
    line = info.value.one_line()
    assert "the teacher Poisoned gives NaN or infinite logits" in line and "first: frame" in line, line
    assert not list((tmp_path / "teacher_cache").glob("*.pt"))


def test_non_finite_loss_with_a_finite_teacher_is_a_divergence_at_its_step(tones) -> None:
    student = Poisoned(_net(), after=5, value=float("nan"))  # call 1: the fit check, then the steps
    with pytest.raises(ConfigError) as info:
        train_supervised(student, *tones, FAST)
    line = info.value.one_line()
    assert "training loss became NaN or infinite in step 4 (epoch 1, batch 4)" in line, line


def test_watch_reports_the_first_bad_step_and_syncs_only_when_asked() -> None:
    watch = FiniteWatch(torch.device("cpu"), "teacher x", every=4)
    fine, bad = torch.zeros(2, 3), torch.tensor([[float("nan"), 0.0]])
    watch.observe(1, 1, 1, [fine], torch.tensor(1.0))
    watch.observe(2, 1, 2, [fine], torch.tensor(float("inf")))
    watch.observe(3, 1, 3, [bad], torch.tensor(float("nan")))
    assert [watch.due(s) for s in (1, 3, 4, 8)] == [False, False, True, True]
    with pytest.raises(ConfigError, match=r"loss became NaN or infinite in step 2 \(epoch 1, batch 2\)"):
        watch.check(DistContext())
    watch.check(DistContext())  # the flags were consumed: nothing pending, nothing raised
    watch.observe(9, 2, 1, [bad], torch.tensor(1.0))
    with pytest.raises(InputFileError, match="the teacher x gave NaN"):
        watch.check(DistContext())
