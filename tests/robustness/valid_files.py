"""The VALID file of every kind edgekd reads, tiny and built in-process (no training).

Every broken file of the corpus is derived from one of these. Checkpoints come from
``save_checkpoint`` on freshly initialised networks, the ONNX model and the bench.json from
the real ``edgekd export`` / ``edgekd bench`` commands, so the valid files are exactly what
edgekd itself writes.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from tests.robustness import harness

# Shared by the npz, the RadioML 2016 pickle and the 1-D checkpoints (sorted, as rml2016 sorts).
CLASSES = ["8PSK", "BPSK", "QAM16", "QPSK"]
RML2018_CLASSES = ["OOK", "4ASK", "8ASK", "BPSK"]  # the first four one-hot columns of the real file
IMAGE_CLASSES = ["cat", "dog"]
FRAME = (2, 128)
N_FRAMES = 64
IMAGE_SIZE = 16


@dataclasses.dataclass
class ValidFiles:
    root: Path
    npz: Path
    student: Path  # edgekd checkpoint, cnn1d_small, CLASSES, [2, 128]
    teacher: Path  # same classes and shape, other weights
    teacher_rml18: Path  # RML2018_CLASSES
    teacher_img: Path  # timm:test_resnet, IMAGE_CLASSES, [3, 16, 16]
    onnx: Path  # exported from student
    bench: Path  # bench.json of student.pt + student.onnx
    target: Path  # onnxruntime/fp32
    target_torch: Path  # torch/fp32, for the static gate of a .pt
    target_img: Path  # as target, for the image recipe's [3, 16, 16] frames
    calibration: Path
    qat_config: Path
    rml2016: Path
    rml2018: Path
    images: Path
    marker_dir: Path  # hostile code writes here; must stay empty
    hostile_pkgs: Path  # on sys.path: holds the marker module


def iq_frames(n: int = N_FRAMES, length: int = FRAME[1], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tones of 4 frequencies, float32 [n, 2, length], labels int64 [n]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    t = np.arange(length)
    freq = 0.05 * (y[:, None] + 1)
    x = np.stack([np.cos(freq * t), np.sin(freq * t)], axis=1).astype(np.float32)
    x += 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    return x, y.astype(np.int64)


def npz_arrays() -> dict[str, np.ndarray]:
    """The arrays of the valid dataset: 32 train / 16 val / 16 test frames with SNR labels."""
    x, y = iq_frames()
    return {
        "x": x,
        "y": y,
        "class_names": np.asarray(CLASSES, dtype=np.str_),
        "snr": np.tile(np.array([-4, 0, 4, 8], dtype=np.int16), N_FRAMES // 4),
        "split": np.repeat(np.array([0, 0, 1, 2], dtype=np.int8), N_FRAMES // 4),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _checkpoint(path: Path, name: str, classes: list[str], shape: tuple[int, ...], seed: int) -> Path:
    import torch

    from edgekd.models.checkpoint import save_checkpoint
    from edgekd.models.factory import create_model

    torch.manual_seed(seed)
    model = create_model(name, len(classes), shape[0])
    save_checkpoint(
        path,
        model.eval(),
        model_name=name,
        model_kwargs={},
        num_classes=len(classes),
        in_channels=shape[0],
        input_shape=shape,
        class_names=classes,
    )
    return path


def rml2016_dict(snrs=(0, 10), per_cell: int = 8, length: int = FRAME[1]) -> dict:
    """{(modulation, snr): float32 [per_cell, 2, length]} as in RML2016.10a_dict.pkl."""
    out = {}
    for label, mod in enumerate(CLASSES):
        for k, snr in enumerate(snrs):
            x, _ = iq_frames(per_cell, length, seed=10 * label + k)
            freq = 0.05 * (label + 1)
            t = np.arange(length)
            x[:, 0] += np.cos(freq * t).astype(np.float32)
            out[(mod, snr)] = x
    return out


def write_rml2016(path: Path, data: object) -> Path:
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def rml2018_arrays(per_cell: int = 8, snrs=(0, 10), length: int = FRAME[1]) -> dict[str, np.ndarray]:
    """X float32 [N, L, 2], Y one-hot float32 [N, 24], Z int64 [N, 1] (first four classes used)."""
    xs, ys, zs = [], [], []
    for label in range(len(RML2018_CLASSES)):
        for snr in snrs:
            x, _ = iq_frames(per_cell, length, seed=label * 7 + snr)
            xs.append(x.transpose(0, 2, 1))
            onehot = np.zeros((per_cell, 24), dtype=np.float32)
            onehot[:, label] = 1.0
            ys.append(onehot)
            zs.append(np.full((per_cell, 1), snr, dtype=np.int64))
    return {"X": np.concatenate(xs), "Y": np.concatenate(ys), "Z": np.concatenate(zs)}


def write_h5(path: Path, datasets: dict[str, object]) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            if isinstance(value, str) and value == "group":
                handle.create_group(name)
            else:
                handle.create_dataset(name, data=value)
    return path


def png_bytes(width: int, height: int, rgb: tuple[int, int, int], noise_seed: int = 0) -> bytes:
    """A real RGB PNG (through Pillow)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(noise_seed)
    arr = np.clip(np.array(rgb)[None, None, :] + rng.integers(-20, 20, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming ``width`` x ``height`` + IEND: no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def write_images(root: Path, per_class: int = 10) -> Path:
    colours = {"cat": (200, 40, 40), "dog": (40, 40, 200)}
    for name in IMAGE_CLASSES:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{name}{i:02d}.png").write_bytes(png_bytes(20, 20, colours[name], i))
    return root


TARGET_YAML = """\
# A local ONNX Runtime FP32 target with budgets every valid file meets.
name: robust-target
description: robustness corpus target
runtime: onnxruntime
precision: fp32
device: CPU
host: local
input_shape: [1, 2, 128]
onnxruntime:
  execution_mode: sequential
  graph_optimization_level: all
budgets:
  max_size_bytes: 10000000
  max_params: 1000000
  max_p90_ms: 1000.0
  min_accuracy: 0.0
"""

TARGET_TORCH_YAML = """\
name: robust-target-torch
description: robustness corpus target, PyTorch
runtime: torch
precision: fp32
device: CPU
host: local
input_shape: [1, 2, 128]
budgets:
  max_size_bytes: 10000000
  max_params: 1000000
  min_accuracy: 0.0
"""

CALIBRATION_YAML = """\
name: robust-calibration
source_split: train
num_samples: 16
selection: random
seed: 0
"""

QAT_YAML = """\
activations: uint8
ranges: learned
ptq_baseline: false
calibration_frames: 16
train:
  epochs: 1
  batch_size: 16
kd:
  loss: kd
  temperature: 4.0
  alpha: 0.7
"""


def recipe_yaml(valid: ValidFiles, source: str = "npz", data_path: Path | None = None) -> str:
    """A tiny recipe (1 epoch, no teacher training, 1 timed run) for ``edgekd run``/``distill``.

    ``source`` npz, rml2016, rml2018 or imagefolder; ``data_path`` overrides the valid file.
    """
    data = {
        "npz": (valid.npz, "", valid.teacher),
        "rml2016": (valid.rml2016, "  rml2016: {val_fraction: 0.2, test_fraction: 0.2}\n", valid.teacher),
        "rml2018": (
            valid.rml2018,
            f"  rml2018: {{classes: [{', '.join(RML2018_CLASSES)}], "
            "val_fraction: 0.2, test_fraction: 0.2}\n",
            valid.teacher_rml18,
        ),
        "imagefolder": (
            valid.images,
            f"  imagefolder: {{image_size: {IMAGE_SIZE}, resize: {IMAGE_SIZE}, val_fraction: 0.2, "
            "test_fraction: 0.2}\n",
            valid.teacher_img,
        ),
    }
    path, options, teacher = data[source]
    student = "timm:test_resnet" if source == "imagefolder" else "edgekd:cnn1d_small"
    target = valid.target_img if source == "imagefolder" else valid.target
    return (
        "name: robust\n"
        "data:\n"
        f"  source: {source}\n"
        f"  path: {data_path or path}\n"
        f"{options}"
        "teacher:\n"
        f"  checkpoint: {teacher}\n"
        "student:\n"
        f"  model: {student}\n"
        "distill:\n"
        "  kd:\n"
        "    loss: kd\n"
        "    temperature: 4.0\n"
        "    alpha: 0.7\n"
        "  train:\n"
        "    epochs: 1\n"
        "    batch_size: 16\n"
        "export:\n"
        "  openvino: false\n"
        "quantize:\n"
        f"  calibration: {valid.calibration}\n"
        "  min_top1_agreement: 0.0\n"
        "  max_accuracy_drop: 1.0\n"
        "bench:\n"
        "  backends: [torch/fp32, onnxruntime/fp32]\n"
        "  roofline: false\n"
        "  latency: {warmup_runs: 0, warmup_seconds: 0.0, min_runs: 1, min_seconds: 0.0}\n"
        "gate:\n"
        f"  target: {target}\n"
    )


MARKER_SOURCE = '''\
"""Written by the robustness corpus: importing or calling this leaves a marker file."""
from pathlib import Path

_MARKERS = Path({markers!r})
_MARKERS.mkdir(exist_ok=True)
(_MARKERS / "imported").write_text("a file made edgekd import this module")


def fn(*args, **kwargs):
    (_MARKERS / "called").write_text("a file made edgekd call this function")
    import torch

    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))
'''


class Hostile:
    """Unpickling this creates a marker file: the classic ``__reduce__`` payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class HostileSystem:
    """An ``os.system`` payload that would touch a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def build(root: Path) -> ValidFiles:
    """Write every valid file under ``root`` (about 2 s: one ``edgekd export`` in-process)."""
    root.mkdir(parents=True, exist_ok=True)
    hostile_pkgs = root.parent / f"{root.name}-hostile"
    marker_dir = hostile_pkgs / "MARKERS"
    marker_dir.mkdir(parents=True, exist_ok=True)
    (hostile_pkgs / f"{harness.MARKER_MODULE}.py").write_text(MARKER_SOURCE.format(markers=str(marker_dir)))
    valid = ValidFiles(
        root=root,
        npz=write_npz(root / "data.npz", npz_arrays()),
        student=_checkpoint(root / "student.pt", "cnn1d_small", CLASSES, FRAME, seed=0),
        teacher=_checkpoint(root / "teacher.pt", "cnn1d_small", CLASSES, FRAME, seed=1),
        teacher_rml18=_checkpoint(root / "teacher_rml18.pt", "cnn1d_small", RML2018_CLASSES, FRAME, seed=2),
        teacher_img=_checkpoint(
            root / "teacher_img.pt", "timm:test_resnet", IMAGE_CLASSES, (3, IMAGE_SIZE, IMAGE_SIZE), seed=3
        ),
        onnx=root / "onnx" / "student.onnx",
        bench=root / "bench" / "bench.json",
        target=root / "robust-target.yaml",
        target_torch=root / "robust-target-torch.yaml",
        target_img=root / "robust-target-img.yaml",
        calibration=root / "robust-calibration.yaml",
        qat_config=root / "robust-qat.yaml",
        rml2016=write_rml2016(root / "RML2016.10a_dict.pkl", rml2016_dict()),
        rml2018=write_h5(root / "GOLD_XYZ_OSC.0001_1024.hdf5", rml2018_arrays()),
        images=write_images(root / "images"),
        marker_dir=marker_dir,
        hostile_pkgs=hostile_pkgs,
    )
    valid.target.write_text(TARGET_YAML)
    valid.target_torch.write_text(TARGET_TORCH_YAML)
    valid.target_img.write_text(
        TARGET_YAML.replace("[1, 2, 128]", f"[1, 3, {IMAGE_SIZE}, {IMAGE_SIZE}]").replace(
            "name: robust-target", "name: robust-target-img"
        )
    )
    valid.calibration.write_text(CALIBRATION_YAML)
    valid.qat_config.write_text(QAT_YAML)
    _run_or_fail(
        ["export", valid.student, "--data", valid.npz, "--out", valid.onnx.parent, "--no-openvino", "-q"]
    )
    return valid


def build_bench(valid: ValidFiles) -> Path:
    """The valid bench.json (and baseline.json, a copy), written by ``edgekd bench``: a fixture of its
    own, so a broken bench fails the cases that need its file and no others."""
    if not valid.bench.is_file():
        _run_or_fail(
            ["bench", valid.student, valid.onnx, "--data", valid.npz, "--out", valid.bench.parent,
             "--min-runs", "1", "--min-seconds", "0", "-q"]
        )  # fmt: skip
        shutil.copy(valid.bench, valid.root / "baseline.json")
    return valid.bench


def _run_or_fail(argv: list) -> None:
    outcome = harness.invoke(argv)
    if outcome.exit_code != 0:
        raise RuntimeError(
            f"building a valid fixture failed: edgekd {' '.join(map(str, argv))}: {outcome.summary()}"
        )
