"""``pretrained: true/auto`` for timm models: the hub cache, the offline error, the auto fallback,
and the rule that a file never makes edgekd download.

Nothing here reaches a network: every socket connection fails the test, and the hub cache
(``HF_HUB_CACHE``) and torch's cache (``TORCH_HOME``) are empty folders under ``tmp_path`` that
a test fills in the layout huggingface_hub writes. The networks are timm's tiny test members.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch

from edgekd.errors import ConfigError, InputFileError
from edgekd.models import create_model, load_checkpoint, save_checkpoint, timm_hub, timm_models
from edgekd.models.timm_hub import PretrainedUnavailable, WeightsSource, cached_weights
from edgekd.models.trust import UntrustedFileError, reading_file

timm = pytest.importorskip("timm", reason="timm is not installed (pip install 'edgekd[vision]')")
safetensors_torch = pytest.importorskip("safetensors.torch")

CLASSES = ["NORMAL", "DRUSEN", "CNV", "DME"]
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as the hub cache names them


@pytest.fixture(autouse=True)
def hub(monkeypatch, tmp_path: Path) -> Path:
    """Empty caches under tmp_path, HF_HUB_OFFLINE=1, and any connection attempt fails the test."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(timm_models, "_announced", set())

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or args or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return cache


@pytest.fixture
def online(monkeypatch) -> None:
    """HF_HUB_OFFLINE unset (here and in an already imported huggingface_hub): edgekd would ask
    the network if anything made it; the sockets still refuse."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def timm_calls(monkeypatch) -> list[dict]:
    """Every timm.create_model call edgekd makes: its name and arguments."""
    calls: list[dict] = []
    real = timm.create_model

    def spy(name, **kwargs):
        calls.append({"name": name, **kwargs})
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    return calls


def _hub_repo(cache: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` in huggingface_hub's cache layout, refs/main pointing at it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(SNAPSHOT)
    snapshot = root / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    return snapshot


def _imagenet_like(name: str) -> torch.nn.Module:
    """``name`` with 1000 classes and weights no fresh build has (seeded, then shifted)."""
    torch.manual_seed(123)
    model = timm.models.create_model(name, num_classes=1000)  # not through the spy
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    return model.eval()  # safe: nn.Module.eval(), inference mode


def _one_line(exc: BaseException) -> str:
    line = exc.one_line()
    assert "\n" not in line and "Traceback" not in line
    return line


# --- (a) offline, not in the cache: one line, exit 2 -------------------------------------------


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("test_efficientnet", "timm/test_efficientnet.r160_in1k on the Hugging Face hub"),
        ("test_convnext2.r160_in1k", "timm/test_convnext2.r160_in1k on the Hugging Face hub"),
        ("hf-hub:timm/test_vit.r160_in1k", "timm/test_vit.r160_in1k on the Hugging Face hub"),
    ],
)
def test_offline_pretrained_true_fails_in_one_line(
    hub: Path, timm_calls: list, name: str, where: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(PretrainedUnavailable) as info:
        create_model(f"timm:{name}", 4, 3, pretrained=True)
    assert time.perf_counter() - started < 5.0  # no retries, no waiting for a network
    assert info.value.exit_code == 2
    line = _one_line(info.value)
    assert line.startswith(f"model 'timm:{name}': cannot get its pretrained weights ({where}): ")
    assert "HF_HUB_OFFLINE is set" in line and f"no copy is in the hub cache {hub}" in line
    assert "set pretrained_path: /path/to/weights.safetensors" in line
    assert "HF_HUB_CACHE or HF_HOME" in line
    assert timm_calls == []  # refused before timm was asked for anything


def test_offline_model_without_weights_and_failed_download_fail_in_one_line(timm_calls, monkeypatch) -> None:
    with pytest.raises(PretrainedUnavailable) as info:
        create_model("timm:test_mambaout", 4, 3, pretrained=True)
    assert "timm has no pretrained weights for 'test_mambaout'" in _one_line(info.value)
    # A download that fails inside timm (here: huggingface_hub's offline refusal) is one line too.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(timm_models, "offline_reason", lambda url: None)
    with pytest.raises(PretrainedUnavailable) as info:
        create_model("timm:test_efficientnet", 4, 3, pretrained=True)
    line = _one_line(info.value)
    assert line.startswith("model 'timm:test_efficientnet': cannot get its pretrained weights: ")
    assert "pretrained_path" in line and "network access attempted" not in line
    assert [call["pretrained"] for call in timm_calls] == [True]


def test_unreachable_hub_is_found_in_seconds_not_minutes(online, timm_calls, monkeypatch) -> None:
    """Without HF_HUB_OFFLINE, one bounded HEAD request decides; huggingface_hub's retries
    (about 45 s per model offline) never start."""

    def no_dns(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_dns)
    with pytest.raises(PretrainedUnavailable) as info:
        create_model("timm:test_efficientnet", 4, 3, pretrained=True)
    assert "huggingface.co cannot be reached (Name or service not known)" in _one_line(info.value)
    assert timm_calls == []

    def silent(*args, **kwargs):  # a network that swallows packets: the probe's bound ends it
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", silent)
    monkeypatch.setattr(timm_hub, "PROBE_SECONDS", 0.2)
    started = time.perf_counter()
    assert (
        timm_hub.offline_reason("https://huggingface.co")
        == "huggingface.co cannot be reached (no answer in 0.2 s)"
    )
    assert time.perf_counter() - started < 3.0


def test_cli_reports_offline_pretrained_in_one_line_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli.main import cli

    (tmp_path / "OCT" / "train" / "CNV").mkdir(parents=True)
    out = tmp_path / "run"
    sets = [
        f"data.path={tmp_path / 'OCT'}",
        "teacher.model=timm:test_convnext",
        "teacher.kwargs.pretrained=true",
        "student.model=timm:test_efficientnet",
    ]
    result = CliRunner().invoke(
        cli, ["run", "kd-oct", "--out", str(out), *[a for s in sets for a in ("--set", s)]]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "model 'timm:test_convnext': cannot get its pretrained weights" in lines[0]
    assert "HF_HUB_OFFLINE is set" in lines[0] and "pretrained_path" in lines[0]
    assert not out.exists()  # refused before anything was written


# --- (b) a cache hit: the weights on disk, no network ------------------------------------------


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "online"])
def test_weights_in_the_hub_cache_are_loaded_without_network(
    hub: Path, timm_calls: list, request, offline: bool
) -> None:
    if not offline:
        request.getfixturevalue("online")  # a cache hit needs no probe either: sockets still refuse
    imagenet = _imagenet_like("test_efficientnet")
    weights = _hub_repo(hub, "timm/test_efficientnet.r160_in1k") / "model.safetensors"
    safetensors_torch.save_file(imagenet.state_dict(), str(weights))

    model = create_model("timm:test_efficientnet", 4, 3, pretrained=True)
    assert torch.equal(model.conv_stem.weight, imagenet.conv_stem.weight)
    assert torch.equal(model.bn1.running_var, imagenet.bn1.running_var)
    assert model.classifier.weight.shape == (4, imagenet.classifier.weight.shape[1])  # a new head
    # Through timm's own local-file override, pointing at the cached file.
    (call,) = timm_calls
    assert call["pretrained"] is True and call["pretrained_cfg_overlay"]["file"] == str(weights)


def test_online_timm_downloads_into_the_hub_cache_edgekd_reads(hub: Path, online, monkeypatch) -> None:
    """Not cached and the hub answers: timm downloads as it always does, into the cache folder
    edgekd looks in (a stand-in for huggingface_hub's download writes the file; no socket)."""
    imagenet = _imagenet_like("test_efficientnet")
    asked: list[tuple] = []

    def download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        asked.append((repo_id, filename, cache_dir))
        path = _hub_repo(Path(cache_dir), repo_id) / filename
        safetensors_torch.save_file(imagenet.state_dict(), str(path))
        return str(path)

    monkeypatch.setattr(timm_models, "offline_reason", lambda url: None)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", download)
    model = create_model("timm:test_efficientnet", 4, 3, pretrained=True)
    assert asked == [("timm/test_efficientnet.r160_in1k", "model.safetensors", str(hub))]
    assert torch.equal(model.conv_stem.weight, imagenet.conv_stem.weight)
    # The next build is a cache hit: no download.
    create_model("timm:test_efficientnet", 4, 3, pretrained=True)
    assert len(asked) == 1


def test_a_pretrained_tag_picks_its_own_cached_weights(hub: Path) -> None:
    imagenet = _imagenet_like("test_convnext2")
    weights = _hub_repo(hub, "timm/test_convnext2.r160_in1k") / "model.safetensors"
    safetensors_torch.save_file(imagenet.state_dict(), str(weights))
    model = create_model("timm:test_convnext2.r160_in1k", 4, 3, pretrained=True)
    assert torch.equal(model.stem[0].weight, imagenet.stem[0].weight)
    with pytest.raises(ConfigError, match="timm model 'test_convnext2' has no pretrained tag 'in22k'"):
        create_model("timm:test_convnext2.in22k", 4, 3)


def test_hf_hub_model_is_built_from_the_cache_and_reloaded_from_a_checkpoint(
    hub: Path, tmp_path: Path
) -> None:
    """An ``hf-hub:`` model's config and weights from the cache; its checkpoint rebuilds from the
    cache only, and says so in one line once the cache is gone."""
    imagenet = _imagenet_like("test_vit")
    timm.models.save_for_hf(imagenet, _hub_repo(hub, "someone/tiny-vit"), safe_serialization=True)
    name = "timm:hf-hub:someone/tiny-vit"
    model = create_model(name, 4, 3, pretrained=True)
    assert torch.equal(model.patch_embed.proj.weight, imagenet.patch_embed.proj.weight)
    random = create_model(name, 4, 3)  # pretrained off: the cached config.json is enough
    assert type(random) is type(model) and not torch.equal(
        random.patch_embed.proj.weight, imagenet.patch_embed.proj.weight
    )

    saved = tmp_path / "teacher.pt"
    kwargs = {"pretrained": True}
    save_checkpoint(saved, model, model_name=name, model_kwargs=kwargs, num_classes=4, in_channels=3,
                    input_shape=(3, 32, 32), class_names=CLASSES)  # fmt: skip
    rebuilt, _meta = load_checkpoint(saved)
    assert torch.equal(rebuilt.head.weight, model.head.weight)
    shutil.rmtree(hub)  # the cache is gone: one line, no download
    with pytest.raises(InputFileError) as info:
        load_checkpoint(saved)
    line = _one_line(info.value)
    assert info.value.exit_code == 2 and "a file may not make edgekd download" in line


def test_url_weights_are_found_in_torch_cache(tmp_path: Path) -> None:
    url = "https://example.com/weights/net_a1-0123abcd.pth"
    source = WeightsSource(None, None, url)
    assert cached_weights(source) is None
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "net_a1-0123abcd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert cached_weights(source) == cached
    assert "TORCH_HOME" in source.cache_label


def test_pretrained_path_wins_and_the_hub_is_not_asked(tmp_path: Path, timm_calls: list) -> None:
    local = _imagenet_like("test_efficientnet")
    path = tmp_path / "local.safetensors"
    safetensors_torch.save_file(local.state_dict(), str(path))
    model = create_model("timm:test_efficientnet", 4, 3, pretrained=True, pretrained_path=str(path))
    assert torch.equal(model.conv_stem.weight, local.conv_stem.weight)
    assert [call["pretrained"] for call in timm_calls] == [False]


# --- (c) auto: the weights when they can be had, else one line and random weights --------------


def test_auto_offline_goes_on_from_random_weights_with_one_line(caplog, hub: Path, timm_calls: list) -> None:
    with caplog.at_level(logging.WARNING, logger="edgekd.models"):
        first = create_model("timm:test_efficientnet", 4, 3, pretrained="auto")
        create_model("timm:test_efficientnet", 4, 3, pretrained="auto")  # a recipe builds it twice
    (record,) = [r for r in caplog.records if r.name == "edgekd.models"]
    message = record.getMessage()
    assert "\n" not in message and message.startswith(
        "model 'timm:test_efficientnet': cannot get its pretrained"
    )
    assert "HF_HUB_OFFLINE is set" in message and message.endswith(
        "starting from random weights (pretrained: auto)"
    )
    assert isinstance(first, torch.nn.Module)
    assert [call["pretrained"] for call in timm_calls] == [False, False]

    imagenet = _imagenet_like("test_efficientnet")  # once cached, auto takes them, silently
    weights = _hub_repo(hub, "timm/test_efficientnet.r160_in1k") / "model.safetensors"
    safetensors_torch.save_file(imagenet.state_dict(), str(weights))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgekd.models"):
        model = create_model("timm:test_efficientnet", 4, 3, pretrained="auto")
    assert torch.equal(model.conv_stem.weight, imagenet.conv_stem.weight)
    assert not [r for r in caplog.records if r.name == "edgekd.models"]


def test_pretrained_values_and_built_in_networks(caplog) -> None:
    with pytest.raises(ConfigError, match="pretrained must be true, false or auto, got 'yes'"):
        create_model("timm:test_efficientnet", 4, 3, pretrained="yes")
    assert create_model("timm:test_efficientnet", 4, 3, pretrained=False) is not None
    # Built-in networks have no hub weights: true is refused, auto says so and goes on.
    with pytest.raises(PretrainedUnavailable, match="edgekd's built-in networks have no pretrained weights"):
        create_model("cnn1d_small", 4, 2, pretrained=True)
    with caplog.at_level(logging.WARNING, logger="edgekd.models"):
        assert create_model("cnn1d_small", 4, 2, pretrained="auto") is not None
    assert "starting from random weights" in caplog.text


def test_kd_oct_starts_both_networks_from_imagenet_weights_when_it_can() -> None:
    from edgekd.pipeline.recipe import load_recipe

    recipe = load_recipe("kd-oct", ["data.path=OCT"])
    assert recipe.teacher.kwargs["pretrained"] == "auto" and recipe.student.kwargs["pretrained"] == "auto"


# --- (d) a file never makes edgekd download -----------------------------------------------------


def test_a_checkpoint_claiming_pretrained_does_not_download(
    tmp_path: Path, online, timm_calls, monkeypatch
) -> None:
    def no_probe(url):
        raise AssertionError(f"the hub was asked about {url}")

    monkeypatch.setattr(timm_models, "offline_reason", no_probe)
    trained = _imagenet_like("test_efficientnet")
    member = {"model": "timm:test_efficientnet", "kwargs": {"pretrained": "auto"}}
    cases = [
        ("timm:test_efficientnet", {"pretrained": True, "drop_rate": 0.1}, trained),
        ("ensemble", {"members": [member, member]}, None),
    ]
    for name, kwargs, model in cases:
        if model is None:
            with reading_file(tmp_path / "x.pt"):  # the ensemble itself, built without the hub
                model = create_model(name, 1000, 3, **kwargs)
        saved = tmp_path / f"{name}.pt"
        save_checkpoint(saved, model, model_name=name, model_kwargs=kwargs, num_classes=1000, in_channels=3,
                        input_shape=(3, 32, 32), class_names=[str(i) for i in range(1000)])  # fmt: skip
        rebuilt, meta = load_checkpoint(saved)
        assert meta.model_kwargs == kwargs
        first = next(iter(model.state_dict()))
        assert torch.equal(rebuilt.state_dict()[first], model.state_dict()[first])
    assert timm_calls and all(call["pretrained"] is False for call in timm_calls)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("timm:test_efficientnet", {"pretrained": "hf-hub:evil/weights"}, "sets model argument 'pretrained'"),
        ("timm:local-dir:/srv/weights", {}, "a folder to read weights from"),
    ],
)
def test_a_file_may_not_name_weights_to_read(tmp_path: Path, name: str, kwargs: dict, expected: str) -> None:
    with reading_file(tmp_path / "x.pt"), pytest.raises(UntrustedFileError) as info:
        create_model(name, 4, 3, **kwargs)
    assert expected in _one_line(info.value)


PRETRAINED_SEEN: list[bool] = []


def build_with_pretrained(
    num_classes: int, in_channels: int = 2, pretrained: bool = False
) -> torch.nn.Module:
    """A user factory with its own ``pretrained`` argument (``module:`` models receive it)."""
    PRETRAINED_SEEN.append(pretrained)
    return torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.LazyLinear(num_classes))


def test_a_module_factory_gets_its_own_pretrained_but_never_from_a_file(tmp_path: Path) -> None:
    from edgekd.models.trust import trusted_code

    name = f"module:{__name__}:build_with_pretrained"
    PRETRAINED_SEEN.clear()
    create_model(name, 4, 2, pretrained=True)
    with trusted_code([__name__]), reading_file(tmp_path / "x.pt"):
        create_model(name, 4, 2, pretrained=True)
    assert PRETRAINED_SEEN == [True, False]
