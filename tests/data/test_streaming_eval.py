"""Streaming evaluation: every reader of the data artifact (validation, calibration, export
parity, the bench's accuracy, the quantize checks) gives the same numbers on an npz held in
memory and on the same npz read lazily (memory-mapped, or through a data index), and reads a
raw uint8 image index as the network inputs [3, S, S]."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.artifacts import read_manifest
from edgekd.data import batches
from edgekd.data.artifact import IMAGE_CACHE_NAME, open_data, open_lazy_source, prepare_images, write_index
from edgekd.data.batches import in_memory, network_arrays, network_input_shape
from edgekd.data.calibration import CalibrationRecipe, select_calibration
from edgekd.data.dataset import ArrayDataset, load_npz
from edgekd.data.sources import DataSpec, ImageFolderOptions
from edgekd.distill.checks import (
    check_dataset_fits,
    check_datasets,
    evaluate_model,
    predict_dataset,
    predict_logits,
)
from edgekd.errors import ShapeError
from tests.pipeline.files import CALIBRATION, CLASSES, tones, write_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_process_reads(monkeypatch):
    """workers "auto" reads lazy data in this process: DataLoader workers in the pytest process
    can break later tests (see tests/data/test_workers.py); a subprocess test covers them."""
    monkeypatch.setattr(batches, "MAX_AUTO_WORKERS", 0)


@pytest.fixture(scope="module")
def tone_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """An uncompressed npz of 120 IQ frames (4 classes, SNR labels, all splits), its data index
    (read lazily), and a student checkpoint that fits it."""
    root = tmp_path_factory.mktemp("streaming")
    x, y = tones(120, seed=3)
    split = np.tile(np.array([0, 0, 0, 1, 2], dtype=np.int8), 24)
    snr = np.tile(np.array([-10, 0, 10], dtype=np.int16), 40)
    npz = root / "data.npz"
    ArrayDataset(x=x, y=y, class_names=CLASSES, snr=snr, split=split, source="tones").save_npz(npz)
    spec = DataSpec(source="npz", path=str(npz))
    index = root / "data.json"
    write_index(index, spec, npz, open_lazy_source(spec, npz), None)
    return npz, index, write_checkpoint(root / "student.pt")


def _forms(npz: Path, index: Path) -> dict[str, object]:
    return {
        "array": load_npz(npz),
        "memory": open_data(npz, storage="memory"),
        "mmap": open_data(npz, storage="lazy"),
        "index": open_data(index),
    }


def _student(path: Path) -> nn.Module:
    from edgekd.models.checkpoint import load_checkpoint

    return load_checkpoint(path)[0].eval()


def test_forms_are_what_they_claim(tone_files):
    forms = _forms(*tone_files[:2])
    assert [in_memory(d) for d in forms.values()] == [True, True, False, False]
    assert all(network_input_shape(d) == (2, 128) for d in forms.values())


def test_validation_logits_and_accuracy_are_the_same_streamed(tone_files):
    npz, index, ckpt = tone_files
    model = _student(ckpt)
    forms = _forms(npz, index)
    val = forms["array"].subset("val")
    expected = predict_logits(model, val.x, 7)
    for name, data in forms.items():
        split = data.subset("val")
        got = predict_dataset(model, split, batch_size=7)
        assert got.shape == (24, 4) and got.dtype == torch.float32, name
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6, msg=name)
        assert evaluate_model(model, split, batch_size=7) == evaluate_model(model, val, batch_size=7), name


def test_calibration_selects_and_reads_the_same_frames(tone_files):
    forms = _forms(*tone_files[:2])
    recipe = CalibrationRecipe(source_split="train", num_samples=20, selection="stratified_snr", seed=4)
    picks = {name: select_calibration(data, recipe) for name, data in forms.items()}
    reference = picks["array"]
    assert len(reference.indices) == 20 and sorted(reference.snr_counts.values()) == [6, 7, 7]
    for name, pick in picks.items():
        assert pick.sha256 == reference.sha256 and pick.to_dict() == reference.to_dict(), name
        np.testing.assert_array_equal(pick.samples(forms[name]), forms["array"].x[reference.indices])


def test_export_parity_and_quantize_eval_inputs_are_the_first_frames(tone_files):
    from edgekd.pipeline.export_stage import _parity_samples
    from edgekd.pipeline.quantize_stage import _val_split

    forms = _forms(*tone_files[:2])
    array = forms["array"]
    for name, data in forms.items():
        np.testing.assert_array_equal(_parity_samples(data), array.subset("test").x, err_msg=name)
        val, evals = _val_split(data)
        assert len(val) == 24 and np.array_equal(val.y, array.subset("val").y), name
        np.testing.assert_array_equal(evals, array.subset("val").x, err_msg=name)


def test_bench_accuracy_streams_through_the_runtime_with_the_same_report(tone_files, tmp_path):
    from edgekd.backends.base import session_from_artifact
    from edgekd.bench.accuracy import evaluate_accuracy, latency_frames
    from edgekd.export.onnx_export import ExportConfig, export_onnx
    from edgekd.pipeline.measure import accuracy_of, bench_split

    npz, index, ckpt = tone_files
    onnx = tmp_path / "student.onnx"
    export_onnx(_student(ckpt), load_npz(npz).x[:4], onnx, ExportConfig(openvino=False))
    session = session_from_artifact("onnxruntime", onnx)
    forms = _forms(npz, index)
    expected = evaluate_accuracy(session, forms["array"].subset("test"), batch_size=8)
    for name, data in forms.items():
        test = bench_split(data)
        assert isinstance(test, ArrayDataset) == in_memory(data), name  # lazy data stays lazy
        report = evaluate_accuracy(session, test, batch_size=8)
        assert report.to_dict() == expected.to_dict(), name
        np.testing.assert_array_equal(report.predictions, expected.predictions)
        assert accuracy_of("onnxruntime", onnx, test) == expected.overall
        np.testing.assert_array_equal(latency_frames(test, 3), forms["array"].subset("test").x[:3])


class _StaticSession:
    """A batch-3 model that reads the class from the frame (x[:, 0, 0] holds it); records calls."""

    input_shape = (3, 2, 128)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        assert len(x) == 3
        self.calls.append(len(x))
        return np.eye(4, dtype=np.float32)[x[:, 0, 0].astype(int) % 4]


def test_streamed_static_batch_session_is_fed_whole_batches(tmp_path):
    x = np.zeros((301, 2, 128), np.float32)
    y = np.arange(301) % 4
    x[:, 0, 0] = np.where(np.arange(301) % 5 == 0, (y + 1) % 4, y)  # every fifth frame is wrong
    path = tmp_path / "d.npz"
    split = np.arange(301) % 5 // 3  # 0 0 0 1 1: the checks at the door want a train and a val split
    split[::10] = 2
    ArrayDataset(x=x, y=y, class_names=CLASSES, split=split.astype(np.int8)).save_npz(path)
    from edgekd.bench.accuracy import evaluate_accuracy

    lazy, session = open_data(path, storage="lazy"), _StaticSession()
    reads, read = [], lazy.__getitems__
    lazy.__getitems__ = lambda keys: reads.append(len(keys)) or read(keys)
    report = evaluate_accuracy(session, lazy)
    assert max(reads) <= 256 and sum(reads) == 1 + 301  # read batch by batch, never whole
    assert report.overall == pytest.approx(1 - 61 / 301)
    assert set(session.calls) == {3} and len(session.calls) == 1 + 101  # the probe, then ceil(301 / 3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_stage_export_and_quantize_read_an_index_as_they_read_the_npz(tone_files, tmp_path):
    from edgekd.config import from_dict
    from edgekd.export.onnx_export import ExportConfig
    from edgekd.pipeline.export_stage import stage_export
    from edgekd.pipeline.quantize_stage import stage_quantize
    from edgekd.quantize.config import QuantizeConfig

    npz, index, ckpt = tone_files
    recipe = tmp_path / "calib.yaml"
    recipe.write_text(CALIBRATION)
    cfg = from_dict(
        QuantizeConfig, {"calibration": str(recipe), "max_accuracy_drop": 1.0, "activation_type": "int8"}
    )
    metrics = {}
    for name, data in (("npz", npz), ("index", index)):
        out = tmp_path / name
        out.mkdir()
        onnx = stage_export(ckpt, data, ExportConfig(openvino=False), out)["onnx"]
        parity = read_manifest(onnx)["metrics"]["parity"]
        int8 = stage_quantize(onnx, data, cfg, out / "student.int8.onnx")
        quantized = read_manifest(int8)["metrics"]
        metrics[name] = (parity, quantized["calibration"], quantized["accuracy"])
    assert metrics["index"] == metrics["npz"]
    assert metrics["npz"][0]["samples"] == 24 and metrics["npz"][2]["frames"] == 24


@pytest.fixture(scope="module")
def image_index(tmp_path_factory) -> Path:
    """A data index of 12 grayscale PNGs (3 classes), cached as raw uint8 pixels [1, 12, 12]."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    root = tmp_path_factory.mktemp("images")
    folder = root / "scans"
    rng = np.random.default_rng(0)
    for c, name in enumerate(("CNV", "DME", "NORMAL")):
        for i in range(4):
            pixels = (rng.integers(0, 60, (15, 17)) + 80 * c).astype(np.uint8)
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "L").save(folder / name / f"{i}.png")
    opts = ImageFolderOptions(image_size=12, resize=14, val_fraction=0.25, test_fraction=0.25)
    spec = DataSpec(source="imagefolder", path=str(folder), imagefolder=opts)
    cached = prepare_images(open_lazy_source(spec, folder), root, workers=0)
    write_index(root / "data.json", spec, folder, cached, IMAGE_CACHE_NAME)
    return root / "data.json"


def _image_net(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def test_raw_image_index_is_checked_and_evaluated_as_network_inputs(image_index):
    from edgekd.models.fit import ModelInput
    from edgekd.pipeline.export_stage import _parity_samples

    data = open_data(image_index)
    assert data.sample_dtype == np.uint8 and data.input_shape == (1, 12, 12)
    assert network_input_shape(data) == (3, 12, 12)
    inputs = network_arrays(data)  # the same frames normalised, in memory
    assert inputs.x.dtype == np.float32 and inputs.x.shape == (12, 3, 12, 12)
    model = _image_net()
    check_datasets(model, data.subset("train"), data.subset("val"), "student")
    ModelInput(Path("s.pt"), "student", (3, 12, 12), 3).check(data, "images")
    with pytest.raises(ShapeError, match="3x12x12"):
        check_dataset_fits(_image_net(channels=1), data, "student")
    with pytest.raises(ShapeError, match=r"\[3, 12, 12\]"):
        ModelInput(Path("s.pt"), "student", (1, 12, 12), 3).check(data, "images")
    torch.testing.assert_close(
        predict_dataset(model, data, 5), predict_logits(model, inputs.x, 5), rtol=0, atol=1e-6
    )
    assert evaluate_model(model, data) == evaluate_model(model, inputs)
    recipe = CalibrationRecipe(source_split="train", num_samples=4, selection="stratified_class")
    pick = select_calibration(data, recipe)
    np.testing.assert_array_equal(pick.samples(data), inputs.x[pick.indices])
    np.testing.assert_array_equal(_parity_samples(data), inputs.x[data.split_indices("test")])


def test_nncf_validation_items_stream_the_network_inputs(image_index):
    from edgekd.quantize.nncf_openvino import LabelledFrames

    data = open_data(image_index).subset("val")
    inputs = network_arrays(data)
    items = LabelledFrames(data, batch_size=2)
    for _ in range(2):  # NNCF makes several passes
        got = list(items)
        assert len(got) == len(items) == len(data)
        np.testing.assert_array_equal(np.concatenate([frame for frame, _ in got]), inputs.x)
        assert [label for _, label in got] == inputs.y.tolist()


def test_workers_stream_the_same_numbers(tone_files, tmp_path):
    """DataLoader workers (2, forked) give the in-process numbers: in a fresh interpreter."""
    npz, _, ckpt = tone_files
    x, y = tones(40)
    x[38, 1, 5] = np.nan  # in the val split
    split = np.tile(np.array([0, 0, 0, 1, 2], dtype=np.int8), 8)
    bad = tmp_path / "nan.npz"
    np.savez(bad, x=x, y=y, class_names=np.asarray(CLASSES), split=split)
    script = textwrap.dedent(
        f"""
        import json
        import numpy as np
        from edgekd.bench.accuracy import evaluate_accuracy
        from edgekd.data.artifact import open_data
        from edgekd.distill.checks import evaluate_model, predict_dataset
        from edgekd.errors import InputFileError
        from edgekd.models.checkpoint import load_checkpoint

        model = load_checkpoint({str(ckpt)!r})[0].eval()
        val = open_data({str(npz)!r}, storage="lazy").subset("val")
        logits = predict_dataset(model, val, batch_size=7, workers=2)

        class Session:
            input_shape = (None, 2, 128)
            def run(self, x):
                return np.asarray(x[:, :, :4].sum(axis=1))

        report = evaluate_accuracy(Session(), val, batch_size=4, workers=2)
        try:  # a NaN frame found by a worker: the reader's own one-line error, hint and all
            evaluate_model(model, open_data({str(bad)!r}, storage="lazy").subset("val"), workers=2)
            error = None
        except InputFileError as exc:
            error = exc.one_line()
        print(json.dumps({{"logits": logits.tolist(), "report": report.to_dict(), "error": error}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    from edgekd.bench.accuracy import evaluate_accuracy

    class Session:
        input_shape = (None, 2, 128)

        def run(self, x):
            return np.asarray(x[:, :, :4].sum(axis=1))

    val = load_npz(npz).subset("val")
    expected = predict_logits(_student(ckpt), val.x, 7)
    torch.testing.assert_close(torch.tensor(got["logits"]), expected, rtol=0, atol=1e-6)
    assert got["report"] == json.loads(json.dumps(evaluate_accuracy(Session(), val, batch_size=4).to_dict()))
    assert got["error"] == (
        f"dataset {bad}: x holds NaN or infinite values (first at frame 38) "
        "(fix: clean or regenerate the data; edgekd reads finite numbers only)"
    )


def test_worker_errors_are_rebuilt_from_the_loader_text():
    from edgekd.data.worker_errors import CarryErrors, WorkerError, rebuild
    from edgekd.errors import InputFileError

    class Broken:
        def __len__(self):
            return 1

        def __getitems__(self, keys):
            raise InputFileError("image a.png is truncated", hint="re-copy it")

    with pytest.raises(WorkerError) as caught:
        CarryErrors(Broken())[0]
    # The text a DataLoader raises in the main process for an error in a worker:
    text = f"Caught WorkerError in DataLoader worker process 1.\nOriginal Traceback ...\nE: {caught.value}"
    for raised in (caught.value, WorkerError(text)):
        error = rebuild(raised)
        assert type(error) is InputFileError
        assert error.one_line() == "image a.png is truncated (fix: re-copy it)"
    assert type(
        rebuild(WorkerError('{"module": "os", "kind": "system", "message": "m", "hint": null}'))
    ).__name__ == ("EdgeKDError")  # only error classes are rebuilt
    assert "worker failed" in rebuild(WorkerError("Segmentation fault")).message


def test_stage_bench_streams_an_index_and_reports_what_the_npz_gives(tone_files, tmp_path):
    from edgekd.bench.runner import BenchConfig
    from edgekd.config import from_dict
    from edgekd.export.onnx_export import ExportConfig, export_onnx
    from edgekd.pipeline.measure import stage_bench

    npz, index, ckpt = tone_files
    onnx = tmp_path / "student.onnx"
    export_onnx(_student(ckpt), load_npz(npz).x[:4], onnx, ExportConfig(openvino=False))
    cfg = from_dict(
        BenchConfig,
        {
            "backends": ["onnxruntime/fp32"],
            "roofline": False,
            "input_shape": [1, 2, 128],
            "latency": {"warmup_runs": 0, "warmup_seconds": 0.0, "min_runs": 1, "min_seconds": 0.0},
        },
    )
    docs = {}
    for name, data in (("npz", npz), ("index", index)):
        doc = stage_bench({"onnxruntime/fp32": onnx}, None, data, cfg, tmp_path / name, name="tones")
        docs[name] = doc
    entry = {name: doc["entries"][0] for name, doc in docs.items()}
    assert entry["index"]["status"] == "ok", entry["index"]["reason"]
    assert entry["index"]["accuracy"] == entry["npz"]["accuracy"] and entry["npz"]["accuracy"]["n"] == 24
    assert docs["index"]["dataset"] | {"name": "-"} == docs["npz"]["dataset"] | {"name": "-"}
