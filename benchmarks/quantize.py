"""FP32 vs each INT8 variant per runtime, on the modulation student and a MobileNetV2-like
image student: accuracy (agreement with FP32 where there are no labels), logit SQNR, p50
latency at batch 1 on this CPU, file size. Prints a Markdown table.

    python benchmarks/quantize.py [--quick]

Modulation student: ``cnn1d_small`` (8 classes) trained for a few epochs on synthetic
RadioML-style frames, calibrated on the frames chosen by ``calibration/modrec-stratified-snr``,
accuracy on the test split. Image student: a MobileNetV2-like net (width 0.5, 10 classes)
at 3x224x224 with random weights and BatchNorm statistics set on random images: no labels
exist, so its "accuracy" is top-1 agreement with its own FP32 model on fixed random images
(a strict test: random-weight logits are close to ties). For both, the logit SQNR against
FP32 (dB, ~6 dB per bit) measures fidelity independently of ties.
Latency: median of interleaved batch-1 runs with all cores of this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd import resources
from edgekd.data.calibration import load_calibration_recipe, select_calibration
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.export.onnx_export import ExportConfig, export_onnx, run_onnxruntime
from edgekd.export.openvino_export import compile_cpu, openvino_execution_precision
from edgekd.models.factory import create_model
from edgekd.quantize.assess import model_bytes
from edgekd.quantize.config import QuantizeConfig
from edgekd.quantize.nncf_openvino import quantize_openvino
from edgekd.quantize.ort_build import cpu_count
from edgekd.quantize.ort_static import quantize_onnx_static
from edgekd.quantize.timing import time_batch1, time_openvino_batch1


@dataclasses.dataclass
class Row:
    student: str
    runtime: str
    variant: str
    metric: str
    value: float
    p50_ms: float
    bytes: int
    fp32_ms: float
    fp32_bytes: int
    sqnr_db: float = float("inf")
    note: str = ""


# ----------------------------------------------------------------------------- students
def modulation_student(epochs: int) -> tuple[nn.Module, object]:
    cfg = SyntheticModulationConfig(
        classes=["BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK"], frames_per_class_snr=60
    )
    data = generate_modulation_dataset(cfg)
    train = data.subset("train")
    torch.manual_seed(0)
    model = create_model("cnn1d_small", len(cfg.classes))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data


def _inverted_residual(cin: int, cout: int, stride: int, expand: int) -> nn.Module:
    hidden = cin * expand
    layers: list[nn.Module] = []
    if expand != 1:
        layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
    layers += [
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU6(),
        nn.Conv2d(hidden, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    ]
    block = nn.Sequential(*layers)
    if stride == 1 and cin == cout:
        return _Residual(block)
    return block


class _Residual(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def mobilenet_v2_like(width: float = 0.5, classes: int = 10) -> nn.Module:
    """MobileNetV2 layout (t, c, n, s) scaled by ``width``: [N, 3, 224, 224] -> [N, classes]."""

    def ch(c: int) -> int:
        return max(8, int(c * width + 4) // 8 * 8)

    layers: list[nn.Module] = [nn.Conv2d(3, ch(32), 3, 2, 1, bias=False), nn.BatchNorm2d(ch(32)), nn.ReLU6()]
    cin = ch(32)
    for t, c, n, s in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]:
        for i in range(n):
            layers.append(_inverted_residual(cin, ch(c), s if i == 0 else 1, t))
            cin = ch(c)
    layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
    return nn.Sequential(*layers)


def image_student(images: np.ndarray) -> nn.Module:
    """Random-weight MobileNetV2-like net with BatchNorm statistics set on ``images``."""
    torch.manual_seed(0)
    model = mobilenet_v2_like()
    for module in model.modules():  # cumulative BN statistics over the calibration images
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), 16):
            model(torch.from_numpy(images[start : start + 16]))
    return model.eval()


# ----------------------------------------------------------------------------- measurement
def bench_student(
    name: str, model: nn.Module, calib: np.ndarray, evals: np.ndarray, labels, work: Path
) -> list[Row]:
    """Export, quantize every way, measure. ``labels`` None -> agreement with FP32."""
    fp32 = work / f"{name}.onnx"
    export_onnx(model, evals[:8], fp32, ExportConfig())
    reference = run_onnxruntime(fp32, evals)
    truth = labels if labels is not None else reference.argmax(1)
    metric = "accuracy" if labels is not None else "agreement"
    threads = cpu_count()

    # The default pick (activation type and reduce_range measured on this CPU), then both
    # activation types explicitly with the same reduce_range, timed together with FP32.
    default = quantize_onnx_static(fp32, work / f"{name}.auto.onnx", calib, QuantizeConfig())
    pick = f"default pick = {default.activation_type}" + (", reduce_range" if default.reduce_range else "")
    built = {f"INT8 default ({default.activation_type} act.)": (work / f"{name}.auto.onnx", pick)}
    for act in ("uint8", "int8"):
        path = work / f"{name}.{act}.onnx"
        cfg = QuantizeConfig(activation_type=act, reduce_range=default.reduce_range)
        quantize_onnx_static(fp32, path, calib, cfg)
        built[f"INT8 {act} act."] = (path, "")
    timed = time_batch1({"fp32": fp32, **{k: v[0] for k, v in built.items()}}, evals[:1], threads)
    ort_runs = {"FP32": (fp32, "")} | built
    rows = []
    for variant, (path, note) in ort_runs.items():
        ms = timed["fp32" if variant == "FP32" else variant]
        logits = run_onnxruntime(path, evals)
        rows.append(
            _row(
                name,
                "onnxruntime",
                variant,
                metric,
                reference,
                logits,
                truth,
                ms,
                path,
                timed["fp32"],
                fp32,
                note,
            )
        )

    import openvino as ov

    ov_int8 = work / f"{name}.nncf.xml"
    quantize_openvino(fp32, ov_int8, calib, QuantizeConfig())
    ov_fp32 = work / "ov" / f"{name}.xml"
    ov_fp32.parent.mkdir(exist_ok=True)
    ov.save_model(ov.convert_model(str(fp32)), str(ov_fp32), compress_to_fp16=False)
    ov_timed = time_openvino_batch1({"fp32": ov_fp32, "int8": ov_int8}, evals[:1], threads)
    for variant, path, ms in (("FP32", ov_fp32, ov_timed["fp32"]), ("INT8 NNCF", ov_int8, ov_timed["int8"])):
        compiled = compile_cpu(path, precision="f32")
        logits = np.concatenate([np.array(compiled(evals[i : i + 1])[0]) for i in range(len(evals))])
        note = f"executes {openvino_execution_precision(compiled)}"
        rows.append(
            _row(
                name,
                "openvino",
                variant,
                metric,
                reference,
                logits,
                truth,
                ms,
                path,
                ov_timed["fp32"],
                ov_fp32,
                note,
            )
        )
    return rows


def _sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    noise = float(np.sum((reference - candidate) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def _row(
    student, runtime, variant, metric, reference, logits, truth, ms, path, fp32_ms, fp32_path, note
) -> Row:
    value = float(np.mean(logits.argmax(1) == truth))
    return Row(
        student,
        runtime,
        variant,
        metric,
        value,
        ms,
        model_bytes(path),
        fp32_ms,
        model_bytes(fp32_path),
        _sqnr(reference, logits),
        note,
    )


def markdown(rows: list[Row]) -> str:
    lines = [
        "| student | runtime | variant | accuracy | logit SQNR dB | p50 ms (batch 1) | speed-up vs FP32 "
        "| size | size vs FP32 | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        label = f"{r.value:.2%}" + (" (agr.)" if r.metric == "agreement" else "")
        lines.append(
            f"| {r.student} | {r.runtime} | {r.variant} | {label} | {r.sqnr_db:.1f} | {r.p50_ms:.3f} "
            f"| {r.fp32_ms / r.p50_ms:.2f}x | {r.bytes / 1024:.0f} KiB "
            f"| {r.bytes / r.fp32_bytes:.2f}x | {r.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and frames (a smoke run)")
    args = parser.parse_args()
    start = time.time()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-quantize-") as folder:
        work = Path(folder)
        model, data = modulation_student(epochs=1 if args.quick else 4)
        recipe = load_calibration_recipe(resources.resolve("calibration", "modrec-stratified-snr"))
        calib = select_calibration(data, recipe).samples(data)
        test = data.subset("test")
        rows += bench_student("modulation cnn1d_small", model, calib, test.x, test.y, work)

        rng = np.random.default_rng(0)
        n_eval = 32 if args.quick else 128
        images = rng.normal(0, 1, (64 + n_eval, 3, 224, 224)).astype(np.float32)
        net = image_student(images[:64])
        rows += bench_student("image MobileNetV2-like 0.5x", net, images[:64], images[64:], None, work)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {cpu_count()} cores, Python {platform.python_version()}")
    print(f"torch {torch.__version__}; took {time.time() - start:.0f} s\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
