"""A data source registered from a user's module takes options from the recipe.

The source below is registered by this test module, as a user's module would register one:
its keyword-only parameters are its options; ``data.options`` gives them; a misspelt one is
one line with "did you mean" (exit 2 through the CLI), before anything is written.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.data.sources import DATA_SOURCES, DataSpec, load_dataset, source_options
from edgekd.errors import ConfigError
from edgekd.pipeline.data_stage import stage_data

SOURCE = "test_tones"


@DATA_SOURCES.register(SOURCE)
def tones(spec: DataSpec, path: Path, *, frames_per_class: int = 6, length: int = 16, scale: float = 1.0):
    """Two classes of tones, ``frames_per_class`` frames each, split 4:1:1 per class."""
    t = np.arange(length, dtype=np.float32)
    x, y = [], []
    for label, freq in enumerate((0.05, 0.2)):
        for i in range(frames_per_class):
            phase = 0.3 * i
            x.append(
                scale * np.stack([np.cos(2 * np.pi * freq * t + phase), np.sin(2 * np.pi * freq * t + phase)])
            )
            y.append(label)
    split = np.tile(np.array([0, 0, 0, 0, 1, 2])[np.arange(frames_per_class) % 6], 2)
    return ArrayDataset(
        x=np.asarray(x, dtype=np.float32),
        y=np.asarray(y),
        class_names=["low", "high"],
        split=split.astype(np.int8),
    )


@DATA_SOURCES.register("test_needs_seed")
def needs_seed(spec: DataSpec, path: Path, *, seed: int):
    return tones(spec, path)


def _spec(data: dict) -> DataSpec:
    return from_dict(DataSpec, data, "data")


def test_options_are_read_from_the_loader_signature():
    assert source_options(SOURCE) == {"frames_per_class": 6, "length": 16, "scale": 1.0}
    assert source_options("test_needs_seed") == {"seed": inspect.Parameter.empty}
    assert source_options("npz") == {}


def test_recipe_options_reach_the_loader():
    default = load_dataset(_spec({"source": SOURCE}))
    assert default.x.shape == (12, 2, 16)
    data = load_dataset(
        _spec({"source": SOURCE, "options": {"frames_per_class": 12, "length": 32, "scale": 2.0}})
    )
    assert data.x.shape == (24, 2, 32) and float(np.abs(data.x).max()) == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (
            {"source": SOURCE, "options": {"frames_per_clas": 3}},
            ["data source 'test_tones' has no option 'frames_per_clas'", "did you mean 'frames_per_class'"],
        ),
        ({"source": "test_needs_seed"}, ["needs option 'seed'", "set data.options.seed"]),
        (
            {"source": "rml2016", "path": "x.pkl", "options": {"snrs": [0]}},
            ["has no option 'snrs'", "settings are under data.rml2016"],
        ),
        ({"source": "test_tonez"}, ["unknown data source 'test_tonez'", "did you mean 'test_tones'"]),
        ({"source": SOURCE, "storage": "lazy"}, ["read into memory whole"]),
    ],
)
def test_bad_options_are_one_config_error(data, fragments):
    with pytest.raises(ConfigError) as info:
        _spec(data)
    for fragment in fragments:
        assert fragment in info.value.one_line()


def test_the_data_stage_writes_a_user_source(tmp_path):
    spec = _spec({"source": SOURCE, "options": {"frames_per_class": 12}})
    path = stage_data(spec, tmp_path, Path)
    assert path == tmp_path / "data.npz"
    with np.load(path) as arrays:
        assert arrays["x"].shape == (24, 2, 16)


def test_a_misspelt_option_through_the_cli_is_one_line_and_exit_2(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  source: {SOURCE}\n  options:\n    lenght: 32\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["distill", "--config", str(recipe), "--out", str(out), "-q"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), result.output
    assert (
        str(recipe) in lines[0]
        and "has no option 'lenght'" in lines[0]
        and "did you mean 'length'" in lines[0]
    )
    assert not out.exists()
