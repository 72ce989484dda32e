"""Show or hold, measured: coverage and "right when shown" per ``completion.minConfidence``,
and the choice among candidates against the oracle, from one recorded run.

``apprentice eval --trigger invoked --confidence-curve`` runs each row's pipeline trying
every candidate (``choose_among`` = ``candidates``) and records each verified candidate's
confidence and whether it is right (its tests where the task has them and the sandbox runs
them, exact match of the hole's lines otherwise). The pipeline's rule is then replayed for
every threshold (``lsp.core.choose.replay``): no second run per operating point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lsp.core.choose import replay
from lsp.core.pipeline_types import Alternative

# The operating points reported: minConfidence 0 (never held), 0.1, ..., 0.9, and the
# server's default (the one the calibration data chose), wherever it falls between them.
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(10))


def thresholds() -> tuple[float, ...]:
    """``THRESHOLDS`` with the server's default minConfidence among them."""
    from lsp.core.settings import CompletionSettings

    return tuple(sorted({*THRESHOLDS, round(CompletionSettings().min_confidence, 2)}))


@dataclass(frozen=True)
class ScoredAlternative:
    """A recorded candidate: what the decision reads, and whether it was right."""

    confidence: float
    mean_logprob: float | None
    verdict: str
    asks_met: bool
    attempt: int
    right: bool
    # lsp.core.confidence.FEATURES, so other weights can re-score the run
    # (bench/confidence_rescore.py).
    features: tuple[float, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "confidence": round(self.confidence, 4),
            "mean_logprob": None if self.mean_logprob is None else round(self.mean_logprob, 4),
            "verdict": self.verdict,
            "asks_met": self.asks_met,
            "attempt": self.attempt,
            "right": self.right,
            "features": [None if math.isnan(v) else round(v, 6) for v in self.features],
        }


def score_alternatives(
    alternatives: Sequence[Alternative], right: Callable[[str, int], bool]
) -> list[ScoredAlternative]:
    """Each alternative with ``right(text, replaced)``: whether accepting it is right."""
    return [
        ScoredAlternative(
            confidence=a.confidence,
            mean_logprob=a.mean_logprob,
            verdict=a.verdict,
            asks_met=a.asks_met,
            attempt=a.attempt,
            right=right(a.text, a.replaced),
            features=a.features,
        )
        for a in alternatives
    ]


@dataclass(frozen=True)
class CurvePoint:
    """One operating point over a row's tasks."""

    min_confidence: float
    tasks: int
    coverage: float  # shown / tasks
    right_when_shown: float | None  # right / shown; None: nothing shown
    right: float  # right / tasks (pass@1, or exact, where held counts as a miss)

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def curve(
    recorded: Sequence[Sequence[ScoredAlternative]],
    candidates: int,
    at: Sequence[float] | None = None,
) -> list[CurvePoint]:
    """Coverage and right when shown at each threshold (default: ``thresholds()``);
    ``recorded`` has one (possibly empty) list of alternatives per task, from a run that
    tried ``candidates`` each."""
    points = []
    n = len(recorded)
    for threshold in thresholds() if at is None else at:
        shown = right = 0
        for alternatives in recorded:
            index = replay(alternatives, threshold, candidates)
            if index is not None:
                shown += 1
                right += alternatives[index].right
        points.append(
            CurvePoint(
                min_confidence=threshold,
                tasks=n,
                coverage=shown / n if n else 0.0,
                right_when_shown=right / shown if shown else None,
                right=right / n if n else 0.0,
            )
        )
    return points


@dataclass(frozen=True)
class Selection:
    """Right over all tasks when one candidate is shown, chosen four ways."""

    tasks: int
    with_candidates: int  # tasks with at least one verified (or repaired) candidate
    first_come: float  # the first that verifies (the pipeline before this choice)
    by_confidence: float  # the highest probability (ties: mean log-probability, order)
    by_mean_logprob: float  # the highest mean token log-probability
    oracle: float  # any candidate right: the best any choice could do

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def _pool(alternatives: Sequence[ScoredAlternative]) -> list[tuple[int, ScoredAlternative]]:
    verified = [(i, a) for i, a in enumerate(alternatives) if a.verdict != "repair"]
    asked = [(i, a) for i, a in verified if a.asks_met]
    return asked or verified or list(enumerate(alternatives))


def _mean(alternative: ScoredAlternative) -> float:
    return -math.inf if alternative.mean_logprob is None else alternative.mean_logprob


def selection(recorded: Sequence[Sequence[ScoredAlternative]], candidates: int) -> Selection:
    """First-come, by confidence, by mean log-probability and the oracle, over all tasks."""
    n = max(1, len(recorded))
    first = by_score = by_mean = oracle = 0
    with_any = 0
    for alternatives in recorded:
        tried = [a for a in alternatives if a.attempt < candidates]
        pool = _pool(tried)
        if not pool:
            continue
        with_any += 1
        index = replay(tried, 0.0, candidates)
        first += index is not None and tried[index].right
        scored = max(pool, key=lambda item: (item[1].confidence, _mean(item[1]), -item[0]))
        by_score += scored[1].right
        meaned = max(pool, key=lambda item: (_mean(item[1]), -item[0]))
        by_mean += meaned[1].right
        oracle += any(a.right for a in tried)
    return Selection(
        tasks=len(recorded),
        with_candidates=with_any,
        first_come=first / n,
        by_confidence=by_score / n,
        by_mean_logprob=by_mean / n,
        oracle=oracle / n,
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def curve_table(rows: Sequence[tuple[str, Sequence[CurvePoint]]]) -> str:
    """Markdown: one line per (row, threshold)."""
    lines = [
        "| row | minConfidence | tasks | coverage (shown) | right when shown | right (all tasks) |",
        "|---|---|---|---|---|---|",
    ]
    for label, points in rows:
        for p in points:
            lines.append(
                f"| {label} | {p.min_confidence:.2f} | {p.tasks} | {p.coverage:.2f} "
                f"| {_rate(p.right_when_shown)} | {p.right:.2f} |"
            )
    return "\n".join(lines)


def selection_table(rows: Sequence[tuple[str, Selection]]) -> str:
    """Markdown: per row, the right rate of each way of choosing."""
    lines = [
        "| row | tasks | with a candidate | first-come | by confidence | by mean log-prob "
        "| oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in rows:
        lines.append(
            f"| {label} | {s.tasks} | {s.with_candidates} | {s.first_come:.2f} "
            f"| {s.by_confidence:.2f} | {s.by_mean_logprob:.2f} | {s.oracle:.2f} |"
        )
    return "\n".join(lines)
