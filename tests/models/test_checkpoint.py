"""Checkpoints: exact round trip, manifest, and refusal of foreign or malicious files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from edgekd.artifacts import read_manifest
from edgekd.errors import InputFileError
from edgekd.models import count_params, create_model, load_checkpoint, save_checkpoint
from edgekd.models.trust import UntrustedFileError, trusted_code

CLASSES = ["bpsk", "qpsk", "8psk", "qam16"]


def _save(path: Path, name: str = "cnn1d_small", **kwargs) -> torch.nn.Module:
    torch.manual_seed(1)
    model = create_model(name, len(CLASSES), 2, **kwargs)
    # One train-mode pass so BatchNorm running statistics differ from their init values.
    model.train()(torch.randn(8, 2, 64))
    save_checkpoint(
        path,
        model,
        model_name=name,
        model_kwargs=kwargs,
        num_classes=len(CLASSES),
        in_channels=2,
        input_shape=(2, 64),
        class_names=CLASSES,
        metrics={"val_accuracy": 0.5},
        config={"train": {"epochs": 1}},
    )
    return model.eval()


@pytest.mark.parametrize(
    ("name", "kwargs"), [("cnn1d_small", {"width": 8}), ("resnet1d", {"blocks": (1, 1, 1)})]
)
def test_round_trip_gives_identical_outputs(tmp_path: Path, name: str, kwargs: dict) -> None:
    path = tmp_path / "student.pt"
    original = _save(path, name, **kwargs)
    loaded, meta = load_checkpoint(path)
    x = torch.randn(3, 2, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    assert not loaded.training
    assert meta.model_name == name and meta.class_names == CLASSES
    assert meta.input_shape == (2, 64) and meta.num_classes == 4 and meta.in_channels == 2
    assert meta.model_kwargs == {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    assert meta.metrics["params"] == count_params(original) and meta.metrics["val_accuracy"] == 0.5


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_file(tmp_path: Path, value: float) -> None:
    path = tmp_path / "diverged.pt"
    model = _save(path)
    payload = torch.load(path, weights_only=True)
    name = next(k for k, v in model.named_parameters() if v.ndim > 1)
    payload["state_dict"][name][0] = value
    torch.save(payload, path)
    with pytest.raises(
        InputFileError, match=rf"diverged\.pt has NaN/Inf weights in 1 tensor\(s\) \({name}\)"
    ):
        load_checkpoint(path)


def test_a_minus_inf_buffer_is_not_a_bad_weight(tmp_path: Path) -> None:
    """Attention masks are buffers holding -inf on purpose; only NaN is refused there."""
    path = tmp_path / "student.pt"
    _save(path)
    payload = torch.load(path, weights_only=True)
    mean = next(k for k in payload["state_dict"] if k.endswith("running_mean"))
    payload["state_dict"][mean][0] = float("-inf")
    torch.save(payload, path)
    load_checkpoint(path)  # accepted
    payload["state_dict"][mean][0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(InputFileError, match="NaN/Inf weights"):
        load_checkpoint(path)


def test_manifest_is_written_with_params(tmp_path: Path) -> None:
    path = tmp_path / "student.pt"
    _save(path)
    manifest = read_manifest(path)
    assert manifest["kind"] == "checkpoint"
    assert manifest["metrics"]["params"] > 0 and manifest["metrics"]["macs"] > 0
    assert manifest["model"]["model_name"] == "cnn1d_small"
    assert manifest["config"] == {"train": {"epochs": 1}}
    assert not list(tmp_path.glob(".*.tmp"))


def test_module_factory_checkpoint_round_trip(tmp_path: Path) -> None:
    name = "module:tests.models.tiny_factory:build"
    model = create_model(name, 3, 2, hidden=5)
    save_checkpoint(
        tmp_path / "m.pt", model, model_name=name, model_kwargs={"hidden": 5},
        num_classes=3, in_channels=2, input_shape=(2, 32), class_names=["a", "b", "c"],
    )  # fmt: skip
    # A file may not choose code: the module must be trusted by the person loading it.
    with pytest.raises(
        UntrustedFileError, match=r"m\.pt names model 'module:tests\.models\.tiny_factory:build'"
    ):
        load_checkpoint(tmp_path / "m.pt")
    with trusted_code(["tests.models.tiny_factory"]):
        loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 2, 32)
    assert torch.equal(loaded(x), model.eval()(x))


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"members": [value]}
    return value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_name", 7, "model_name must be a model name"),
        ("model_kwargs", {"width": torch.zeros(2)}, "model_kwargs must be a mapping of plain values"),
        ("model_kwargs", [1, 2], "model_kwargs must be a mapping"),
        ("model_kwargs", _nested(200), "model_kwargs must be a mapping of plain values"),
        ("num_classes", "4", "num_classes must be a positive integer"),
        ("num_classes", 0, "num_classes must be a positive integer"),
        ("in_channels", True, "in_channels must be a positive integer"),
        ("input_shape", ["2", 64], "input_shape must be a list of positive integers"),
        ("input_shape", [3, 64], "does not start with in_channels 2"),
        ("input_shape", [], "input_shape must be a list"),
        ("class_names", ["a", 1, "b", "c"], "class_names must be a list of strings"),
        ("class_names", ["a", "b"], "has 2 names for num_classes 4"),
        ("state_dict", {"w": [1.0]}, "state_dict must map parameter names to tensors"),
    ],
)
def test_fields_of_the_wrong_type_or_range_are_refused_at_the_door(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    path = tmp_path / "student.pt"
    _save(path)
    payload = torch.load(path, weights_only=True)
    payload[field] = value
    torch.save(payload, path)
    with pytest.raises(InputFileError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in info.value.one_line()


def test_a_width_too_large_to_allocate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "student.pt"
    _save(path)
    payload = torch.load(path, weights_only=True)
    payload["model_kwargs"] = {"width": 2**40}
    torch.save(payload, path)
    with pytest.raises(InputFileError, match="do not build a network") as info:
        load_checkpoint(path)
    assert str(path) in info.value.one_line()


@pytest.mark.parametrize("width", [2**20, 2**40])
def test_a_forged_width_is_refused_before_anything_is_allocated(tmp_path: Path, monkeypatch, width) -> None:
    # 2**20 channels build on the meta device (96 TB of weights), 2**40 overflow even there:
    # both are refused before the real build, which would ask the allocator for terabytes.
    path = tmp_path / "student.pt"
    _save(path)
    payload = torch.load(path, weights_only=True)
    payload["model_kwargs"] = {"width": width}
    torch.save(payload, path)
    import edgekd.models.checkpoint as checkpoint

    real = checkpoint.create_model

    def meta_only(*args, **kwargs):
        assert torch.empty(0).device.type == "meta", "a real build was attempted"
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "create_model", meta_only)
    with pytest.raises(InputFileError, match="do not build a network"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(bytes(range(256)) * 7)
    with pytest.raises(InputFileError) as info:
        load_checkpoint(path)
    assert "junk.pt" in info.value.one_line() and "\n" not in info.value.one_line()


@pytest.mark.parametrize("payload", [{"weights": torch.zeros(3)}, torch.zeros(2, 2), [1, 2, 3]])
def test_torch_file_of_another_shape_is_refused(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(InputFileError, match="not an edgekd checkpoint"):
        load_checkpoint(path)


def test_state_dict_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "student.pt"
    _save(path)
    payload = torch.load(path, weights_only=True)
    payload["model_kwargs"] = {"width": 32}  # the weights were trained at width 16
    torch.save(payload, path)
    with pytest.raises(InputFileError, match="weights do not fit"):
        load_checkpoint(path)


def test_unbuildable_model_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "student.pt"
    _save(path)
    payload = torch.load(path, weights_only=True)
    payload["model_name"] = "cnn1d_smal"
    torch.save(payload, path)
    with pytest.raises(InputFileError, match="cannot be rebuilt"):
        load_checkpoint(path)


_MARKER: list[Path] = []


def _touch_marker() -> None:
    _MARKER[0].touch()


class _Exploit:
    """Unpickling this calls _touch_marker: what an attacker's pickle would do."""

    def __reduce__(self):
        return (_touch_marker, ())


def test_pickle_that_would_execute_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    _MARKER[:] = [marker]
    path = tmp_path / "evil.pt"
    good = tmp_path / "good.pt"
    _save(good)
    payload = torch.load(good, weights_only=True)
    payload["metrics"] = {"note": _Exploit()}
    torch.save(payload, path)

    # The payload is live: a plain unpickler runs it.
    pickle.loads(pickle.dumps(_Exploit()))
    assert marker.exists()
    marker.unlink()

    with pytest.raises(InputFileError) as info:
        load_checkpoint(path)
    assert not marker.exists()
    assert "refused" in info.value.one_line()
