"""Feature taps by module path, loss terms from config, and distillation with feature losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.config import from_dict
from edgekd.distill.features import FeatureTaps, resolve_module
from edgekd.distill.train import KDConfig, TrainConfig, distill
from edgekd.errors import ConfigError
from edgekd.models import create_model

FAST = TrainConfig(epochs=1, batch_size=64, lr=1e-2, device="cpu")


def _net(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=4, **kwargs)


def test_taps_record_outputs_without_changing_the_model() -> None:
    model = _net("cnn1d_small", width=4).eval()
    x = torch.randn(3, 2, 64)
    before = model(x)
    with FeatureTaps(model, ["features.0", "features.2"]) as taps:
        assert torch.equal(model(x), before)
        first, last = taps.collect()
        assert first.shape[:2] == (3, 4) and last.shape[0] == 3
        assert torch.equal(first, model.features[0](x))
    assert not model.features[0]._forward_hooks  # hooks gone afterwards


def test_wrong_path_lists_valid_paths_and_suggests() -> None:
    model = _net("cnn1d_small", width=4)
    with pytest.raises(ConfigError) as info:
        FeatureTaps(model, ["feature.1"], "student")
    line = info.value.one_line()
    assert "student has no module 'feature.1'" in line and "did you mean 'features.1'" in line
    assert "features.0.0" in line and "head" in line
    with pytest.raises(ConfigError, match="no module ''"):
        resolve_module(model, "")


def test_terms_from_yaml_mapping() -> None:
    cfg = from_dict(
        KDConfig,
        {
            "terms": [
                {"name": "dkd", "params": {"beta": 2.0, "warmup_epochs": 2}},
                {"name": "ce", "weight": 0.5},
                {"name": "fitnet", "student": ["features.1"], "teacher": ["stages.1"]},
            ]
        },
    )
    assert [t.name for t in cfg.terms] == ["dkd", "ce", "fitnet"]
    assert [t.resolved_weight() for t in cfg.terms] == [1.0, 0.5, 100.0]
    assert cfg.needs_teacher_features
    assert cfg.describe().startswith("1*dkd(beta=2.0, warmup_epochs=2) + 0.5*ce() + 100*fitnet()")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"terms": [{"name": "dkdd"}]}, "did you mean 'dkd'"),
        ({"terms": [{"name": "dkd", "params": {"betta": 1}}]}, "did you mean 'beta'"),
        ({"terms": [{"name": "fitnet", "student": ["a"]}]}, "in pairs"),
        ({"terms": [{"name": "fitnet"}]}, "student module paths"),
        ({"terms": [{"name": "kd", "student": ["a"]}]}, "takes no module paths"),
        ({"terms": [{"name": "ofa", "student": ["a"], "teacher": ["b"]}]}, "uses no teacher features"),
        ({"terms": [{"name": "kd"}], "temperature": 2.0}, "both terms and loss"),
        ({"loss": "fitnet"}, "feature loss and needs module paths"),
        ({"terms": [{"weight": 1}]}, "name"),
    ],
)
def test_bad_terms_are_one_line_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(KDConfig, data)
    assert message in info.value.one_line()


def test_simple_form_translates_to_terms() -> None:
    assert [(t.name, t.weight) for t in KDConfig().resolved_terms()] == [("kd", 1.0)]
    terms = KDConfig(loss="dist", temperature=2.0, alpha=0.6).resolved_terms()
    assert [(t.name, t.weight, t.params) for t in terms] == [
        ("dist", 0.6, {"temperature": 2.0}),
        ("ce", pytest.approx(0.4), {}),
    ]


class BlackBoxTeacher:
    """Stands for the ONNX Runtime teacher: logits only, no modules to hook."""

    supports_features = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)


def test_feature_loss_with_black_box_teacher_is_refused(tones) -> None:
    kd = KDConfig(
        terms=from_dict(
            KDConfig, {"terms": [{"name": "at", "student": ["features.1"], "teacher": ["stages.1"]}]}
        ).terms
    )
    teacher = BlackBoxTeacher(_net("resnet1d", width=8, blocks=[1, 1, 1]))
    with pytest.raises(ConfigError) as info:
        distill(_net("cnn1d_small", width=4), teacher, *tones, FAST, kd)
    assert "gives no intermediate features" in info.value.one_line()


def test_logit_losses_work_with_black_box_teacher(tones) -> None:
    teacher = BlackBoxTeacher(_net("resnet1d", width=8, blocks=[1, 1, 1]))
    kd = from_dict(KDConfig, {"terms": [{"name": "ofa", "student": ["features.1"]}, {"name": "dkd"}]})
    result = distill(_net("cnn1d_small", width=4), teacher, *tones, FAST, kd)
    assert len(result.history) == 1 and result.best_val_accuracy > 0


def test_distill_with_feature_terms_trains_projectors_and_leaves_models_clean(tones) -> None:
    teacher = _net("resnet1d", width=8, blocks=[1, 1, 1])
    student = _net("cnn1d_small", width=4)
    kd = from_dict(
        KDConfig,
        {
            "terms": [
                {"name": "kd"},
                {"name": "fitnet", "student": ["features.1"], "teacher": ["stages.1"]},
                {"name": "at", "student": ["features.2"], "teacher": ["stages.2"]},
                {"name": "rkd", "student": ["head.1"], "teacher": ["head.1"]},
                {"name": "ofa", "student": ["features.0", "features.1"]},
            ]
        },
    )
    result = distill(student, teacher, *tones, FAST, kd)
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    for model in (student, teacher):
        assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ConfigError, match=r"teacher has no module 'stage\.1'"):
        bad = from_dict(
            KDConfig, {"terms": [{"name": "fitnet", "student": ["features.1"], "teacher": ["stage.1"]}]}
        )
        distill(_net("cnn1d_small", width=4), teacher, *tones, FAST, bad)


def test_demo_recipe_simple_form_still_loads() -> None:
    from edgekd.pipeline.recipe import load_recipe

    kd = load_recipe("modrec").distill.kd
    assert (kd.loss, kd.temperature, kd.alpha, kd.terms) == ("kd", 4.0, 0.7, [])
    assert kd.describe() == "loss kd T=4 alpha=0.7"
    recipe = load_recipe("modrec", ["distill.kd.loss=nkd", "distill.kd.alpha=0.5"])
    assert [(t.name, t.weight) for t in recipe.distill.kd.resolved_terms()] == [("nkd", 0.5), ("ce", 0.5)]


def test_simple_form_with_another_logit_loss_trains(tones) -> None:
    teacher = _net("resnet1d", width=8, blocks=[1, 1, 1])
    result = distill(
        _net("cnn1d_small", width=4), teacher, *tones, FAST, KDConfig(loss="js", temperature=2.0)
    )
    assert result.history[0]["train_loss"] > 0


def test_tap_on_a_module_that_never_runs_is_a_config_error() -> None:
    model = _net("cnn1d_small", width=4)
    model.unused = nn.Linear(2, 2)
    with FeatureTaps(model, ["unused"]) as taps:
        model(torch.randn(2, 2, 64))
        with pytest.raises(ConfigError, match="did not run"):
            taps.collect()
