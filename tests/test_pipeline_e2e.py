"""The demo recipe end to end, at tiny size, through the real CLI; then each stage alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.export.tensorrt.builder import tensorrt_unavailable_reason

TRT_REASON = tensorrt_unavailable_reason()

TINY = [
    "data.synthetic.frames_per_class_snr=3",
    "data.synthetic.snr_min=-4",
    "data.synthetic.snr_max=18",
    "teacher.train.epochs=1",
    "distill.train.epochs=1",
    "bench.latency.min_runs=20",
    "bench.latency.min_seconds=0.05",
    "bench.latency.warmup_runs=2",
    "bench.latency.warmup_seconds=0.0",
    # tiny, barely trained models: INT8 may disagree with FP32 on many frames
    "quantize.min_top1_agreement=0.0",
]
LOOSE_TARGET = """
name: loose
runtime: onnxruntime
precision: int8
budgets:
  max_size_bytes: 10000000
  max_params: 1000000
  max_p90_ms: 1000
  min_accuracy: 0.0
"""
STRICT_TARGET = LOOSE_TARGET.replace("max_p90_ms: 1000", "max_p90_ms: 0.000001")


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    target = root / "loose.yaml"
    target.write_text(LOOSE_TARGET)
    out = root / "run"
    # A TensorRT engine in the recipe: built where TensorRT and a GPU are, else a skipped entry.
    trt = [
        "export.tensorrt.precision=fp16",
        f"export.tensorrt.cache_dir={root / 'trt-cache'}",
        "bench.backends=[torch/fp32,onnxruntime/fp32,onnxruntime/int8,openvino/fp32,tensorrt/fp16]",
    ]
    result = CliRunner().invoke(
        cli, ["demo", "--out", str(out), "--quiet", *_sets([*TINY, *trt, f"gate.target={target}"])]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_demo_writes_bench_report_and_artifacts(demo_run):
    bench = json.loads((demo_run / "bench.json").read_text())
    ids = {entry["id"]: entry for entry in bench["entries"]}
    assert set(ids) == {
        "torch/fp32",
        "onnxruntime/fp32",
        "onnxruntime/int8",
        "openvino/fp32",
        "tensorrt/fp16",
    }
    engine = ids.pop("tensorrt/fp16")
    if TRT_REASON is not None:
        assert engine["status"] == "skipped" and engine["reason"].startswith(TRT_REASON)
        assert not list(demo_run.glob("*.engine"))
    else:
        assert engine["status"] == "ok" and (demo_run / "student.fp16.engine").is_file()
    for entry in ids.values():
        assert entry["status"] == "ok", entry.get("reason")
        assert entry["latency_ms"]["p50"] > 0
        assert 0.0 <= entry["accuracy"]["overall"] <= 1.0
        assert entry["accuracy"]["per_snr"]
    teacher = bench["teacher"]
    assert teacher["path"] == "teacher.pt" and 0.0 <= teacher["accuracy"] <= 1.0
    html = (demo_run / "report.html").read_text()
    assert "<svg" in html
    for name in ("data.npz", "teacher.pt", "student.pt", "student.onnx", "student.xml", "student.int8.onnx"):
        assert (demo_run / name).is_file(), name
        manifest = json.loads((demo_run / f"{name}.json").read_text())
        assert len(manifest["sha256"]) == 64
    student = json.loads((demo_run / "student.pt.json").read_text())
    assert student["metrics"]["compression"] >= 10
    int8 = json.loads((demo_run / "student.int8.onnx.json").read_text())
    assert len(int8["metrics"]["calibration"]["sha256"]) == 64
    assert not list(demo_run.glob("*.tmp")) and not list(demo_run.glob(".*"))


@pytest.mark.slow
def test_gate_alone_passes_and_fails_by_exit_code(demo_run, tmp_path):
    runner = CliRunner()
    loose, strict = tmp_path / "loose.yaml", tmp_path / "strict.yaml"
    loose.write_text(LOOSE_TARGET)
    strict.write_text(STRICT_TARGET)
    bench = str(demo_run / "bench.json")
    assert runner.invoke(cli, ["gate", bench, "--target", str(loose)]).exit_code == 0
    failed = runner.invoke(cli, ["gate", bench, "--target", str(strict), "--json", str(tmp_path / "v.json")])
    assert failed.exit_code == 1, failed.output
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["passed"] is False
    assert [c["metric"] for c in verdict["checks"] if not c["passed"]] == ["p90_ms"]


@pytest.mark.slow
def test_stages_run_alone_from_the_artifacts_before(demo_run, tmp_path):
    runner = CliRunner()
    data = str(demo_run / "data.npz")
    student = tmp_path / "student.pt"
    student.write_bytes((demo_run / "student.pt").read_bytes())
    (tmp_path / "student.pt.json").write_bytes((demo_run / "student.pt.json").read_bytes())
    exported = runner.invoke(cli, ["export", str(student), "--data", data, "--no-openvino", "-q", "--json"])
    assert exported.exit_code == 0, exported.output
    onnx_path = tmp_path / "student.onnx"
    assert onnx_path.is_file() and not (tmp_path / "student.xml").exists()
    report = json.loads(exported.stdout)  # --json: one document on stdout
    assert report["onnx"]["path"] == str(onnx_path) and report["onnx"]["metrics"]["parity"]["passed"]
    quantized = runner.invoke(
        cli, ["quantize", str(onnx_path), "--data", data, "--activation-type", "uint8", "-q", "--json"]
    )
    assert quantized.exit_code == 0, quantized.output
    int8 = tmp_path / "student.int8.onnx"
    assert int8.is_file()
    assert len(json.loads(quantized.stdout)["sha256"]) == 64
    benched = runner.invoke(
        cli,
        [
            "bench",
            str(student),
            str(onnx_path),
            str(int8),
            "--data",
            data,
            "--out",
            str(tmp_path / "b"),
            "--min-runs",
            "10",
            "--min-seconds",
            "0.01",
            "--teacher",
            str(demo_run / "teacher.pt"),
            "-q",
        ],
    )
    assert benched.exit_code == 0, benched.output
    doc = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert [e["id"] for e in doc["entries"]] == ["torch/fp32", "onnxruntime/fp32", "onnxruntime/int8"]
    assert doc["teacher"]["path"] == "teacher.pt"


@pytest.mark.slow
def test_quantize_takes_the_agreement_bar_from_the_command_line(demo_run, tmp_path, monkeypatch):
    """--min-top1-agreement is the config's min_top1_agreement (the check itself is tested in
    tests/quantize); out of [0, 1] it is a usage error in one line."""
    from edgekd.pipeline import quantize_stage

    seen = []
    monkeypatch.setattr(
        quantize_stage, "stage_quantize", lambda model, data, cfg, out, log, **_settings: seen.append(cfg)
    )
    runner = CliRunner()
    out = tmp_path / "x.int8.onnx"
    args = [
        "quantize",
        str(demo_run / "student.onnx"),
        "--data",
        str(demo_run / "data.npz"),
        "--out",
        str(out),
    ]
    assert runner.invoke(cli, [*args, "-q"]).exit_code == 0
    assert runner.invoke(cli, [*args, "--min-top1-agreement", "0.8", "-q"]).exit_code == 0
    assert [cfg.min_top1_agreement for cfg in seen] == [0.9, 0.8]
    wrong = runner.invoke(cli, [*args, "--min-top1-agreement", "1.5"])
    assert wrong.exit_code == 2 and "--min-top1-agreement" in wrong.output and "Traceback" not in wrong.output
    assert len(seen) == 2


@pytest.mark.slow
def test_openvino_int8_and_onnx_teacher_through_the_cli(demo_run, tmp_path):
    """NNCF INT8 of the exported IR, then distillation from the teacher as an ONNX black box."""
    import torch

    from edgekd.models.checkpoint import load_checkpoint

    runner = CliRunner()
    data = str(demo_run / "data.npz")
    ov_int8 = tmp_path / "student.int8.xml"
    result = runner.invoke(
        cli,
        ["quantize", str(demo_run / "student.onnx"), "--data", data, "--runtime", "openvino",
         "--max-accuracy-drop", "1.0", "--out", str(ov_int8), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ov_int8.is_file() and ov_int8.with_suffix(".bin").is_file()
    assert json.loads((tmp_path / "student.int8.xml.json").read_text())["kind"] == "openvino-int8"

    teacher, _ = load_checkpoint(demo_run / "teacher.pt")
    teacher_onnx = tmp_path / "teacher.onnx"
    torch.onnx.export(
        teacher, (torch.zeros(1, 2, 128),), str(teacher_onnx), input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    out = tmp_path / "kd"
    result = runner.invoke(
        cli,
        ["distill", "--config", "modrec", "--data", data, "--teacher", str(teacher_onnx), "--out", str(out),
         "-q", *_sets(["distill.train.epochs=1"])],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "student.pt.json").read_text())
    assert manifest["parents"][1]["file"] == "teacher.onnx"


OPENVINO_TARGET = """
name: loose-openvino
runtime: openvino
precision: int8
threads: 1
budgets:
  max_size_bytes: 10000000
  min_accuracy: 0.0
"""


@pytest.mark.slow
def test_a_recipe_quantizing_with_openvino_runs_through_edgekd_run(tmp_path):
    """quantize.runtime: openvino writes the quantizer's own file (student.int8.xml + .bin), and
    the bench and the gate find it under openvino/int8: no path is fixed to ONNX Runtime's.
    INT8 is timed against FP32 with the target's thread count, as the bench times it."""
    target = tmp_path / "loose-openvino.yaml"
    target.write_text(OPENVINO_TARGET)
    out = tmp_path / "run"
    overrides = [
        *TINY,
        "quantize.runtime=openvino",
        "quantize.max_accuracy_drop=1.0",
        "bench.backends=[torch/fp32,onnxruntime/fp32,openvino/fp32,openvino/int8]",
        f"gate.target={target}",
    ]
    result = CliRunner().invoke(
        cli, ["run", "modrec", "--out", str(out), "--quiet", "--json", *_sets(overrides)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "student.int8.xml").is_file() and (out / "student.int8.bin").is_file()
    assert not (out / "student.int8.onnx").exists()
    manifest = json.loads((out / "student.int8.xml.json").read_text())
    assert manifest["kind"] == "openvino-int8"
    assert manifest["metrics"]["quantization"]["precision"] and manifest["metrics"]["accuracy"]["frames"] > 0
    assert manifest["metrics"]["quantization"]["assessment"]["threads"] == 1
    bench = json.loads((out / "bench.json").read_text())
    entries = {entry["id"]: entry for entry in bench["entries"]}
    assert set(entries) == {"torch/fp32", "onnxruntime/fp32", "openvino/fp32", "openvino/int8"}
    assert entries["openvino/int8"]["status"] == "ok", entries["openvino/int8"].get("reason")
    assert entries["openvino/int8"]["artifact"]["path"].endswith("student.int8.xml")
    gate = json.loads(result.stdout)["gate"]
    assert gate["entry"] == "openvino/int8" and gate["passed"] is True
