"""Tiny valid files for the pipeline tests (built in-process in about a second, no training):
a dataset npz, two teacher checkpoints, a calibration recipe, a target profile, and a recipe
writer that points at them."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np

CLASSES = ["8PSK", "BPSK", "QAM16", "QPSK"]  # sorted, as the RadioML 2016 loader sorts them
FRAME = (2, 128)


def tones(n: int, length: int = FRAME[1], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """IQ tones of 4 frequencies: x float32 [n, 2, length], y int64 [n]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    t = np.arange(length)
    freq = 0.05 * (y[:, None] + 1)
    x = np.stack([np.cos(freq * t), np.sin(freq * t)], axis=1).astype(np.float32)
    return x + 0.05 * rng.standard_normal(x.shape).astype(np.float32), y.astype(np.int64)


def write_npz(path: Path, length: int = FRAME[1], classes: list[str] = CLASSES) -> Path:
    x, y = tones(64, length)
    split = np.repeat(np.array([0, 0, 1, 2], dtype=np.int8), 16)
    np.savez(path, x=x, y=y, class_names=np.asarray(classes), split=split)
    return path


def write_checkpoint(path: Path, classes: list[str] = CLASSES, shape: tuple[int, ...] = FRAME) -> Path:
    import torch

    from edgekd.models.checkpoint import save_checkpoint
    from edgekd.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("cnn1d_small", len(classes), shape[0])
    save_checkpoint(
        path,
        model.eval(),
        model_name="cnn1d_small",
        model_kwargs={},
        num_classes=len(classes),
        in_channels=shape[0],
        input_shape=shape,
        class_names=classes,
    )
    return path


def write_rml2016(path: Path, length: int = FRAME[1], mods: list[str] = CLASSES) -> Path:
    """{(modulation, snr): float32 [8, 2, length]} as in RML2016.10a_dict.pkl."""
    cells = {}
    for label, mod in enumerate(mods):
        for snr in (0, 10):
            x, _ = tones(8, length, seed=label * 10 + snr)
            x[:, 0] += np.cos(0.05 * (label + 1) * np.arange(length)).astype(np.float32)
            cells[(mod, snr)] = x
    path.write_bytes(pickle.dumps(cells, protocol=2))
    return path


TARGET = """\
name: tiny-target
runtime: onnxruntime
precision: fp32
device: CPU
host: local
input_shape: [1, 2, 128]
budgets: {max_p90_ms: 1000.0, min_accuracy: 0.0}
"""
CALIBRATION = "name: tiny\nsource_split: train\nnum_samples: 16\nselection: random\nseed: 0\n"


@dataclasses.dataclass
class Files:
    root: Path
    npz: Path
    short_npz: Path  # frames [2, 64]
    teacher: Path  # CLASSES, [2, 128]
    other_teacher: Path  # other class names
    calibration: Path
    target: Path

    def recipe(self, path: Path, *, source: str = "npz", data_path: Path | None = None, **keys: str) -> Path:
        """A tiny recipe (1 epoch, teacher from a checkpoint); ``keys`` replace whole lines by key,
        e.g. ``student="  model: cnn1d_smal"``; an ``extra`` key appends text."""
        lines = {
            "data": f"data:\n  source: {source}\n  path: {data_path or self.npz}\n"
            + ("  rml2016: {val_fraction: 0.2, test_fraction: 0.2}\n" if source == "rml2016" else ""),
            "teacher": f"teacher:\n  checkpoint: {self.teacher}\n",
            "student": "student:\n  model: edgekd:cnn1d_small\n",
            "distill": "distill:\n  train: {epochs: 1, batch_size: 16}\n",
            "export": "export:\n  openvino: false\n",
            "quantize": f"quantize:\n  calibration: {self.calibration}\n  max_accuracy_drop: 1.0\n",
            "bench": "bench:\n  backends: [onnxruntime/fp32]\n  roofline: false\n"
            "  latency: {warmup_runs: 0, warmup_seconds: 0.0, min_runs: 1, min_seconds: 0.0}\n",
            "gate": f"gate:\n  target: {self.target}\n",
        }
        extra = keys.pop("extra", "")
        lines.update(keys)
        path.write_text("name: tiny\n" + "".join(lines.values()) + extra)
        return path


def build(root: Path) -> Files:
    root.mkdir(parents=True, exist_ok=True)
    files = Files(
        root=root,
        npz=write_npz(root / "data.npz"),
        short_npz=write_npz(root / "short.npz", length=64),
        teacher=write_checkpoint(root / "teacher.pt"),
        other_teacher=write_checkpoint(root / "other_teacher.pt", classes=["AM", "FM", "GFSK", "PAM4"]),
        calibration=root / "calibration.yaml",
        target=root / "tiny-target.yaml",
    )
    files.calibration.write_text(CALIBRATION)
    files.target.write_text(TARGET)
    return files
