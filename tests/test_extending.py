"""A runtime backend registered from this test module, not from edgekd, takes part everywhere
runtimes are listed: ``edgekd bench``, ``edgekd deploy`` and target profiles (issue 17).

``toyrt`` runs ONNX files through ONNX Runtime underneath and scales the logits by its
profile section's ``scale`` (argmax, so accuracy, unchanged): a section that reaches the
session is visible in what the session was opened with. The fixture unregisters it again.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.backends.base import (
    BACKENDS,
    Backend,
    DeployOption,
    Session,
    SessionOptions,
    session_from_artifact,
)
from edgekd.backends.profile_options import options_from_target
from edgekd.cli.main import cli
from edgekd.deploy.candidates import catalogue, plan_candidates
from edgekd.errors import ConfigError
from edgekd.targets import TargetProfile, load_target
from tests.bench.onnx_makers import linear_classifier
from tests.deploy.tiny_student import TinyDeploy, build_tiny_deploy

TOY = "toyrt"
#: The ``SessionOptions.extra`` of every toy session opened, in order.
OPENED: list[dict[str, str]] = []


@dataclasses.dataclass
class ToyProfile:
    """toyrt's settings in a target profile: ``scale`` multiplies the logits (> 0)."""

    scale: float = 1.0

    def extra(self) -> dict[str, str]:
        if self.scale <= 0:
            raise ConfigError(f"toyrt.scale must be > 0, got {self.scale}")
        return {"scale": repr(self.scale)}


class ToySession(Session):
    backend = TOY

    def __init__(self, run, input_shape, artifact: Path, scale: float) -> None:
        super().__init__(
            artifact=artifact, input_shape=input_shape, requested_precision="fp32", executed_precision="fp32"
        )
        self._ort_run, self._scale = run, scale

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._ort_run(x) * np.float32(self._scale)


class ToyBackend(Backend):
    name = TOY
    suffixes = (".toy", ".onnx")  # .toy: ONNX bytes that only toyrt claims (bench's default entry)
    precisions = ("fp32", "auto")
    runtime_module = "onnxruntime"
    profile_section = ToyProfile
    devices = ("CPU",)
    device_pattern = r"^(CPU|TOY[0-9])$"
    deploy = (DeployOption("fp32", "onnx", "fp32", 1),)  # reuses deploy's ONNX export recipe

    def _load(self, path: Path, options: SessionOptions) -> Session:
        from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort, ort_runner

        session = open_ort(path, OrtSettings(intra_op_threads=options.threads or 0))
        run, shape = ort_runner(session, path.name)
        OPENED.append(dict(options.extra))
        return ToySession(run, shape, path, float(options.extra.get("scale", "1.0")))


@pytest.fixture
def toy() -> ToyBackend:
    backend = ToyBackend()
    BACKENDS.register(TOY, backend)
    OPENED.clear()
    yield backend
    assert BACKENDS.unregister(TOY) is backend
    assert TOY not in BACKENDS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyDeploy:
    return build_tiny_deploy(tmp_path_factory.mktemp("extending"))


def _target(tmp_path: Path, body: str = "toyrt: {scale: 2.0}\n", device: str = "toy0") -> Path:
    path = tmp_path / "toy-target.yaml"
    path.write_text(f"name: toy-target\nruntime: toyrt\ndevice: {device}\nthreads: 1\n{body}")
    return path


def test_a_target_profile_names_the_toy_runtime_and_carries_its_section(toy, tmp_path: Path) -> None:
    target = load_target(_target(tmp_path))
    assert (target.runtime, target.entry_id) == (TOY, "toyrt/fp32")
    assert target.section(TOY) == ToyProfile(scale=2.0)
    assert options_from_target(target).extra == {"scale": "2.0"}
    assert target.to_dict()[TOY] == {"scale": 2.0}  # `edgekd targets` shows it, and it loads back
    assert TargetProfile.from_dict(target.to_dict()) == target

    result = CliRunner().invoke(cli, ["targets", str(_target(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "runtime: toyrt" in result.stdout and "toyrt:\n  scale: 2.0" in result.stdout


@pytest.mark.parametrize(
    ("body", "device", "fragment"),
    [
        ("toyrt: {scal: 2.0}\n", "toy0", "did you mean 'scale'"),  # the section loads strictly
        ("toyrt: {scale: -1.0}\n", "toy0", "toyrt.scale must be > 0"),  # and is validated
        ("toyrtt: {scale: 2.0}\n", "toy0", "did you mean 'toyrt'"),  # a section name is a known key
        ("", "GPU", "not a toyrt device"),  # devices come from device_pattern
    ],
)
def test_a_bad_toy_profile_is_one_line(toy, tmp_path: Path, body: str, device: str, fragment: str) -> None:
    result = CliRunner().invoke(cli, ["targets", str(_target(tmp_path, body, device))])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_without_the_registration_the_profile_is_refused(tmp_path: Path) -> None:
    assert TOY not in BACKENDS
    with pytest.raises(ConfigError, match="runtime must be one of") as info:
        load_target(_target(tmp_path, ""))
    assert "toyrt" in info.value.message


def test_bench_runs_the_toy_backend_with_its_target_section(toy, tiny: TinyDeploy, tmp_path: Path) -> None:
    onnx = linear_classifier(tmp_path / "student.onnx")
    toy_file = tmp_path / "student.toy"
    shutil.copyfile(onnx, toy_file)
    argv = [
        "bench",
        str(onnx),
        str(toy_file),  # its entry comes from ToyBackend.artifact_entry: toyrt/fp32
        "--data",
        str(tiny.data),
        "--out",
        str(tmp_path / "bench"),
        "--target",
        str(_target(tmp_path)),
        "--reference",
        "onnxruntime/fp32",
        "--min-runs",
        "5",
        "--min-seconds",
        "0",
        "--json",
        "--quiet",
    ]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    entries = {e["id"]: e for e in json.loads(result.stdout)["entries"]}
    assert set(entries) == {"onnxruntime/fp32", "toyrt/fp32"}
    toy_entry, ort_entry = entries["toyrt/fp32"], entries["onnxruntime/fp32"]
    assert toy_entry["status"] == "ok", toy_entry
    assert toy_entry["latency_ms"]["p50"] > 0
    assert toy_entry["accuracy"] == ort_entry["accuracy"]  # the same model, scaled logits
    assert {"scale": "2.0"} in OPENED  # the target's toyrt: section reached the session


def test_deploy_plans_builds_and_measures_the_toy_candidate(toy, tiny: TinyDeploy, tmp_path: Path) -> None:
    assert "toyrt/fp32" in [spec.id for spec in catalogue()]
    target = load_target(_target(tmp_path))
    plan = plan_candidates(target, host="ssh://pi@board", student_is_onnx=False)
    remote = {p.id: p.skip_reason for p in plan}
    assert "does not run on a device over SSH" in remote["toyrt/fp32"]  # toyrt is not `remote`

    out = tmp_path / "deploy"
    argv = ["deploy", str(tiny.student), "--target", str(_target(tmp_path)), "--data", str(tiny.data)]
    argv += ["--out", str(out), "--runtimes", "torch,toyrt", "--min-runs", "5", "--min-seconds", "0"]
    result = CliRunner().invoke(cli, [*argv, "--threads", "1", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    by_id = {c["id"]: c for c in json.loads(result.stdout)["candidates"]}
    toy_candidate = by_id["toyrt/fp32"]
    assert toy_candidate["status"] == "ok", toy_candidate
    assert toy_candidate["build_recipe"] == "onnx" and toy_candidate["artifact"]["path"].endswith(".onnx")
    assert toy_candidate["figures"]["p50_ms"] > 0
    assert toy_candidate["verdict"] in ("chosen", "kept", "rejected")  # judged by the rule
    assert abs(toy_candidate["accuracy_drop"]) < 0.02  # the student's own logits, scaled
    assert toy_candidate["session_options"]["extra"] == {"scale": "2.0"}
    assert by_id["onnxruntime/fp32"]["reason"].startswith("not among the requested runtimes")


DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _doc_module(heading: str, folder: Path) -> ModuleType:
    """The one python block of docs/extending.md's section ``heading``, imported as a module."""
    section = DOC.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    name = "doc_" + re.sub(r"\W", "_", heading.lower())
    (folder / f"{name}.py").write_text(block)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_backend_runs_everywhere_runtimes_are_listed(tiny: TinyDeploy, tmp_path: Path) -> None:
    from edgekd.data.dataset import load_npz
    from edgekd.runtime.onnxruntime_open import open_ort, ort_runner

    _doc_module("A runtime backend", tmp_path)
    try:
        onnx = linear_classifier(tmp_path / "student.onnx")
        x = load_npz(tiny.data).x[:8]
        checked = SessionOptions(extra={"check_shapes": "true"})
        logits = session_from_artifact("onnx-reference", onnx, checked).run(x)
        ort_run, _shape = ort_runner(open_ort(onnx), onnx.name)
        np.testing.assert_allclose(logits, ort_run(x), rtol=1e-5, atol=1e-5)
        target_file = tmp_path / "ref.yaml"
        target_file.write_text("name: ref\nruntime: onnx-reference\nonnx-reference: {check_shapes: true}\n")
        target = load_target(target_file)
        assert options_from_target(target).extra == {"check_shapes": "true"}
        assert "onnx-reference/fp32" in [spec.id for spec in catalogue()]
    finally:
        BACKENDS.unregister("onnx-reference")


def test_the_documented_loss_and_data_source_run(tmp_path: Path) -> None:
    import torch

    from edgekd.data.sources import DATA_SOURCES, DataSpec, load_dataset
    from edgekd.distill.losses import LOSSES

    _doc_module("A distillation loss", tmp_path)
    _doc_module("A data source", tmp_path)
    try:
        student, teacher = torch.randn(4, 3), torch.randn(4, 3)
        loss = LOSSES.get("logit_mse")(student, teacher, torch.zeros(4, dtype=torch.long), temperature=2.0)
        assert torch.allclose(loss, torch.nn.functional.mse_loss(student / 2, teacher / 2))
        data = load_dataset(DataSpec(source="noisy_tones", options={"frames": 32}))
        assert data.x.shape == (32, 2, 128) and data.class_names == ["slow", "fast"]
        with pytest.raises(ConfigError, match="has no option 'frame'") as info:
            load_dataset(DataSpec(source="noisy_tones", options={"frame": 32}))
        assert "did you mean 'frames'" in info.value.one_line()
    finally:
        LOSSES.unregister("logit_mse")
        DATA_SOURCES.unregister("noisy_tones")


def test_the_documented_quantizer_is_picked_by_its_runtime_name(tmp_path: Path) -> None:
    from edgekd.config import from_dict
    from edgekd.pipeline.conversion import quantize_step
    from edgekd.quantize.config import QuantizeConfig
    from edgekd.quantize.protocol import QuantizeInputs
    from edgekd.quantize.quantizers import QUANTIZERS, quantizer_for
    from edgekd.runtime.precision import onnx_op_types, read_onnx

    _doc_module("A quantizer", tmp_path)
    try:
        source = linear_classifier(tmp_path / "student.onnx")
        cfg = from_dict(QuantizeConfig, {"runtime": "ort-dynamic-u8"})
        out = quantizer_for(cfg).output_path(tmp_path, source)
        result = quantize_step(source, out, cfg, QuantizeInputs(np.zeros((4, 2, 128), np.float32)))
        assert out.name == "student.dyn8.onnx"
        assert result.to_dict() == {"quantization": {"weight_type": "uint8"}}
        assert "DynamicQuantizeLinear" in onnx_op_types(read_onnx(out))
    finally:
        QUANTIZERS.unregister("ort-dynamic-u8")


def test_the_documented_search_family_gives_its_candidates(tmp_path: Path) -> None:
    import torch

    from edgekd.search.space import FAMILIES, SearchSpace, candidates

    _doc_module("A search family", tmp_path)
    try:
        pool = candidates(SearchSpace(family="cnn1d_tiny"))
        assert [c.label() for c in pool[:2]] == ["cnn1d_small w4 k3", "cnn1d_small w4 k5"] and len(pool) == 6
        assert pool[0].build(4, 2)(torch.randn(2, 2, 64)).shape == (2, 4)
        with pytest.raises(ConfigError, match="taken"):
            FAMILIES.register("mobilenet1d", FAMILIES.get("cnn1d_tiny"))
    finally:
        FAMILIES.unregister("cnn1d_tiny")
