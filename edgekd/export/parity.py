"""Numerical parity between a reference model's outputs and a converted model's.

Every export and quantization stage ends here: the same element-wise tolerance
(numpy ``allclose`` semantics, ``|c - r| <= atol + rtol * |r|``) plus the
fraction of samples whose top-1 class is unchanged. Both must hold.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekd.errors import ConfigError, ParityError, ShapeError

# Relative error divides by |reference|; clamp the denominator so logits that are
# (nearly) zero give a large but finite number instead of inf.
_REL_FLOOR = 1e-6


@dataclass
class ParityConfig:
    """Tolerances for one comparison.

    ``atol``/``rtol`` are in output units (logits); ``min_top1_agreement`` is a
    fraction in [0, 1] of samples whose argmax must match the reference.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    min_top1_agreement: float = 0.999

    def validate(self) -> None:
        if not self.atol >= 0:  # also rejects NaN
            raise ConfigError(f"parity.atol must be >= 0, got {self.atol}", hint="use e.g. 1e-4")
        if not self.rtol >= 0:
            raise ConfigError(f"parity.rtol must be >= 0, got {self.rtol}", hint="use e.g. 1e-3")
        if not 0.0 <= self.min_top1_agreement <= 1.0:
            raise ConfigError(
                f"parity.min_top1_agreement must be in [0, 1], got {self.min_top1_agreement}",
                hint="it is a fraction of samples, e.g. 0.999",
            )


@dataclass
class ParityReport:
    """Outcome of ``compare_outputs``.

    ``worst`` holds the element that exceeds its tolerance the most (when all pass:
    the one closest to its tolerance): ``{"sample": i, "output": j, "reference": r,
    "candidate": c}`` where ``j`` is the flat index inside one sample's output (the
    class index for logits). Errors are in output units; agreement is a fraction.
    """

    what: str
    samples: int
    max_abs_error: float
    max_rel_error: float
    top1_agreement: float
    worst: dict[str, Any]
    passed: bool
    atol: float = 0.0
    rtol: float = 0.0
    min_top1_agreement: float = 0.0
    elements_out_of_tolerance: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)  # what the producer did besides converting

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data; non-finite floats (NaN/inf) become ``None``."""
        return _json_safe(dataclasses.asdict(self))

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.what}: parity {verdict} on {self.samples} samples, max |err| {self.max_abs_error:.3g}, "
            f"max rel err {self.max_rel_error:.3g}, top-1 agreement {self.top1_agreement:.2%}"
            + "".join(f"; {note}" for note in self.notes)
        )

    def raise_if_failed(self) -> None:
        """Raise ParityError naming the output, the worst element and the tolerance."""
        if self.passed:
            return
        w = self.worst
        problems = []
        if self.elements_out_of_tolerance:
            problems.append(
                f"{self.elements_out_of_tolerance} element(s) outside "
                f"atol={self.atol:g} + rtol={self.rtol:g}*|ref|, "
                f"worst at sample {w.get('sample')} output {w.get('output')}: "
                f"reference {_fmt(w.get('reference'))} vs candidate {_fmt(w.get('candidate'))}"
            )
        if self.top1_agreement < self.min_top1_agreement:
            problems.append(
                f"top-1 agreement {self.top1_agreement:.2%} < required {self.min_top1_agreement:.2%}"
            )
        raise ParityError(
            f"{self.what} disagrees with its reference on {self.samples} samples: " + "; ".join(problems),
            hint="look for data-dependent control flow or unsupported ops in the model, "
            "or loosen the tolerance in the config if this error is acceptable",
        )


def compare_outputs(
    reference: np.ndarray, candidate: np.ndarray, cfg: ParityConfig, what: str
) -> ParityReport:
    """Compare two output arrays of the same shape ``[N, ...]`` (N samples, e.g. ``[N, classes]`` logits).

    Top-1 agreement is the fraction of samples whose argmax over the flattened
    per-sample output is identical. NaN in the candidate (but not the reference)
    counts as out of tolerance.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ShapeError(
            f"{what}: output shape {list(cand.shape)} differs from the reference {list(ref.shape)}",
            hint="compare outputs of the same samples in the same order",
        )
    if ref.ndim == 0 or ref.shape[0] == 0:
        raise ShapeError(
            f"{what}: nothing to compare (shape {list(ref.shape)})", hint="pass at least one sample"
        )
    n = ref.shape[0]
    ref2 = ref.reshape(n, -1)
    cand2 = cand.reshape(n, -1)

    abs_err = np.abs(cand2 - ref2)
    allowed = cfg.atol + cfg.rtol * np.abs(ref2)
    # NaN compares False, so a NaN on either side is out of tolerance unless both are NaN at the same place.
    both_nan = np.isnan(ref2) & np.isnan(cand2)
    ok = (abs_err <= allowed) | both_nan
    # The worst element is the one furthest beyond (or, when all pass, closest to) its own tolerance.
    excess = np.where(both_nan, -np.inf, np.nan_to_num(abs_err - allowed, nan=np.inf, posinf=np.inf))
    sample, out = np.unravel_index(int(np.argmax(excess)), excess.shape)

    rel_err = abs_err / np.maximum(np.abs(ref2), _REL_FLOOR)
    top1 = float(np.mean(np.argmax(ref2, axis=1) == np.argmax(cand2, axis=1)))
    bad = int((~ok).sum())
    return ParityReport(
        what=what,
        samples=n,
        max_abs_error=_nanmax(abs_err, both_nan),
        max_rel_error=_nanmax(rel_err, both_nan),
        top1_agreement=top1,
        worst={
            "sample": int(sample),
            "output": int(out),
            "reference": float(ref2[sample, out]),
            "candidate": float(cand2[sample, out]),
        },
        passed=bad == 0 and top1 >= cfg.min_top1_agreement,
        atol=float(cfg.atol),
        rtol=float(cfg.rtol),
        min_top1_agreement=float(cfg.min_top1_agreement),
        elements_out_of_tolerance=bad,
    )


def _nanmax(values: np.ndarray, ignore: np.ndarray) -> float:
    # A NaN error (one side NaN) is the worst possible error; report it as NaN.
    values = np.where(ignore, 0.0, values)
    if np.isnan(values).any():
        return math.nan
    return float(values.max())


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


__all__ = ["ParityConfig", "ParityReport", "compare_outputs"]
