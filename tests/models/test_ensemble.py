"""Teacher ensembles: mean logits of the members, one checkpoint, usable wherever a teacher is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.errors import ConfigError, InputFileError
from edgekd.models import count_params, create_model, load_checkpoint, save_checkpoint
from edgekd.models.checkpoint import combine_checkpoints
from edgekd.models.ensemble import TeacherEnsemble
from tests.deploy.tiny_student import save_data, train_student


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("members")
    return [train_student(folder / f"t{seed}.pt", steps=10, seed=seed) for seed in range(3)]


def test_combined_checkpoint_predicts_the_mean_of_its_members(members, tmp_path):
    out = combine_checkpoints(members, tmp_path / "ensemble.pt")
    ensemble, meta = load_checkpoint(out)
    assert isinstance(ensemble, TeacherEnsemble) and meta.model_name == "ensemble"
    nets = [load_checkpoint(p)[0] for p in members]
    assert count_params(ensemble) == sum(count_params(n) for n in nets)
    x = torch.randn(5, *meta.input_shape)
    with torch.no_grad():
        expected = sum(n(x) for n in nets) / len(nets)
        single = nets[0](x)
        got = ensemble(x)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, single)  # the members differ: the mean is not any one of them
    manifest = json.loads(out.with_name("ensemble.pt.json").read_text())
    assert [p["file"] for p in manifest["parents"]] == ["t0.pt", "t1.pt", "t2.pt"]
    assert manifest["metrics"]["members"] == 3


def test_members_must_share_classes(members, tmp_path):
    model, meta = load_checkpoint(members[0])
    other = tmp_path / "other.pt"
    save_checkpoint(
        other, model, model_name=meta.model_name, model_kwargs=meta.model_kwargs,
        num_classes=meta.num_classes, in_channels=meta.in_channels, input_shape=meta.input_shape,
        class_names=["W", "X", "Y", "Z"],
    )  # fmt: skip
    with pytest.raises(InputFileError, match="has class_names"):
        combine_checkpoints([members[0], other], tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()


def test_bad_ensembles_are_config_errors(members, tmp_path):
    with pytest.raises(ConfigError, match="at least two checkpoints"):
        combine_checkpoints(members[:1], tmp_path / "e.pt")
    with pytest.raises(ConfigError, match="is one of the members"):
        combine_checkpoints(members, members[1])
    with pytest.raises(ConfigError, match="at least two members"):
        create_model("ensemble", 4)
    with pytest.raises(ConfigError, match=r"members\[1\] must be a mapping"):
        create_model("ensemble", 4, members=[{"model": "cnn1d_small"}, "cnn1d_small"])
    with pytest.raises(ConfigError, match="kwargs must be a mapping"):
        create_model("ensemble", 4, members=[{"model": "cnn1d_small"}, {"model": "resnet1d", "kwargs": [8]}])
    with pytest.raises(ConfigError, match="unknown keys"):
        create_model("ensemble", 4, members=[{"model": "cnn1d_small"}, {"model": "cnn1d_small", "width": 8}])
    with pytest.raises(ConfigError) as info:
        create_model("ensemble", 4, members=[{"model": "cnn1d_small"}, {"model": "resnet1"}])
    assert "did you mean 'resnet1d'" in info.value.one_line()


def test_member_layers_are_reachable_by_path():
    ensemble = create_model(
        "ensemble", 4, members=[{"model": "resnet1d", "kwargs": {"width": 8}}, {"model": "cnn1d_small"}]
    )
    names = dict(ensemble.named_modules())
    assert "members.0.stages.2" in names and "members.1.features.0" in names


def test_cli_combines_and_distill_takes_the_ensemble_as_teacher(members, tmp_path):
    runner = CliRunner()
    out = tmp_path / "teachers.pt"
    combined = runner.invoke(cli, ["ensemble", *map(str, members), "--out", str(out)])
    assert combined.exit_code == 0, combined.output
    assert combined.stdout.strip() == str(out)
    assert "3 members" in combined.stderr
    data = save_data(tmp_path / "data.npz")
    kd = tmp_path / "kd"
    result = runner.invoke(
        cli,
        ["distill", "--config", "modrec", "--data", str(data), "--teacher", str(out), "--out", str(kd), "-q",
         "--set", "distill.train.epochs=1", "--set", "distill.train.batch_size=32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((kd / "student.pt.json").read_text())["parents"][1]["file"] == "teachers.pt"


def test_cli_refuses_a_single_member_in_one_line(members, tmp_path):
    result = CliRunner().invoke(cli, ["ensemble", str(members[0]), "--out", str(tmp_path / "e.pt")])
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and "at least two checkpoints" in result.stderr
    assert not (tmp_path / "e.pt").exists()
