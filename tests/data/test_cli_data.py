"""Bad data through the real CLI: exit 2, one line naming the file, no traceback, nothing written.

One case per file kind (npz, RadioML 2016 pickle, RadioML 2018 HDF5, image folder, synthetic
settings) and every command that reads a dataset npz (bench, export, quantize, distill).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.main import cli

N, LENGTH = 24, 16
CLASSES = ["BPSK", "QPSK", "FM"]


def _invoke(*argv) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in argv])
    return result.exit_code, result.output


def _assert_refused(code: int, output: str, *fragments: str) -> None:
    assert code == 2, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _nothing_in(folder: Path) -> None:
    """The command's destination was not created (or was removed again with what it wrote)."""
    assert not folder.exists(), sorted(folder.rglob("*"))


def _arrays(**changes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal((N, 2, LENGTH)).astype(np.float32),
        "y": np.arange(N) % 3,
        "class_names": np.array(CLASSES),
        "snr": np.tile([0, 10], N // 2),
        "split": np.repeat([0, 0, 1, 2], N // 4),
    }
    return {**arrays, **changes}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A real student checkpoint (edgekd:cnn1d_small, [2, 16] frames, 3 classes) and a real ONNX model."""
    from edgekd.models.checkpoint import save_checkpoint
    from edgekd.models.factory import create_model

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = create_model("edgekd:cnn1d_small", len(CLASSES), 2)
    student = root / "student.pt"
    save_checkpoint(
        student,
        model,
        model_name="edgekd:cnn1d_small",
        model_kwargs={},
        num_classes=len(CLASSES),
        in_channels=2,
        input_shape=(2, LENGTH),
        class_names=CLASSES,
    )
    onnx_path = root / "student.onnx"
    torch.onnx.export(model.eval(), torch.zeros(1, 2, LENGTH), str(onnx_path), dynamo=False)
    return {"student": student, "onnx": onnx_path}


@pytest.fixture
def nan_npz(tmp_path) -> Path:
    x = _arrays()["x"]
    x[5, 0, 3] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, **_arrays(x=x))
    return path


def test_bench_refuses_nan_frames_instead_of_scoring_them(tmp_path, models, nan_npz):
    out = tmp_path / "bench"
    code, output = _invoke("bench", f"torch/fp32={models['student']}", "--data", nan_npz, "--out", out, "-q")
    _assert_refused(code, output, f"dataset {nan_npz}: x holds NaN", "first at frame 5")
    _nothing_in(out)


def test_export_refuses_nan_frames(tmp_path, models, nan_npz):
    out = tmp_path / "export"
    code, output = _invoke("export", models["student"], "--data", nan_npz, "--out", out, "-q")
    _assert_refused(code, output, str(nan_npz), "NaN")
    _nothing_in(out)


def test_quantize_refuses_nan_frames_and_an_empty_calibration_split(tmp_path, models, nan_npz):
    dest = tmp_path / "q" / "student.int8.onnx"
    code, output = _invoke("quantize", models["onnx"], "--data", nan_npz, "--out", dest, "-q")
    _assert_refused(code, output, str(nan_npz), "NaN")
    no_train = tmp_path / "no_train.npz"
    np.savez(no_train, **_arrays(split=np.repeat([1, 2], N // 2)))
    code, output = _invoke("quantize", models["onnx"], "--data", no_train, "--out", dest, "-q")
    _assert_refused(code, output, f"the 'train' split of dataset {no_train} is empty")
    _nothing_in(tmp_path / "q")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"y": np.arange(N) % 5}, "y holds the label 4 but there are 3 class names"),
        ({"split": np.repeat([0, 0, 1, 1], N // 4)}, "the 'test' split is empty"),
        ({"y": np.r_[np.zeros(N // 2, int), np.arange(N // 2) % 3]}, "'train' split holds no frame of class"),
        ({"x": np.zeros((N, 2, 0), np.float32)}, "zero-size frames"),
    ],
)
def test_distill_checks_a_given_dataset_before_training(tmp_path, changes, fragment):
    data = tmp_path / "d.npz"
    np.savez(data, **_arrays(**changes))
    out = tmp_path / "kd"
    code, output = _invoke("distill", "--config", "modrec", "--data", data, "--out", out, "-q")
    _assert_refused(code, output, str(data), fragment)
    _nothing_in(out)


def _distill_source(tmp_path: Path, *settings: str) -> tuple[int, str, Path]:
    out = tmp_path / "run"
    args = ["distill", "--config", "modrec", "--out", out, "-q"]
    for setting in settings:
        args += ["--set", setting]
    code, output = _invoke(*args)
    return code, output, out


def test_synthetic_settings_whose_split_ends_up_empty_write_no_data_npz(tmp_path):
    code, output, out = _distill_source(
        tmp_path, "data.synthetic.frames_per_class_snr=2", "data.synthetic.snr_min=10"
    )
    _assert_refused(code, output, "synthetic data (data.synthetic): the 'val' split is empty")
    _nothing_in(out)


def test_rml2016_pickle_with_inf_is_refused_before_data_npz(tmp_path):
    rng = np.random.default_rng(0)
    table = {(m, s): rng.standard_normal((6, 2, LENGTH)).astype(np.float32) for m in CLASSES for s in (0, 10)}
    table[("QPSK", 10)][2, 1, 0] = np.inf
    path = tmp_path / "rml.pkl"
    path.write_bytes(pickle.dumps(table, protocol=2))
    code, output, out = _distill_source(tmp_path, "data.source=rml2016", f"data.path={path}")
    _assert_refused(code, output, f"RadioML 2016 file {path}: entry ('QPSK', 10) holds NaN or infinite")
    _nothing_in(out)


def test_rml2018_file_with_labels_that_are_not_one_hot_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py is not installed")
    path = tmp_path / "rml.hdf5"
    with h5py.File(path, "w") as f:
        f["X"] = np.random.default_rng(0).standard_normal((N, LENGTH, 2)).astype(np.float32)
        f["Y"] = np.full((N, 24), 1 / 24)
        f["Z"] = np.zeros((N, 1))
    code, output, out = _distill_source(tmp_path, "data.source=rml2018", f"data.path={path}")
    _assert_refused(code, output, f"RadioML 2018 file {path}: Y row 0 is not one-hot")
    _nothing_in(out)


def test_image_folder_with_one_class_is_refused(tmp_path):
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    root = tmp_path / "oct"
    (root / "NORMAL").mkdir(parents=True)
    for i in range(4):
        image.new("L", (12, 10), 20 * i).save(root / "NORMAL" / f"{i}.png")
    code, output, out = _distill_source(
        tmp_path, "data.source=imagefolder", f"data.path={root}", "data.imagefolder.image_size=8"
    )
    _assert_refused(code, output, f"image folder {root}", "a classifier needs at least 2")
    _nothing_in(out)
