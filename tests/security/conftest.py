"""Fixtures for the trust tests: a marker module that records being imported or called, and
checkpoints that name it.

The marker module is real and importable (its folder is on ``sys.path``), so a refusal in
these tests is the trust rule at work, never an ImportError.
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from pathlib import Path

import pytest
import torch

from edgekd.models.checkpoint import combine_checkpoints, save_checkpoint
from edgekd.models.factory import create_model
from tests.deploy.tiny_student import CLASS_NAMES, save_data
from tests.export.tiny_nets import CLASSES, FRAME

MARKER_SOURCE = """
from pathlib import Path

Path({imported!r}).write_text("imported")


def build(num_classes, in_channels=2, **kwargs):
    Path({called!r}).write_text("called")
    from edgekd.models.zoo1d import CNN1dSmall

    return CNN1dSmall(num_classes, in_channels, **kwargs)
"""


@dataclasses.dataclass
class Marker:
    """A module ``name`` whose import writes ``imported`` and whose ``build`` writes ``called``."""

    name: str
    imported: Path
    called: Path

    @property
    def model(self) -> str:
        return f"module:{self.name}:build"

    def ran(self) -> bool:
        return self.imported.exists() or self.called.exists() or self.name in sys.modules


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Marker:
    folder = tmp_path / "marker_code"
    folder.mkdir()
    name = f"edgekd_marker_{uuid.uuid4().hex[:12]}"  # fresh per test: no cached import hides a run
    found = Marker(name, tmp_path / "IMPORTED", tmp_path / "CALLED")
    (folder / f"{name}.py").write_text(
        MARKER_SOURCE.format(imported=str(found.imported), called=str(found.called))
    )
    monkeypatch.syspath_prepend(str(folder))
    yield found
    sys.modules.pop(name, None)


TORCH_TARGET = """
name: torch-cpu
runtime: torch
precision: fp32
device: CPU
input_shape: [1, 2, 128]
budgets:
  max_params: 1000000
"""


@dataclasses.dataclass
class Files:
    good: Path  # an edgekd checkpoint of the built-in cnn1d_small
    ensemble: Path  # an ensemble checkpoint of two built-in members
    data: Path  # data.npz the checkpoints fit
    torch_target: Path  # a target profile whose runtime (torch) opens .pt files: the static gate's


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("trust")
    torch.manual_seed(0)
    good = root / "good.pt"
    save_checkpoint(
        good,
        create_model("cnn1d_small", CLASSES, FRAME[0]),
        model_name="cnn1d_small",
        model_kwargs={},
        num_classes=CLASSES,
        in_channels=FRAME[0],
        input_shape=FRAME,
        class_names=CLASS_NAMES,
    )
    twin = root / "twin.pt"
    twin.write_bytes(good.read_bytes())
    target = root / "torch-cpu.yaml"
    target.write_text(TORCH_TARGET)
    ensemble = combine_checkpoints([good, twin], root / "ensemble.pt")
    return Files(good, ensemble, save_data(root / "data.npz"), target)


def forge(source: Path, target: Path, **fields) -> Path:
    """``target``: the checkpoint ``source`` with ``fields`` replaced (what an attacker writes)."""
    payload = torch.load(source, map_location="cpu", weights_only=True)
    payload.update(fields)
    torch.save(payload, target)
    return target
