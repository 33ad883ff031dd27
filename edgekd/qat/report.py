"""FP32 / PTQ INT8 / QAT INT8 accuracy side by side: rows, drops, a Markdown table.

Accuracies are fractions in [0, 1] scored by ``edgekd.bench.accuracy.score`` on the same
frames; drops are FP32 minus the row, in points (percentage points, 1.0 = one point).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgekd.bench.accuracy import score
from edgekd.data.dataset import ArrayDataset


@dataclasses.dataclass
class AccuracyRow:
    """One model on the evaluation frames. ``snr_ge0`` is None without SNR labels."""

    name: str
    runtime: str
    overall: float
    snr_ge0: float | None
    per_snr: dict[str, float]

    def drop_points(self, fp32: AccuracyRow) -> float:
        return 100.0 * (fp32.overall - self.overall)


def accuracy_row(name: str, runtime: str, logits: np.ndarray, data: ArrayDataset) -> AccuracyRow:
    """Score logits [N, K] against ``data``'s labels: overall, SNR >= 0 dB and per SNR."""
    report = score(np.asarray(logits).argmax(axis=1), data)
    snr_ge0 = None
    if data.snr is not None and (data.snr >= 0).any():
        snr_ge0 = float(np.mean(report.predictions[data.snr >= 0] == data.y[data.snr >= 0]))
    return AccuracyRow(name, runtime, report.overall, snr_ge0, report.to_dict()["per_snr"])


def comparison(rows: list[AccuracyRow], frames: int) -> dict[str, Any]:
    """JSON-ready rows with drops against the first (FP32) row, in points, on ``frames`` frames."""
    fp32 = rows[0]
    out = []
    for row in rows:
        record = dataclasses.asdict(row)
        record["drop_points"] = row.drop_points(fp32)
        if row.snr_ge0 is not None and fp32.snr_ge0 is not None:
            record["drop_points_snr_ge0"] = 100.0 * (fp32.snr_ge0 - row.snr_ge0)
        out.append(record)
    return {"frames": frames, "rows": out}


def markdown_table(rows: list[AccuracyRow]) -> str:
    """| model | runtime | accuracy | drop | accuracy SNR >= 0 dB | drop | as Markdown."""
    fp32 = rows[0]
    lines = [
        "| model | runtime | accuracy | drop (points) | accuracy SNR >= 0 dB | drop (points) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        hi = f"{row.snr_ge0:.2%}" if row.snr_ge0 is not None else "n/a"
        hi_drop = (
            f"{100.0 * (fp32.snr_ge0 - row.snr_ge0):+.2f}"
            if row.snr_ge0 is not None and fp32.snr_ge0 is not None
            else "n/a"
        )
        lines.append(
            f"| {row.name} | {row.runtime} | {row.overall:.2%} | {row.drop_points(fp32):+.2f} "
            f"| {hi} | {hi_drop} |"
        )
    return "\n".join(lines)
