"""``edgekd search`` end to end on a small generated modulation set: real exports, real INT8
builds, real latency measurements, real (short) distillation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.config import TrainConfig
from edgekd.distill.train import train_supervised
from edgekd.models import create_model
from edgekd.models.checkpoint import load_checkpoint
from edgekd.pipeline.distill_stage import DistillSection
from edgekd.pipeline.teacher_stage import save_trained
from edgekd.search.command import run_search_and_distill
from edgekd.search.config import HalvingConfig, SearchSection
from edgekd.search.space import SearchSpace
from edgekd.targets import TargetProfile

CLASSES = ["BPSK", "QPSK", "QAM16", "GFSK"]
# One short, seeded run each: the search's short runs and the winner's full run.
FAST_GRID = ["--grid", "width_mult=0.25,0.5", "--grid", "depth=0", "--grid", "stem_stride=2"]


@pytest.fixture(scope="module")
def run_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data.npz, teacher.pt): 4 classes x 10 SNRs x 12 frames of 2x128, a 1-epoch resnet1d."""
    root = tmp_path_factory.mktemp("search-files")
    data = generate_modulation_dataset(
        SyntheticModulationConfig(classes=CLASSES, snr_min=0, snr_max=18, frames_per_class_snr=12)
    )
    data_path = root / "data.npz"
    data.save_npz(data_path)
    torch.manual_seed(0)
    teacher = create_model("resnet1d", len(CLASSES), 2, width=8)
    train_supervised(teacher, data.subset("train"), data.subset("val"), TrainConfig(epochs=1, batch_size=64))
    teacher_path = root / "teacher.pt"
    save_trained(teacher_path, teacher, "resnet1d", {"width": 8}, data)
    return data_path, teacher_path


def _search(run_files, out: Path, *extra: str):
    data, teacher = run_files
    args = ["search", "--teacher", str(teacher), "--data", str(data), "--out", str(out), "--epochs", "2"]
    args += [
        "--threads",
        "1",
        "--set",
        "search.halving.initial=2",
        "--set",
        "search.halving.epochs=1",
        *extra,
    ]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_search_writes_the_document_the_report_and_the_winner(run_files, tmp_path):
    out = tmp_path / "s"
    result = _search(
        run_files, out, "--target", "x86-cpu-onnxruntime-int8", "--latency-budget-ms", "50", *FAST_GRID
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "search.json").read_text())
    assert doc["schema"] == "edgekd.search/1" and doc["target"] == "x86-cpu-onnxruntime-int8"
    assert doc["budget_ms"] == 50 and doc["budget_source"] == "--latency-budget-ms"
    assert len(doc["candidates"]) == 2
    for c in doc["candidates"]:
        for field in ("model", "kwargs", "params", "macs", "latency_ms", "precision", "within_budget",
                      "proxy", "short_accuracy", "final_accuracy", "pareto"):  # fmt: skip
            assert field in c, field
        assert c["precision"] == "int8" and 0 < c["latency_ms"]["p50"] <= c["latency_ms"]["p90"]
        assert c["within_budget"] and c["proxy"] is not None and c["short_accuracy"] is not None
    winner = next(c for c in doc["candidates"] if c["key"] == doc["winner"]["key"])
    assert winner["final_accuracy"] is not None and winner["pareto"] in (True, False)
    # The full run's student is the winner's architecture, ready for edgekd deploy.
    _model, meta = load_checkpoint(out / "student.pt")
    assert meta.model_name == "edgekd:mobilenet1d" and meta.model_kwargs == winner["kwargs"]
    assert "<svg" in (out / "search.html").read_text()
    # The teacher's logits were cached once and read by every run: one cache file.
    assert len(list((out / "teacher_cache").glob("teacher-logits-*.pt"))) == 1

    again = _search(
        run_files, out, "--target", "x86-cpu-onnxruntime-int8", "--latency-budget-ms", "50", *FAST_GRID
    )
    assert again.exit_code == 0, again.output
    second = json.loads((out / "search.json").read_text())
    assert all(c["latency_cached"] for c in second["candidates"])  # a second search measures nothing
    assert [c["latency_ms"] for c in second["candidates"]] == [c["latency_ms"] for c in doc["candidates"]]


def test_a_budget_no_candidate_meets_exits_1_with_one_line(run_files, tmp_path):
    result = _search(
        run_files, tmp_path / "s", "--target", "x86-cpu-onnxruntime-int8", "--latency-budget-ms", "0.000001",
        *FAST_GRID,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no candidate is within the latency budget of 1e-06 ms p50" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s" / "student.pt").exists()


def test_bad_options_are_one_line(run_files, tmp_path):
    bad_family = _search(
        run_files, tmp_path / "a", "--family", "mobilenet1", "--target", "x86-cpu-onnxruntime-int8"
    )
    assert bad_family.exit_code == 2 and "mobilenet1d" in bad_family.output
    bad_knob = _search(
        run_files, tmp_path / "b", "--grid", "widht_mult=0.5", "--target", "x86-cpu-onnxruntime-int8"
    )
    assert bad_knob.exit_code == 2 and "width_mult" in bad_knob.output
    assert "Traceback" not in bad_family.output + bad_knob.output


def _cpu_target(runtime: str) -> TargetProfile:
    profile = {
        "name": f"test-{runtime}",
        "runtime": runtime,
        "precision": "fp32",
        "threads": 1,
        "input_shape": [1, 2, 512],
    }
    return TargetProfile.from_dict(profile)


def test_the_device_decides_the_winner_for_one_budget(tmp_path):
    """Two target profiles, one budget, two winners, each within its budget on its target.

    PyTorch eager pays a fixed cost per module, so a deep MobileNet (depth 6: 17 blocks) is
    slow there (about 1.9 ms against 0.44 ms for depth 0 on [2, 512] frames, one thread),
    while ONNX Runtime fuses the small layers and runs both well under 1 ms. Ranking by MACs
    and training only the top-ranked candidate, the winner is the largest network the measured
    latency admits: the shallow one on the PyTorch target, the deep one on ONNX Runtime.
    """
    data = generate_modulation_dataset(
        SyntheticModulationConfig(
            classes=CLASSES, snr_min=0, snr_max=18, frames_per_class_snr=6, frame_length=512
        )
    )
    data_path = tmp_path / "data.npz"
    data.save_npz(data_path)
    torch.manual_seed(0)
    teacher_path = tmp_path / "teacher.pt"
    save_trained(
        teacher_path, create_model("cnn1d_small", len(CLASSES), 2, width=8), "cnn1d_small", {"width": 8}, data
    )
    grid = {"width_mult": [0.5], "depth": [0, 6], "kernel_size": [5], "stem_stride": [2]}
    section = SearchSection(
        space=SearchSpace(family="mobilenet1d", grid=grid),
        latency_budget_ms=1.0,
        rank_by="macs",
        halving=HalvingConfig(initial=1, epochs=1),
    )
    distill = DistillSection(train=TrainConfig(epochs=1, batch_size=32, num_workers=0))
    winners = {}
    for runtime in ("torch", "onnxruntime"):
        doc, _student = run_search_and_distill(
            section, distill, teacher=teacher_path, data=data_path, target=_cpu_target(runtime),
            out_dir=tmp_path / runtime,
        )  # fmt: skip
        winner = next(c for c in doc["candidates"] if c["key"] == doc["winner"]["key"])
        assert winner["latency_ms"]["p50"] <= 1.0  # within the budget, as measured on its target
        winners[runtime] = winner["kwargs"]["depth"]
    assert winners == {"torch": 0, "onnxruntime": 6}


def test_a_recipe_with_a_search_section_runs_through_edgekd_run(tmp_path):
    """search.enabled: the search runs between the teacher and the distillation stage, whose
    student becomes the winner; export, quantize, bench and gate then run on it."""
    from tests.test_pipeline_e2e import LOOSE_TARGET, TINY, _sets

    target = tmp_path / "loose.yaml"
    target.write_text(LOOSE_TARGET)
    out = tmp_path / "run"
    overrides = [
        *TINY,
        f"gate.target={target}",
        "search.enabled=true",
        "search.space.grid={width_mult: [0.25, 0.5], depth: [0], stem_stride: [2]}",
        "search.halving={initial: 2, epochs: 1}",
        "search.latency.min_seconds=0.05",
        "search.latency.min_runs=20",
    ]
    result = CliRunner().invoke(
        cli, ["run", "modrec", "--out", str(out), "--quiet", "--json", *_sets(overrides)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "search.json").read_text())
    assert doc["target"] == "loose" and doc["budget_ms"] == 1000 and doc["budget_percentile"] == "p90"
    _model, meta = load_checkpoint(out / "student.pt")
    assert meta.model_name == doc["winner"]["model"] and meta.model_kwargs == doc["winner"]["kwargs"]
    assert json.loads(result.stdout)["gate"]["passed"] is True


def test_a_1d_family_on_images_is_one_line(run_files, tmp_path):
    import numpy as np

    from edgekd.data.dataset import ArrayDataset

    rng = np.random.default_rng(0)
    images = ArrayDataset(
        x=rng.standard_normal((40, 3, 16, 16)).astype(np.float32),
        y=np.arange(40) % 4,
        split=np.array([0] * 30 + [1] * 10),  # train, val
        class_names=["a", "b", "c", "d"],
    )
    path = tmp_path / "images.npz"
    images.save_npz(path)
    _data, teacher = run_files
    result = CliRunner().invoke(
        cli,
        ["search", "--teacher", str(teacher), "--data", str(path), "--target", "x86-cpu-onnxruntime-int8",
         "--out", str(tmp_path / "s")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "search family mobilenet1d takes frames ([C, L])" in result.output
    assert "mobilenetv3" in result.output and "Traceback" not in result.output
