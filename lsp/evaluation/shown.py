"""What a person saw at a pause: one task's answer through a real server, and a row's figures.

``apprentice eval --trigger automatic|typed`` (lsp/evaluation/editor.py) fills these. A
task counts as shown when the server's answer had a non-blank first item; pass@1 (or exact
match, for repository holes without tests) is over all tasks, so a suggestion not shown is
a miss, and "right when shown" is over the shown ones only. Time to show runs from the
request (the last keystroke's, when typing) to its answer, over shown answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsp.evaluation.metrics import Score, percentile

# What became of a task's request: items (a non-blank suggestion), empty (an answer with
# nothing to show), timeout (no answer in time), error (the request failed, or a bug).
OUTCOMES = ("items", "empty", "timeout", "error")


@dataclass
class ShownResult:
    """One task under one (model, trigger, placement, delay)."""

    task_id: str
    kind: str
    placement: str
    outcome: str  # one of OUTCOMES
    suggestion: str | None
    replaced: int  # characters before the cursor the item's range covered
    score: Score
    time_to_show_ms: float | None  # request sent to answer; None without an answer
    requests: int = 1  # one per keystroke when typing
    cancels_sent: int = 0  # $/cancelRequest for requests still unanswered at a keystroke
    path: str = ""  # the file opened for the task (workspace-relative)
    cross_file: bool = False  # a repository hole whose answer calls another file's code

    @property
    def shown(self) -> bool:
        return self.outcome == "items"

    @property
    def right(self) -> bool:
        """Passes the tests (HumanEval) or matches the hole exactly (no tests)."""
        if self.score.passed is not None:
            return self.score.passed
        return self.score.exact

    def as_json(self) -> dict[str, object]:
        s = self.score
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "placement": self.placement,
            "path": self.path,
            "outcome": self.outcome,
            "shown": self.shown,
            "suggestion": self.suggestion,
            "replaced": self.replaced,
            "passed": s.passed,
            "exact": s.exact,
            "edit_similarity": round(s.edit_similarity, 4),
            "identifier_f1": round(s.identifier_f1, 4),
            "time_to_show_ms": None
            if self.time_to_show_ms is None
            else round(self.time_to_show_ms, 1),
            "requests": self.requests,
            "cancels_sent": self.cancels_sent,
            "cross_file": self.cross_file,
            "callee_named": s.callee_named,
        }


@dataclass(frozen=True)
class ShownSummary:
    """One row: what was shown, how often it was right, how long it took."""

    tasks: int
    shown: float  # rate of tasks with a non-blank suggestion
    pass_at_1: float | None  # over all tasks; None where no task has tests
    exact: float
    edit_similarity: float
    right_when_shown: float | None  # passes (or exact matches) / shown; None: nothing shown
    show_p50_ms: float | None
    show_p95_ms: float | None
    empty: int  # answers with nothing to show
    timeouts: int
    errors: int
    requests: int
    cancels_sent: int
    # Of the cross-file repository holes, the share whose shown suggestion calls the right
    # callee (as the invoked table counts it); None where no task has one.
    callee_named: float | None = None

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def summarize_shown(results: Sequence[ShownResult]) -> ShownSummary:
    """The row's figures over ``results``."""
    n = max(1, len(results))
    shown = [r for r in results if r.shown]
    tests = [r.score.passed for r in results if r.score.passed is not None]
    times = [r.time_to_show_ms for r in shown if r.time_to_show_ms is not None]
    callees = [
        bool(r.shown and r.score.callee_named)
        for r in results
        if r.cross_file and r.score.callee_named is not None
    ]
    return ShownSummary(
        tasks=len(results),
        shown=len(shown) / n,
        pass_at_1=sum(tests) / len(tests) if tests else None,
        exact=sum(r.score.exact for r in results) / n,
        edit_similarity=sum(r.score.edit_similarity for r in results) / n,
        right_when_shown=sum(r.right for r in shown) / len(shown) if shown else None,
        show_p50_ms=percentile(times, 50),
        show_p95_ms=percentile(times, 95),
        empty=sum(r.outcome == "empty" for r in results),
        timeouts=sum(r.outcome == "timeout" for r in results),
        errors=sum(r.outcome == "error" for r in results),
        requests=sum(r.requests for r in results),
        cancels_sent=sum(r.cancels_sent for r in results),
        callee_named=sum(callees) / len(callees) if callees else None,
    )
