"""Figures over an eval's episodes: success rate with a 95 % Wilson interval, per task, steps and seconds,
end reasons, parse-error rate, and how well confidence predicts a wrong step (reliability table, AUROC).

    summary = summarize(results)          # an EvalSummary (pydantic): JSON for the index, rows for a table

Success rate counts the episodes whose run came to an outcome (succeeded, failed, interrupted); episodes the
harness could not run even after retries are counted apart (``harness_errors``), since they say nothing about
the agent.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Iterable, Sequence

from tracer.evals import Calibration as Calibration
from tracer.evals import EpisodeResult, task_key, task_titles
from tracer.evals import EvalSummary as EvalSummary
from tracer.evals import Rate as Rate
from tracer.evals import ReliabilityBin as ReliabilityBin
from tracer.evals import Spread as Spread
from tracer.evals import TaskSummary as TaskSummary

Z95 = 1.959963984540054
CONFIDENCE_BINS = 10


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion; None when there is nothing to estimate (n = 0)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes ({successes}) must be between 0 and n ({n})")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 and n the interval's end is exactly 0 or 1 (the float sum rounds a hair inside it).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` ranking the positives first (ties count a half); None when one
    class is missing. Mann-Whitney U over all pairs, via ranks."""
    if len(scores) != len(positives):
        raise ValueError("scores and labels differ in length")
    n_pos = sum(1 for p in positives if p)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # average rank of a tie
        i = j + 1
    rank_sum = sum(r for r, p in zip(ranks, positives, strict=True) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def rate(successes: int, n: int) -> Rate:
    interval = wilson_interval(successes, n)
    return Rate(
        successes=successes,
        n=n,
        rate=successes / n if n else None,
        low=interval[0] if interval else None,
        high=interval[1] if interval else None,
    )


def spread(values: Iterable[float]) -> Spread:
    data = list(values)
    return Spread(mean=statistics.fmean(data) if data else None, median=statistics.median(data) if data else None)


def calibration(pairs: Sequence[tuple[float, bool]], source: str = "step outcome is an error") -> Calibration:
    wrong = sum(1 for _, w in pairs if w)
    bins: list[ReliabilityBin] = []
    if pairs:
        for b in range(CONFIDENCE_BINS):
            low, high = b / CONFIDENCE_BINS, (b + 1) / CONFIDENCE_BINS
            inside = [(c, w) for c, w in pairs if low <= c < high or (b == CONFIDENCE_BINS - 1 and c == 1.0)]
            bins.append(
                ReliabilityBin(
                    low=low,
                    high=high,
                    steps=len(inside),
                    mean_confidence=statistics.fmean(c for c, _ in inside) if inside else None,
                    wrong_rate=sum(1 for _, w in inside if w) / len(inside) if inside else None,
                )
            )
    return Calibration(
        steps=len(pairs),
        wrong=wrong,
        source=source,
        auroc=auroc([1 - c for c, _ in pairs], [w for _, w in pairs]) if pairs else None,
        bins=bins,
    )


def end_reason_kind(reason: str) -> str:
    """An end reason without its particulars, so that like reasons count together ("step limit reached (N steps)")."""
    head = re.split(r"; |: ", reason, maxsplit=1)[0]
    return re.sub(r"\d+(\.\d+)?", "N", head).strip() or "(none)"


def summarize(results: Sequence[EpisodeResult], planned: int | None = None) -> EvalSummary:
    ran = [r for r in results if r.status != "harness_error"]
    titles = task_titles((r.episode_id, r.task_name) for r in results)
    by_task: dict[str, list[EpisodeResult]] = {}
    for r in results:
        by_task.setdefault(titles[task_key(r.episode_id, r.task_name)], []).append(r)
    per_task = [
        TaskSummary(
            task_name=name,
            episodes=len(items),
            success=rate(sum(1 for r in items if r.status == "succeeded"), sum(1 for r in items if r.status != "harness_error")),
            harness_errors=sum(1 for r in items if r.status == "harness_error"),
        )
        for name, items in sorted(by_task.items())
    ]
    total_steps = sum(r.steps for r in ran)
    parse_errors = sum(r.parse_errors for r in ran)
    reasons = Counter("harness error" if r.status == "harness_error" else end_reason_kind(r.end_reason) for r in results)
    return EvalSummary(
        episodes=len(results),
        planned=planned if planned is not None else len(results),
        harness_errors=len(results) - len(ran),
        success=rate(sum(1 for r in ran if r.status == "succeeded"), len(ran)),
        per_task=per_task,
        steps=spread(r.steps for r in ran),
        seconds=spread(r.seconds for r in ran),
        end_reasons=dict(reasons.most_common()),
        parse_errors=parse_errors,
        parse_error_rate=parse_errors / total_steps if total_steps else None,
        mismatches=sum(r.mismatches for r in ran),
        mismatch_episodes=sum(1 for r in ran if r.mismatches),
        retried_episodes=sum(1 for r in results if r.harness_attempts > 1),
        calibration=calibration([pair for r in ran for pair in r.step_confidence]),
    )
