"""timm models: built without downloads, started from local weights files (weights_only).

The networks are timm's own tiny test members (``test_efficientnet``, ``test_convnext``), so
each test builds and saves them in well under a second. Weights from the hub and its cache
(``pretrained: true/auto``) are tested in ``test_pretrained_hub.py``.
"""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import pytest
import torch

from edgekd.errors import ConfigError, InputFileError
from edgekd.models import create_model, load_checkpoint, save_checkpoint
from edgekd.models.weights import load_pretrained_weights, read_state_dict

timm = pytest.importorskip("timm", reason="timm is not installed (pip install 'edgekd[vision]')")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Offline for huggingface_hub, and any connection attempt fails the test loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _reference(name: str = "test_efficientnet", num_classes: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=num_classes)
    model.train()(torch.randn(4, 3, 32, 32))  # BatchNorm statistics away from their init values
    return model.eval()  # safe: nn.Module.eval(), inference mode


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_state_dict_round_trip(tmp_path: Path, suffix: str) -> None:
    reference = _reference()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(reference.state_dict(), str(path))
    else:
        torch.save(reference.state_dict(), path)
    model = create_model("timm:test_efficientnet", 4, 3, pretrained_path=str(path))
    assert _same_outputs(model, reference)


def test_imagenet_head_is_reinitialised_for_another_class_count(tmp_path: Path) -> None:
    imagenet = _reference(num_classes=10)
    path = tmp_path / "imagenet.pth"
    torch.save(imagenet.state_dict(), path)
    model = timm.create_model("test_efficientnet", num_classes=4)
    fresh_head = model.classifier.weight.detach().clone()
    assert load_pretrained_weights(model, path, "timm:test_efficientnet") == [
        "classifier.bias",
        "classifier.weight",
    ]
    assert torch.equal(model.conv_stem.weight, imagenet.conv_stem.weight)
    assert torch.equal(model.classifier.weight, fresh_head)


def test_training_checkpoint_prefers_ema_and_drops_wrapper_prefixes(tmp_path: Path) -> None:
    plain, ema = _reference(), _reference()
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(1.0)
    wrapped = {f"module.{k}": v for k, v in plain.state_dict().items()}
    path = tmp_path / "train.pth.tar"
    torch.save({"epoch": 3, "state_dict": wrapped, "state_dict_ema": ema.state_dict()}, path)
    assert torch.equal(read_state_dict(path)["conv_stem.weight"], ema.conv_stem.weight)


def test_earlier_edgekd_run_starts_a_model_and_the_path_is_not_needed_to_rebuild(tmp_path: Path) -> None:
    reference = _reference()
    weights = tmp_path / "init.pth"
    torch.save(reference.state_dict(), weights)
    kwargs = {"pretrained_path": str(weights), "drop_rate": 0.1}
    model = create_model("timm:test_efficientnet", 4, 3, **kwargs)
    saved = tmp_path / "student.pt"
    save_checkpoint(
        saved,
        model,
        model_name="timm:test_efficientnet",
        model_kwargs=kwargs,
        num_classes=4,
        in_channels=3,
        input_shape=(3, 32, 32),
        class_names=["NORMAL", "DRUSEN", "CNV", "DME"],
    )
    weights.unlink()  # the run's own file holds the weights; the initial file may be gone
    rebuilt, meta = load_checkpoint(saved)
    assert meta.model_kwargs == {"drop_rate": 0.1}
    assert _same_outputs(rebuilt, reference)
    # ... and the checkpoint itself starts another model (weights_only, nested state_dict).
    again = create_model("timm:test_efficientnet", 4, 3, pretrained_path=str(saved))
    assert _same_outputs(again, reference)


def test_weights_of_another_architecture_fail_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "convnext.pth"
    torch.save(_reference("test_convnext").state_dict(), path)
    with pytest.raises(ConfigError) as info:
        create_model("timm:test_efficientnet", 4, 3, pretrained_path=str(path))
    line = info.value.one_line()
    assert "\n" not in line and len(line) < 500
    assert f"weights {path} do not fit model 'timm:test_efficientnet'" in line
    assert "missing (conv_stem.weight" in line and "unexpected (stem.0.weight" in line


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv_stem.weight": Payload()}, protocol=2))
    with pytest.raises(InputFileError, match="refused: the file is not plain weights"):
        create_model("timm:test_efficientnet", 4, 3, pretrained_path=str(path))
    missing = tmp_path / "none.safetensors"
    with pytest.raises(InputFileError, match="does not exist"):
        create_model("timm:test_efficientnet", 4, 3, pretrained_path=str(missing))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("timm:no_such_model", "no timm model is close to 'no_such_model'; list a family with"),
        ("timm:efficientnet_b22", "did you mean 'efficientnet_b2'?"),
    ],
)
def test_unknown_timm_name_suggests(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_model(name, 4, 3)
    line = info.value.one_line()
    assert line.startswith(f"unknown timm model {name.split(':')[1]!r}") and expected in line
    assert "\n" not in line and len(line) < 300


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("checkpoint_path", "w.pth"),
        ("cache_dir", "/tmp/hub"),
        ("pretrained_cfg", {"file": "w.pth"}),
        ("pretrained_cfg_overlay", {"url": "https://example.com/w.pth"}),
    ],
)
def test_timm_arguments_that_name_files_are_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        create_model("timm:test_efficientnet", 4, 3, pretrained=True, **{key: value})
    line = info.value.one_line()
    assert f"{key!r} is not supported" in line
    assert "set pretrained: true" in line and "pretrained_path" in line


def test_cli_reports_mismatched_weights_in_one_line_before_any_work(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli.main import cli

    weights = tmp_path / "convnext.pth"
    torch.save(_reference("test_convnext").state_dict(), weights)
    (tmp_path / "OCT" / "train" / "CNV").mkdir(parents=True)
    out = tmp_path / "run"
    sets = [
        f"data.path={tmp_path / 'OCT'}",
        "teacher.model=timm:test_convnext",
        "student.model=timm:test_efficientnet",
        f"student.kwargs.pretrained_path={weights}",
    ]
    result = CliRunner().invoke(
        cli, ["run", "kd-oct", "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "do not fit model 'timm:test_efficientnet'" in lines[0]
    assert not out.exists()  # the models are checked before anything is written
