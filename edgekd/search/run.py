"""One search: candidates -> measured latency on the target -> training-free ranking ->
successive halving -> the winner, whose full distillation the caller runs (``edgekd search``
and the recipe's search stage both use the distillation stage for it).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.data.artifact import open_data
from edgekd.data.batches import network_input_shape
from edgekd.data.calibration import CalibrationRecipe, calibration_frames
from edgekd.distill.config import KDConfig, TrainConfig
from edgekd.errors import EdgeKDError
from edgekd.models.teacher import load_teacher
from edgekd.search import report
from edgekd.search.config import SearchSection
from edgekd.search.halving import epochs_spent, successive_halving
from edgekd.search.space import Candidate, candidates
from edgekd.search.training import ShortTrainer
from edgekd.targets import TargetProfile

Log = Callable[[str], None]

#: Below this Kendall tau the proxy's ranking is not trusted to pick who is trained (issue #18).
MIN_PROXY_TAU = 0.3


class NothingWithinBudget(EdgeKDError):
    """No candidate's measured latency is within the budget (exit 1: a result, not bad input)."""

    exit_code = 1


@dataclasses.dataclass
class SearchRequest:
    """Everything one search reads. ``host`` None: the target's host."""

    teacher: Path
    data: Path
    target: TargetProfile
    section: SearchSection
    kd: KDConfig
    train: TrainConfig
    out_dir: Path
    host: str | None = None
    threads: int | None = None
    ssh: Any = None
    remote_python: str = "python3"


@dataclasses.dataclass
class SearchOutcome:
    """The search document (not yet written) and the winning candidate."""

    doc: dict[str, Any]
    winner: Candidate


def search_students(req: SearchRequest, log: Log = lambda _line: None) -> SearchOutcome:
    """Run the search; raises NothingWithinBudget when every candidate is over the budget."""
    from edgekd.search.latency import latency_budget, measure_latencies

    started = time.perf_counter()
    req.section.validate()
    dataset = open_data(req.data)
    shape = network_input_shape(dataset)
    _check_family_fits(req.section.space.family, shape, req.data)  # before the teacher is read
    teacher, teacher_name = load_teacher(req.teacher, dataset)
    in_channels = shape[0]
    pool = candidates(req.section.space)
    budget, percentile, source = latency_budget(req.target, req.section.latency_budget_ms)
    frames = _frames(dataset, req.section)
    log(
        f"search: {len(pool)} {req.section.space.family} candidates on {req.target.name}; "
        + _budget_text(budget, percentile, source)
    )

    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    latencies = measure_latencies(
        pool,
        target=req.target,
        frames=frames,
        num_classes=dataset.num_classes,
        work_dir=req.out_dir / "search-work",
        cache_dir=req.out_dir / "search-cache",
        host=req.host,
        threads=req.threads,
        ssh=req.ssh,
        remote_python=req.remote_python,
        latency=req.section.latency,
        log=log,
        progress=lambda done, total: log(f"search: measured {done}/{total}"),
    )
    seconds["latency"] = time.perf_counter() - tick
    within = [c for c in pool if _within(latencies[c.key()], budget, percentile)]
    if not within:
        raise NothingWithinBudget(_over_budget_message(pool, latencies, budget, percentile))

    tick = time.perf_counter()
    ranked, proxies = _rank(req, teacher, within, frames, dataset.num_classes, in_channels, latencies)
    seconds["proxy"] = time.perf_counter() - tick

    tick = time.perf_counter()
    trainer = ShortTrainer(
        teacher, dataset.subset("train"), dataset.subset("val"), req.kd, req.train,
        _cache_dir(req), dataset.num_classes, in_channels, teacher_name=teacher_name,
    )  # fmt: skip
    by_key = {c.key(): c for c in within}
    first = req.section.halving.first_epochs(req.train.epochs)
    winner_key, rounds = successive_halving(
        [c.key() for c in ranked],
        lambda key, epochs: _train_one(trainer, by_key[key], epochs, log),
        req.section.halving,
        first,
        tie_break=lambda key: latencies[key].p50_ms or 0.0,
    )
    seconds["training"] = time.perf_counter() - tick
    seconds["search"] = time.perf_counter() - started
    doc = _document(req, pool, latencies, proxies, rounds, (budget, percentile, source), winner_key, seconds)
    return SearchOutcome(doc, by_key[winner_key])


def finish(doc: dict[str, Any], out_dir: Path, *, final_accuracy: float | None, student: Path | None) -> Path:
    """Record the winner's full distillation and write search.json and search.html."""
    for c in doc["candidates"]:
        if c["key"] == doc["winner"]["key"]:
            c["final_accuracy"] = final_accuracy
    doc["winner"]["student"] = None if student is None else str(student)
    report.mark_pareto(doc["candidates"])
    return report.write_search(doc, out_dir)


def _check_family_fits(family: str, shape: tuple[int, ...], data: Path) -> None:
    """A 1-D family needs [C, L] frames, an image family [C, H, W] images."""
    from edgekd.errors import ConfigError
    from edgekd.search.space import FAMILIES

    inputs = FAMILIES.get(family).inputs
    wanted = 2 if inputs == "frames" else 3
    if len(shape) != wanted:
        kinds = [name for name in FAMILIES if FAMILIES.get(name).inputs != inputs]
        raise ConfigError(
            f"search family {family} takes {inputs} ({'[C, L]' if wanted == 2 else '[C, H, W]'}), "
            f"but {data} holds samples of shape {list(shape)}",
            hint=f"choose a family for this data: {', '.join(kinds)}",
        )


def _frames(dataset: Any, section: SearchSection) -> np.ndarray:
    """A class-stratified batch of real training frames: the proxy's batch and the quick INT8
    calibration of the latency builds (latency does not depend on trained weights)."""
    recipe = CalibrationRecipe(
        name="search", num_samples=section.proxy_frames, selection="stratified_class", seed=section.seed
    )
    return np.ascontiguousarray(calibration_frames(dataset, recipe).frames, dtype=np.float32)


def _within(result: Any, budget: float | None, percentile: str) -> bool:
    if result.status != "ok":
        return False
    value = result.ms(percentile)
    return budget is None or (value is not None and value <= budget)


def _budget_text(budget: float | None, percentile: str, source: str) -> str:
    return "no latency budget" if budget is None else f"budget {budget:g} ms {percentile} ({source})"


def _over_budget_message(
    pool: list[Candidate], latencies: dict[str, Any], budget: float | None, pct: str
) -> str:
    measured = [(latencies[c.key()].ms(pct), c) for c in pool if latencies[c.key()].status == "ok"]
    if not measured:
        reasons = {latencies[c.key()].reason for c in pool}
        return f"no candidate could be built and measured: {'; '.join(sorted(str(r) for r in reasons))}"
    fastest_ms, fastest = min(measured, key=lambda item: item[0])
    return (
        f"no candidate is within the latency budget of {budget:g} ms {pct}: the fastest, "
        f"{fastest.label()}, measured {fastest_ms:.4f} ms; raise --latency-budget-ms or add "
        "smaller shapes to the grid (search.space.grid)"
    )


def _rank(
    req: SearchRequest,
    teacher: Any,
    within: list[Candidate],
    frames: np.ndarray,
    num_classes: int,
    in_channels: int,
    latencies: dict[str, Any],
) -> tuple[list[Candidate], dict[str, Any]]:
    """Candidates best first, and the proxy scores (empty when ranking by MACs)."""
    if req.section.rank_by == "macs":
        # The largest network within budget first: without a proxy, capacity is the usual bet.
        return sorted(within, key=lambda c: -(latencies[c.key()].macs or 0)), {}
    from edgekd.search.proxy import proxy_scores

    scores = proxy_scores(
        teacher, within, torch.from_numpy(frames), num_classes, in_channels, seed=req.section.seed
    )
    return sorted(within, key=lambda c: -scores[c.key()].score), scores


def _cache_dir(req: SearchRequest) -> Path:
    # The recipe's own teacher cache folder when it names one, so a search and the full
    # distillation that follows it read the same cached logits.
    return Path(req.kd.cache_dir) if req.kd.cache_dir else req.out_dir / "teacher_cache"


def _train_one(trainer: ShortTrainer, candidate: Candidate, epochs: int, log: Log) -> float:
    accuracy = trainer(candidate, epochs)
    log(f"search: trained {candidate.label()} for {epochs} epoch(s): val acc {accuracy:.2%}")
    return accuracy


def _document(
    req: SearchRequest,
    pool: list[Candidate],
    latencies: dict[str, Any],
    proxies: dict[str, Any],
    rounds: list[Any],
    budget: tuple[float | None, str, str],
    winner_key: str,
    seconds: dict[str, float],
) -> dict[str, Any]:
    from edgekd.search.proxy import kendall_tau

    first = rounds[0].accuracy
    records = []
    for c in pool:
        lat = latencies[c.key()]
        key = c.key()
        records.append(
            {
                "key": key,
                "label": c.label(),
                "model": c.model,
                "kwargs": c.kwargs_dict(),
                "status": lat.status,
                "reason": lat.reason,
                "params": lat.params,
                "macs": lat.macs,
                "size_bytes": lat.size_bytes,
                "latency_ms": None if lat.p50_ms is None else {"p50": lat.p50_ms, "p90": lat.p90_ms},
                "latency_cached": lat.cached,
                "precision": lat.precision,
                "within_budget": _within(lat, budget[0], budget[1]),
                "proxy": proxies[key].to_dict() if key in proxies else None,
                "short_accuracy": first.get(key),
                "round_accuracy": [r.accuracy[key] for r in rounds if key in r.accuracy],
                "final_accuracy": None,
            }
        )
    records.sort(key=lambda r: (r["latency_ms"] or {}).get("p50", float("inf")))
    trained = [k for k in first if k in proxies]
    tau = kendall_tau([proxies[k].score for k in trained], [first[k] for k in trained]) if trained else None
    doc = {
        "schema": report.SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": req.target.name,
        "runtime": req.target.runtime,
        "precision": req.target.precision,
        "host": req.host or req.target.host,
        "budget_ms": budget[0],
        "budget_percentile": budget[1],
        "budget_source": budget[2],
        "family": req.section.space.family,
        "rank_by": req.section.rank_by,
        "proxy_kendall_tau": tau,
        "halving": {"rounds": [r.to_dict() for r in rounds], "epochs_spent": epochs_spent(rounds)},
        "winner": {
            "key": winner_key,
            **next(
                {"model": c.model, "kwargs": c.kwargs_dict(), "label": c.label()}
                for c in pool
                if c.key() == winner_key
            ),
        },
        "candidates": records,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "notes": _notes(req, tau, len(first), len(trained)),
    }
    report.mark_pareto(doc["candidates"])
    return doc


def _notes(req: SearchRequest, tau: float | None, trained: int, scored: int) -> list[str]:
    if req.section.rank_by != "proxy":
        return ["ranked by MACs (largest within budget first), then by short training"]
    if tau is None:
        return [
            f"proxy: Kendall tau not defined over {scored} trained candidate(s); ranked by short training"
        ]
    if tau < MIN_PROXY_TAU:
        return [
            f"proxy: Kendall tau {tau:.2f} against short-training accuracy over {trained} candidates is "
            f"below {MIN_PROXY_TAU}: it did not predict training here, so the winner rests on short "
            "training alone (set search.rank_by: macs, or raise search.halving.initial to train more)"
        ]
    return [f"proxy: Kendall tau {tau:.2f} against short-training accuracy over {trained} candidates"]


__all__ = ["NothingWithinBudget", "SearchOutcome", "SearchRequest", "finish", "search_students"]
