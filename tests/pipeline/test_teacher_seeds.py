"""``teacher.seeds``: N independently seeded teachers that teach as one ensemble (issue #20, part 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.models.checkpoint import load_checkpoint
from edgekd.pipeline.recipe import load_recipe
from tests.pipeline.files import Files, build

TEACHER = "teacher:\n  model: edgekd:cnn1d_small\n  seeds: 2\n  train: {epochs: 1, batch_size: 16}\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return build(tmp_path_factory.mktemp("seeds_files"))


def test_a_teacher_of_two_seeds_is_the_mean_of_two_differently_seeded_members(files, tmp_path: Path) -> None:
    recipe = files.recipe(tmp_path / "r.yaml", teacher=TEACHER)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["distill", "--config", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ensemble member 2 of 2, seed 1" in result.output
    ensemble, meta = load_checkpoint(out / "teacher.pt")
    members = [load_checkpoint(out / f"teacher-seed{s}.pt")[0] for s in (0, 1)]
    assert meta.model_name == "ensemble" and len(meta.model_kwargs["members"]) == 2
    first, second = (m.state_dict() for m in members)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # seeded apart
    x = torch.from_numpy(np.load(files.npz)["x"][:8])
    with torch.no_grad():
        mean = (members[0](x) + members[1](x)) / 2
        assert torch.allclose(ensemble(x), mean, atol=1e-5)


def test_seeds_below_one_are_refused() -> None:
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"teacher\.seeds must be 1 or more"):
        load_recipe("modrec", ["teacher.seeds=0"])
