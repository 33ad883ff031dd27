"""The built-in zoo and create_model: shapes, sizes, name resolution and error lines."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from edgekd.errors import ConfigError, RuntimeUnavailable
from edgekd.models import MODELS, count_macs, count_params, create_model

STUDENTS = ("cnn1d_small", "mobilenet1d")
# Every network of the zoo; an ensemble is built from members (tests/models/test_ensemble.py).
ZOO = [name for name in MODELS.names() if name != "ensemble"]


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("shape", [(3, 2, 128), (1, 2, 64), (2, 2, 16)])
def test_zoo_forward_shapes(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=8).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], 8)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_trains_in_batch_mode_and_takes_other_channel_counts(name: str) -> None:
    model = create_model(f"edgekd:{name}", num_classes=3, in_channels=4)
    out = model(torch.randn(2, 4, 32))
    out.sum().backward()
    assert out.shape == (2, 3)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_exports_with_dynamic_batch_and_length(name: str) -> None:
    # torch.export fails on data-dependent control flow and on ops that pin the length,
    # which is what ONNX export with dynamic axes needs.
    model = create_model(name, num_classes=8).eval()
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("length", min=16, max=4096)}
    program = torch.export.export(model, (torch.randn(3, 2, 128),), dynamic_shapes={"x": dims})
    x = torch.randn(5, 2, 40)
    torch.testing.assert_close(program.module()(x), model(x))


def test_default_sizes_teacher_and_students() -> None:
    teacher = count_params(create_model("resnet1d", 8))
    assert 150_000 <= teacher <= 400_000
    for name in STUDENTS:
        student = count_params(create_model(name, 8))
        assert 5_000 <= student <= 25_000, name
        assert teacher >= 10 * student, name


def test_width_arguments_scale_models() -> None:
    assert count_params(create_model("resnet1d", 8, width=16)) < count_params(create_model("resnet1d", 8))
    assert count_params(create_model("mobilenet1d", 8, width_mult=2.0)) > count_params(
        create_model("mobilenet1d", 8)
    )
    deeper = create_model("resnet1d", 8, blocks=[1, 1, 1, 1], multipliers=[1, 2, 4, 4])
    assert deeper(torch.randn(2, 2, 16)).shape == (2, 8)


def test_mobilenet1d_full_length_stem_keeps_parameters_and_doubles_work() -> None:
    strided = create_model("mobilenet1d", 8, width_mult=0.7)
    full = create_model("mobilenet1d", 8, width_mult=0.7, stem_stride=1)
    assert count_params(full) == count_params(strided) == 9_872
    # Every layer then runs on twice the samples: MACs double, except the head's.
    assert count_macs(full, (2, 128)) > 1.95 * count_macs(strided, (2, 128))
    with torch.no_grad():
        first = full.eval().features[0](torch.randn(1, 2, 128))
    assert first.shape[-1] == 128
    wide = create_model("mobilenet1d", 8, stem_kernel=7)
    assert wide.features[0][0].kernel_size == (7,)
    with pytest.raises(ConfigError, match="stem_stride must be a positive integer"):
        create_model("mobilenet1d", 8, stem_stride=0)


def test_resnet1d_strides_set_each_stage_length() -> None:
    default = create_model("resnet1d", 8)
    full = create_model("resnet1d", 8, strides=[1, 2, 2]).eval()
    x = torch.randn(1, 2, 128)
    with torch.no_grad():
        assert full.stages[0](full.stem(x)).shape[-1] == 128
        assert default.eval().stages[0](default.stem(x)).shape[-1] == 64
    # The first stage keeps 32 channels at stride 1: its shortcut needs no projection.
    assert count_params(full) == count_params(default) - 32 * 32 - 2 * 32
    with pytest.raises(ConfigError, match="one entry per stage"):
        create_model("resnet1d", 8, strides=[1, 2])
    with pytest.raises(ConfigError, match="strides must be a positive integer"):
        create_model("resnet1d", 8, strides=[0, 2, 2])


def test_unknown_model_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("resnet1", 8)
    assert "did you mean 'resnet1d'" in info.value.one_line()


def test_unknown_source_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown model source 'tim'"):
        create_model("tim:resnet50", 8)


def test_bad_keyword_names_model_and_argument() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("resnet1d", 8, widht=64)
    line = info.value.one_line()
    assert "'resnet1d'" in line and "'widht'" in line and "did you mean 'width'" in line


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"width": 0}, "width must be a positive integer"),
        ({"width": "wide"}, "width must be a positive integer"),
    ],
)
def test_bad_values_are_config_errors(kwargs: dict, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        create_model("cnn1d_small", 8, **kwargs)


def test_bad_dropout_and_mismatched_stages() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        create_model("mobilenet1d", 8, dropout=1.5)
    with pytest.raises(ConfigError, match="same length"):
        create_model("resnet1d", 8, blocks=[1, 1], multipliers=[1, 2, 4])


def test_module_factory_is_imported_and_called() -> None:
    model = create_model("module:tests.models.tiny_factory:build", num_classes=5, in_channels=3, hidden=6)
    assert model(torch.randn(2, 3, 20)).shape == (2, 5)
    assert model[0].out_channels == 6


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("module:tests.models.no_such_module:build", "cannot import"),
        ("module:tests.models.tiny_factory:biuld", "did you mean 'build'"),
        ("module:tests.models.tiny_factory:NOT_CALLABLE", "no callable"),
        ("module:tests.models.tiny_factory:not_a_model", "not a torch.nn.Module"),
        ("module:tests.models.tiny_factory", "not module:pkg.mod:factory"),
    ],
)
def test_module_factory_errors_are_one_line(name: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_model(name, 4)
    assert text in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_module_factory_bad_keyword() -> None:
    with pytest.raises(ConfigError, match="has no argument 'hiden'"):
        create_model("module:tests.models.tiny_factory:build", 4, hiden=3)


def test_timm_without_timm_is_a_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # timm is a test extra, so its absence is simulated: a None entry in sys.modules makes
    # importlib.util.find_spec("timm") return None and `import timm` raise ImportError.
    monkeypatch.setitem(sys.modules, "timm", None)
    assert importlib.util.find_spec("timm") is None
    with pytest.raises(RuntimeUnavailable) as info:
        create_model("timm:efficientnet_b2", 4)
    assert "timm" in info.value.one_line() and "not installed" in info.value.one_line()
