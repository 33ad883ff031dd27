"""Numerical parity between a reference model's outputs and a converted model's.

Every export and quantization stage ends here: the same element-wise tolerance
(numpy ``allclose`` semantics, ``|c - r| <= atol + rtol * |r|``) plus the
fraction of samples whose top-1 class is unchanged. Both must hold, and neither side
may hold NaN or Inf: a model whose outputs are not finite fails parity, whatever the
other side says (two all-NaN outputs "agree" perfectly, and mean nothing).
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
    # Frames (samples) with any NaN/Inf output, on each side; either one > 0 fails parity.
    nonfinite_reference: int = 0
    nonfinite_candidate: int = 0
    reference_name: str = "the reference"
    candidate_name: str = "the candidate"
    notes: list[str] = dataclasses.field(default_factory=list)  # what the producer did besides converting

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data; non-finite floats (NaN/inf) become ``None``."""
        return _json_safe(dataclasses.asdict(self))

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        if self.nonfinite_reference or self.nonfinite_candidate:
            return f"{self.what}: parity FAIL on {self.samples} samples: " + "; ".join(self._nonfinite())
        return (
            f"{self.what}: parity {verdict} on {self.samples} samples, max |err| {self.max_abs_error:.3g}, "
            f"max rel err {self.max_rel_error:.3g}, top-1 agreement {self.top1_agreement:.2%}"
            + "".join(f"; {note}" for note in self.notes)
        )

    def raise_if_failed(self) -> None:
        """Raise ParityError naming the output, the worst element and the tolerance."""
        if self.passed:
            return
        if self.nonfinite_reference or self.nonfinite_candidate:
            raise ParityError(
                f"{self.what}: " + "; ".join(self._nonfinite()),
                hint="the model's weights or its input frames hold NaN/Inf, or an operation overflows: "
                "check the checkpoint and the data, or retrain",
            )
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

    def _nonfinite(self) -> list[str]:
        sides = [
            (self.reference_name, self.nonfinite_reference),
            (self.candidate_name, self.nonfinite_candidate),
        ]
        return [
            f"outputs of {name} are NaN/Inf on {count} of {self.samples} frames"
            for name, count in sides
            if count
        ]


def compare_outputs(
    reference: np.ndarray,
    candidate: np.ndarray,
    cfg: ParityConfig,
    what: str,
    *,
    reference_name: str = "the reference",
    candidate_name: str | None = None,
) -> ParityReport:
    """Compare two output arrays of the same shape ``[N, ...]`` (N samples, e.g. ``[N, classes]`` logits).

    Top-1 agreement is the fraction of samples whose argmax over the flattened
    per-sample output is identical. Any NaN or Inf, on either side, fails parity:
    the report counts the frames holding one per side, named ``reference_name`` and
    ``candidate_name`` (default ``what``) in the error.
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

    ref_finite, cand_finite = np.isfinite(ref2), np.isfinite(cand2)
    finite = ref_finite & cand_finite
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, counted below
        abs_err = np.abs(cand2 - ref2)
        allowed = cfg.atol + cfg.rtol * np.abs(ref2)
        # A non-finite element on either side is out of tolerance (NaN compares False anyway).
        ok = (abs_err <= allowed) & finite
        # The worst element is the one furthest beyond (or, when all pass, closest to) its tolerance.
        excess = np.where(finite, abs_err - allowed, np.inf)
        rel_err = abs_err / np.maximum(np.abs(ref2), _REL_FLOOR)
    sample, out = np.unravel_index(int(np.argmax(excess)), excess.shape)
    top1 = float(np.mean(np.argmax(ref2, axis=1) == np.argmax(cand2, axis=1)))
    bad = int((~ok).sum())
    nonfinite_ref = int((~ref_finite).any(axis=1).sum())
    nonfinite_cand = int((~cand_finite).any(axis=1).sum())
    return ParityReport(
        what=what,
        samples=n,
        max_abs_error=_nanmax(abs_err),
        max_rel_error=_nanmax(rel_err),
        top1_agreement=top1,
        worst={
            "sample": int(sample),
            "output": int(out),
            "reference": float(ref2[sample, out]),
            "candidate": float(cand2[sample, out]),
        },
        passed=bad == 0 and top1 >= cfg.min_top1_agreement and not (nonfinite_ref or nonfinite_cand),
        atol=float(cfg.atol),
        rtol=float(cfg.rtol),
        min_top1_agreement=float(cfg.min_top1_agreement),
        elements_out_of_tolerance=bad,
        nonfinite_reference=nonfinite_ref,
        nonfinite_candidate=nonfinite_cand,
        reference_name=reference_name,
        candidate_name=candidate_name or what,
    )


def require_finite_outputs(outputs: np.ndarray, name: str) -> None:
    """ParityError unless every output of ``outputs`` ``[N, ...]`` (N frames) is finite.

    For a reference computed before any conversion: a model that already gives NaN/Inf
    is refused before anything is built from it."""
    values = np.asarray(outputs)
    if values.ndim == 0 or len(values) == 0:
        return
    bad = int((~np.isfinite(values.reshape(len(values), -1))).any(axis=1).sum())
    if bad:
        raise ParityError(
            f"outputs of {name} are NaN/Inf on {bad} of {len(values)} frames",
            hint="the model's weights or its input frames hold NaN/Inf, or an operation overflows: "
            "check the checkpoint and the data, or retrain",
        )


def _nanmax(values: np.ndarray) -> float:
    # A NaN error (one side NaN, or inf - inf) is the worst possible error; report it as NaN.
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


__all__ = ["ParityConfig", "ParityReport", "compare_outputs", "require_finite_outputs"]
