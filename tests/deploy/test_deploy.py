"""``deploy_student`` end to end on a tiny trained student, with the real runtimes.

Every test runs real exports, real INT8 quantizers (ONNX Runtime, NNCF) and the real bench
harness; latency settings are tiny, so figures are not meaningful, only the flow is.
Cache behaviour is asserted through the counters deploy.json records, not through timing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.artifacts import sha256_file
from edgekd.backends.base import BACKENDS
from edgekd.bench.latency import LatencyConfig
from edgekd.data.dataset import load_npz
from edgekd.deploy.choose import NothingWithinBudget, replay
from edgekd.deploy.run import DeployOptions, deploy_student
from edgekd.models.checkpoint import load_checkpoint, save_checkpoint
from edgekd.targets import load_target
from tests.deploy.tiny_student import TinyDeploy, build_tiny_deploy

FAST = LatencyConfig(warmup_runs=2, warmup_seconds=0.0, min_runs=10, min_seconds=0.0, max_seconds=2.0)
ORT_ONLY = ("torch", "onnxruntime")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyDeploy:
    return build_tiny_deploy(tmp_path_factory.mktemp("deploy_inputs"))


def _deploy(
    student: Path, data: Path, out: Path, *, target: str = "x86-cpu-onnxruntime-int8", **kwargs
) -> dict:
    kwargs.setdefault("latency", FAST)
    kwargs.setdefault("threads", 1)
    lines: list[str] = []
    doc = deploy_student(
        student, load_target(target), data, DeployOptions(out_dir=out, **kwargs), log=lines.append
    )
    doc["_log"] = lines
    return doc


def _by_id(doc: dict) -> dict[str, dict]:
    return {c["id"]: c for c in doc["candidates"]}


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.is_dir()]


def test_deploy_writes_the_winner_and_a_replayable_document(tiny: TinyDeploy, tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = _deploy(tiny.student, tiny.data, out)
    by_id = _by_id(doc)
    ran = [cid for cid, c in by_id.items() if c["status"] == "ok"]
    assert {"torch/fp32", "onnxruntime/fp32", "onnxruntime/int8-u8", "onnxruntime/int8-s8"} <= set(ran)
    assert {"openvino/fp32", "openvino/int8"} <= set(ran)
    for cid in ran:
        fig = by_id[cid]["figures"]
        assert fig["p50_ms"] > 0 and 0 <= fig["accuracy"] <= 1 and fig["runs"] >= FAST.min_runs
        assert by_id[cid]["why"]
    assert by_id["onnxruntime/int8-u8"]["figures"]["executed_precision"] == "int8"
    assert by_id["tensorrt/int8"]["verdict"] == "skipped"  # never faked: TensorRT is not here

    chosen = doc["choice"]["chosen"]
    assert by_id[chosen]["verdict"] == "chosen" and by_id[chosen]["why"] == "chosen"
    assert sum(c["verdict"] == "chosen" for c in doc["candidates"]) == 1

    saved = json.loads((out / "deploy.json").read_text())
    assert saved["schema"] == "edgekd.deploy/1" and saved["choice"] == doc["choice"]
    assert replay(saved).chosen == chosen
    deployed = out / saved["deployed"]["file"]
    assert deployed.stem == "deployed" and deployed.suffix == Path(by_id[chosen]["artifact"]["path"]).suffix
    assert saved["deployed"]["sha256"] == by_id[chosen]["artifact"]["sha256"]
    manifest = json.loads((out / f"{deployed.name}.json").read_text())
    assert manifest["config"]["candidate"] == chosen
    assert [r["id"] for r in manifest["deploy"]["candidates"]] == list(by_id)
    assert manifest["parents"][1]["sha256"] == sha256_file(tiny.student)
    assert _no_temp_files(out)


def test_second_run_builds_and_measures_nothing(tiny: TinyDeploy, tmp_path: Path) -> None:
    first = _deploy(tiny.student, tiny.data, tmp_path / "a", cache_dir=tmp_path / "cache", runtimes=ORT_ONLY)
    ran = sum(c["status"] == "ok" for c in first["candidates"])
    assert first["cache"]["build_misses"] == 3  # the ONNX export and two INT8 variants
    assert first["cache"]["measure_misses"] == ran == 4 and first["cache"]["measure_hits"] == 0

    second = _deploy(tiny.student, tiny.data, tmp_path / "b", cache_dir=tmp_path / "cache", runtimes=ORT_ONLY)
    assert second["cache"]["build_misses"] == 0 and second["cache"]["build_hits"] == 3
    assert second["cache"]["measure_misses"] == 0 and second["cache"]["measure_hits"] == ran
    assert not any(line.startswith("[") for line in second["_log"])  # the bench harness never ran
    assert second["choice"] == first["choice"]
    for a, b in zip(first["candidates"], second["candidates"], strict=True):
        assert a["figures"] == b["figures"]
        assert b["status"] != "ok" or b["measurement"]["cached"] is True


def test_changes_invalidate_only_what_depends_on_them(tiny: TinyDeploy, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _deploy(tiny.student, tiny.data, tmp_path / "a", cache_dir=cache, runtimes=ORT_ONLY)

    # Another calibration recipe: only the INT8 builds and their measurements are redone.
    recal = _deploy(
        tiny.student, tiny.data, tmp_path / "b", cache_dir=cache, runtimes=ORT_ONLY, calibration="random-256"
    )
    by_id = _by_id(recal)
    assert recal["cache"]["build_misses"] == 2 and recal["cache"]["build_hits"] == 1
    assert by_id["onnxruntime/fp32"]["measurement"]["cached"] is True
    assert by_id["torch/fp32"]["measurement"]["cached"] is True
    assert by_id["onnxruntime/int8-u8"]["build"]["cached"] is False

    # The same weights saved again with other metadata: a new student file. PyTorch eager is
    # measured again (its artifact is that file) and the export re-runs, but the ONNX it gives
    # is byte-identical, so everything built from it is found in the cache.
    model, meta = load_checkpoint(tiny.student)
    resaved = tmp_path / "resaved.pt"
    save_checkpoint(
        resaved,
        model,
        model_name=meta.model_name,
        model_kwargs=meta.model_kwargs,
        num_classes=meta.num_classes,
        in_channels=meta.in_channels,
        input_shape=meta.input_shape,
        class_names=meta.class_names,
        metrics={"note": "re-saved"},
    )
    assert sha256_file(resaved) != sha256_file(tiny.student)
    again = _deploy(resaved, tiny.data, tmp_path / "c", cache_dir=cache, runtimes=ORT_ONLY)
    by_id = _by_id(again)
    assert by_id["torch/fp32"]["measurement"]["cached"] is False
    assert by_id["onnxruntime/fp32"]["build"]["cached"] is False  # exported again ...
    assert by_id["onnxruntime/fp32"]["measurement"]["cached"] is True  # ... to the same bytes
    assert by_id["onnxruntime/int8-u8"]["build"]["cached"] is True
    assert again["cache"]["measure_misses"] == 1

    # New weights: nothing built from the old student stands for the new one.
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
    changed = tmp_path / "changed.pt"
    save_checkpoint(
        changed,
        model,
        model_name=meta.model_name,
        model_kwargs=meta.model_kwargs,
        num_classes=meta.num_classes,
        in_channels=meta.in_channels,
        input_shape=meta.input_shape,
        class_names=meta.class_names,
    )
    fresh = _deploy(changed, tiny.data, tmp_path / "d", cache_dir=cache, runtimes=ORT_ONLY)
    assert fresh["cache"]["build_hits"] == 0 and fresh["cache"]["measure_hits"] == 0


@pytest.fixture(scope="module")
def outlier_student(tiny: TinyDeploy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny student with one first-layer channel pushed to ~3000 and ignored by the next layer:
    FP32 outputs are unchanged, but INT8 activation ranges span 0..3000 and crush the real signal."""
    model, meta = load_checkpoint(tiny.student)
    first_bn, second_conv = model.features[0][1], model.features[1][0]
    with torch.no_grad():
        first_bn.bias[3] = 3000.0
        second_conv.weight[:, 3] = 0.0
    path = tmp_path_factory.mktemp("outlier") / "outlier.pt"
    save_checkpoint(
        path,
        model,
        model_name=meta.model_name,
        model_kwargs=meta.model_kwargs,
        num_classes=meta.num_classes,
        in_channels=meta.in_channels,
        input_shape=meta.input_shape,
        class_names=meta.class_names,
    )
    return path


def test_over_budget_int8_rejected_and_missing_runtime_reported(
    tiny: TinyDeploy, outlier_student: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "openvino is not installed (simulated): pip install openvino"
    monkeypatch.setattr(BACKENDS.get("openvino"), "unavailable_reason", lambda: reason)
    doc = _deploy(outlier_student, tiny.data, tmp_path / "out", target="x86-cpu-openvino-int8")
    by_id = _by_id(doc)
    ref = doc["choice"]["reference_accuracy"]
    assert doc["choice"]["reference"] == "torch/fp32" and ref > 0.5
    for cid in ("onnxruntime/int8-u8", "onnxruntime/int8-s8"):
        c = by_id[cid]
        assert c["verdict"] == "rejected", c
        assert c["why"].startswith("over accuracy budget: -") and c["why"].endswith("> 3.00")
        assert c["accuracy_drop"] > 0.03
    for cid in ("openvino/fp32", "openvino/int8"):
        assert by_id[cid]["verdict"] == "skipped"
        assert by_id[cid]["why"] == f"runtime not installed: {reason}"
        assert by_id[cid]["artifact"] is None  # nothing was built for a runtime that is not here
    assert doc["choice"]["chosen"] in ("torch/fp32", "onnxruntime/fp32")
    assert doc["rule"]["budget_source"] == "target x86-cpu-openvino-int8"


def test_nothing_within_budget_writes_the_table_but_no_winner(tiny: TinyDeploy, tmp_path: Path) -> None:
    # Shuffled labels: every candidate is near chance, under the target's min_accuracy.
    data = load_npz(tiny.data)
    data.y = np.random.default_rng(0).permutation(data.y)
    shuffled = tmp_path / "shuffled.npz"
    data.save_npz(shuffled)
    target = tmp_path / "strict.yaml"
    target.write_text("name: strict\nruntime: onnxruntime\ndevice: CPU\nbudgets:\n  min_accuracy: 0.9\n")
    out = tmp_path / "out"
    with pytest.raises(NothingWithinBudget) as info:
        _deploy(tiny.student, shuffled, out, target=str(target), runtimes=["onnxruntime"])
    assert info.value.exit_code == 1
    saved = json.loads((out / "deploy.json").read_text())
    assert saved["choice"]["chosen"] is None
    ran = [c for c in saved["candidates"] if c["status"] == "ok"]
    assert ran and all(c["why"].startswith("under min_accuracy") for c in ran)
    assert not list(out.glob("deployed.*"))


def test_a_failed_winner_copy_leaves_no_half_file(
    tiny: TinyDeploy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    _deploy(tiny.student, tiny.data, tmp_path / "warm", cache_dir=cache, runtimes=ORT_ONLY)

    def copy_half_then_fail(src, dst, *args, **kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
    with pytest.raises(OSError):
        _deploy(tiny.student, tiny.data, out, cache_dir=cache, runtimes=ORT_ONLY)
    assert not list(out.glob("deployed*")) and not (out / "deploy.json").exists()
    assert _no_temp_files(out)
