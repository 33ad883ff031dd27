"""DataLoader workers change nothing: the same batches with 2 workers as in the main process.

The check runs in a fresh interpreter: a DataLoader with workers leaves process-wide state in
the process that ran it (torch's SIGCHLD handler, forked copies of the runtimes' thread
pools), and within the whole suite a later test that spawns sshd then crashed the pytest
process (a segmentation fault). Training runs its loader in its own process, as here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from edgekd.data.images import ImageFolder, ImageTransform
from edgekd.data.images import augment as image_augment
from edgekd.data.lazy_images import LazyImageFolder
from edgekd.data.lazy_rml2018 import RML2018Dataset
from edgekd.data.samplers import SeededSampler, chunk_batches
from tests.data.test_lazy_rml2018 import write_rml

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
pytest.importorskip("h5py", reason="h5py is not installed")


def _batches(loader: DataLoader, sampler, epochs=(0, 1)) -> list[list[torch.Tensor]]:
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        out.extend([list(batch) for batch in loader])
    return out


def _assert_same(a, b) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        for x, y in zip(left, right, strict=True):
            assert torch.equal(x, y)


def check_two_workers_give_the_batches_of_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for c in ("CNV", "NORMAL"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (20, 26), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(tmp_path / "img" / c / f"{i}.jpg")
    images = LazyImageFolder(
        ImageFolder(tmp_path / "img", transform=ImageTransform(16, 18)), augment=image_augment, augment_seed=5
    )
    sampler = SeededSampler(len(images), seed=3, with_epoch=True)  # training views of (seed, epoch, index)
    runs = [
        _batches(
            DataLoader(images, batch_size=5, sampler=sampler, num_workers=w, persistent_workers=w > 0),
            sampler,
        )
        for w in (0, 2)
    ]
    _assert_same(*runs)
    assert not torch.equal(runs[0][0][0], runs[0][3][0])  # batch 0 of epochs 0 and 1 differ

    path = tmp_path / "r.hdf5"
    write_rml(path, chunks=(4, 32, 2), sort=True)
    frames = RML2018Dataset(path).subset("train")
    batches = chunk_batches(frames, 16, seed=1)
    runs = [_batches(DataLoader(frames, batch_sampler=batches, num_workers=w), batches) for w in (0, 2)]
    _assert_same(*runs)
    assert sum(len(b[1]) for b in runs[0]) == 2 * len(frames)


def test_two_workers_give_the_batches_of_none(tmp_path):
    code = (
        "import sys; from pathlib import Path; "
        "from tests.data.test_workers import check_two_workers_give_the_batches_of_none as check; "
        "check(Path(sys.argv[1])); print('workers match')"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workers match" in done.stdout
