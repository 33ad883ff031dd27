"""Checkpoints: exact round trip, manifest, and refusal of foreign or malicious files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from edgekd.artifacts import read_manifest
from edgekd.errors import InputFileError
from edgekd.models import count_params, create_model, load_checkpoint, save_checkpoint

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
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 2, 32)
    assert torch.equal(loaded(x), model.eval()(x))


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
