"""Runs hole tasks through the completion pipeline, the way an editor asks for them.

One backend (one loaded model) serves every task of a model; each task is placed in a
buffer as an editor holds it, completed by ``CompletionPipeline`` (the server's own
pipeline, with its settings), the suggestion accepted as the editor would (its range may
start before the cursor), and the result scored; HumanEval programs run in the sandbox.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lint_bridge.api import Document, Splice
from lint_bridge.verify import Verifier
from lsp.core.factory import build_pipeline, make_verifier
from lsp.core.levers import DEFAULT_ON, LEVER_NAMES, PIPELINE_LEVERS, lever
from lsp.core.pipeline import CompletionPipeline, ContextSource, Cursor
from lsp.core.settings import ServerSettings, VerifySettings
from lsp.evaluation.confidence_curve import ScoredAlternative, score_alternatives
from lsp.evaluation.metrics import Score, score
from model.runtime.api import Backend
from model.training.holes import EditorView, HoleTask, Placement, place, region_lines
from model.training.sandbox import (
    SandboxLimits,
    run_python,
    sandbox_available,
    sandbox_unavailable_reason,
)

logger = logging.getLogger(__name__)

# The pipeline's quality levers, from their one list (lsp.core.levers): PipelineSettings
# flags, and unused_imports (an option of the index's context); the default pipeline has
# those on whose default is on.
LEVERS = LEVER_NAMES
DEFAULT_LEVERS = DEFAULT_ON


@dataclass(frozen=True)
class Variant:
    """One configuration of the pipeline: a row of the ablation table."""

    name: str
    context: bool
    verify: bool
    candidates: int
    levers: frozenset[str] = frozenset()


def ablations(candidates: int) -> list[Variant]:
    """Raw model; + repository context; + candidates and verification; the default."""
    return [
        Variant("raw model", context=False, verify=False, candidates=1),
        Variant("+ repository context", context=True, verify=False, candidates=1),
        Variant("+ candidates and verification", True, True, candidates),
        Variant("default pipeline", True, True, candidates, DEFAULT_LEVERS),
    ]


def default_variant(candidates: int) -> Variant:
    """The server's pipeline as users get it."""
    return ablations(candidates)[-1]


def without_lever(variant: Variant, lever: str) -> Variant:
    """``variant`` with one lever switched off (to measure what it adds)."""
    _known(lever)
    return replace(variant, name=f"{variant.name} - {lever}", levers=variant.levers - {lever})


def with_lever(variant: Variant, lever: str) -> Variant:
    """``variant`` with one lever switched on (one that is off by default)."""
    _known(lever)
    return replace(variant, name=f"{variant.name} + {lever}", levers=variant.levers | {lever})


def _known(name: str) -> None:
    lever(name)  # ValueError naming the choices


@dataclass
class TaskResult:
    """One task in one placement under one (model, variant)."""

    task_id: str
    kind: str
    placement: Placement
    cross_file: bool
    suggestion: str | None
    replaced: int
    score: Score
    latency_ms: float
    prompt_tokens: int
    prompt_tokens_evaluated: int
    completion_tokens: int
    verdict: str
    context: tuple[str, ...] = ()
    # The shown (or held) candidate's probability of being right, and, with
    # --confidence-curve, every verified candidate scored (lsp.evaluation.confidence_curve).
    confidence: float | None = None
    alternatives: list[ScoredAlternative] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        s = self.score
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "placement": self.placement,
            "cross_file": self.cross_file,
            "suggestion": self.suggestion,
            "replaced": self.replaced,
            "exact": s.exact,
            "edit_similarity": round(s.edit_similarity, 4),
            "identifier_f1": round(s.identifier_f1, 4),
            "passed": s.passed,
            "callee_named": s.callee_named,
            "unknown_symbols": s.unknown_symbols,
            "empty": s.empty,
            "latency_ms": round(self.latency_ms, 1),
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "completion_tokens": self.completion_tokens,
            "verdict": self.verdict,
            "context": list(self.context),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "alternatives": [a.as_json() for a in self.alternatives],
        }


@dataclass
class Workspace:
    """Where tasks' files live (for ruff's configuration and the verifier's imports)."""

    root: Path
    context: ContextSource | None = None
    # The same context without definitions of imported but unused names (lever off).
    plain_context: ContextSource | None = None
    known_symbols: Callable[[str], bool | None] | None = None
    symbol_checker: Verifier | None = field(default=None, init=False)

    def verifier(self) -> Verifier:
        """The server's checks (its default settings), in this workspace."""
        verifier = make_verifier(VerifySettings(), root=self.root, known_symbols=self.known_symbols)
        assert verifier is not None  # every check is on by default
        return verifier

    def unknown_symbols(self, view: EditorView, task: HoleTask, text: str, replaced: int) -> bool:
        """Whether the suggestion names something that does not exist (symbols check only)."""
        from lint_bridge.api import CheckSettings

        if self.symbol_checker is None:
            self.symbol_checker = Verifier(
                CheckSettings(syntax=False, ruff=False),
                workspace_root=self.root,
                known_symbols=self.known_symbols,
            )
        verdict = self.symbol_checker.check_sync(
            Document(path=self.root / task.path, text=view.text, language="python"),
            Splice(view.offset - replaced, view.offset, text),
            exhaustive=True,
        )
        return any(reason.kind == "unknown-symbol" for reason in verdict.reasons)


def pipeline_for(
    backend: Backend, settings: ServerSettings, variant: Variant, workspace: Workspace
) -> CompletionPipeline:
    """The pipeline configured as ``variant`` says: the server's (``settings``, through the
    one factory) with the variant's candidates, verification, context and levers."""
    completion = replace(settings.completion, candidates=variant.candidates)
    verify = settings.verify if variant.verify else VerifySettings(False, False, False)
    # Every lever that is a pipeline setting, from the one list (unused_imports is a
    # context option, below): naming them here one by one let a new lever be left out.
    flags = {name: name in variant.levers for name in PIPELINE_LEVERS}
    return build_pipeline(
        replace(settings, completion=completion, verify=verify),
        backend,
        root=workspace.root,
        context=_context(workspace, variant),
        known_symbols=workspace.known_symbols,
        one_off=True,
        levers=flags,
    )


def _context(workspace: Workspace, variant: Variant) -> ContextSource | None:
    if not variant.context:
        return None
    if "unused_imports" in variant.levers or workspace.plain_context is None:
        return workspace.context
    return workspace.plain_context


def run_task(
    pipeline: CompletionPipeline,
    workspace: Workspace,
    task: HoleTask,
    placement: Placement,
    *,
    budget: bool,
    limits: SandboxLimits,
    alternatives: bool = False,
) -> TaskResult:
    """Complete one placed task and score it (with ``alternatives``, every verified
    candidate too)."""
    view = place(task, placement)
    cursor = Cursor(
        path=task.path,
        language="python",
        text=view.text,
        offset=view.offset,
        repo_name=workspace.root.name,
        abs_path=workspace.root / task.path,
    )
    result = pipeline.complete(cursor, budget=budget)
    text = result.text or ""
    replaced = result.replaced if result.text else 0
    scored = score_completed(task, view.apply(text, replaced), text, limits)
    unknown = workspace.unknown_symbols(view, task, text, replaced) if text.strip() else False
    scored_alternatives = []
    if alternatives:

        def right(alternative: str, covers: int) -> bool:
            same = (alternative, covers) == (text, replaced)  # the shown one: scored already
            found = (
                scored
                if same
                else score_completed(task, view.apply(alternative, covers), alternative, limits)
            )
            return found.exact if found.passed is None else found.passed

        scored_alternatives = score_alternatives(result.alternatives, right)
    return TaskResult(
        task_id=task.task_id,
        kind=task.kind,
        placement=placement,
        cross_file=task.cross_file,
        suggestion=result.text,
        replaced=replaced,
        score=replace(scored, unknown_symbols=unknown),
        latency_ms=result.latency_ms,
        prompt_tokens=result.prompt_tokens,
        prompt_tokens_evaluated=result.prompt_tokens_evaluated,
        completion_tokens=result.completion_tokens,
        verdict=result.verdict,
        context=result.snippets_used,
        confidence=result.confidence,
        alternatives=scored_alternatives,
    )


def score_completed(task: HoleTask, completed: str, text: str, limits: SandboxLimits) -> Score:
    """Scores of the buffer after the suggestion ``text`` was accepted: the hole's lines
    against the answer's and, where the task has tests and the sandbox can run them,
    whether the file passes them (``passed`` None otherwise: not measured)."""
    expected, got = region_lines(task, completed)
    scored = score(expected, got, empty=not text.strip(), callee=task.callee)
    if task.test is None or not sandbox_available():
        return scored
    return replace(scored, passed=run_python(completed + "\n" + task.test, limits).passed)


def execution_unavailable(tasks: Sequence[HoleTask]) -> str | None:
    """Why the tests of ``tasks`` cannot run here (said once, as a warning), or None where
    they can or no task has tests."""
    if not any(task.test is not None for task in tasks):
        return None
    reason = sandbox_unavailable_reason()
    if reason is not None:
        logger.warning("execution scoring unavailable, pass@1 is not measured: %s", reason)
    return reason


def execution_json(reason: str | None) -> dict[str, object]:
    """``execution_scoring`` in a run's JSON: whether pass@1 was measured, and if not why."""
    return {"available": reason is None, "reason": reason}


def executable(task: HoleTask) -> bool:
    """Whether pass@1 counts ``task``: it has tests and the sandbox can run them."""
    return task.test is not None and sandbox_available()


def _failed(task: HoleTask, placement: Placement) -> TaskResult:
    """The result of a task whose completion raised: no suggestion, marked as an error."""
    scored = score(task.answer.strip(), "", empty=True, callee=task.callee)
    return TaskResult(
        task_id=task.task_id,
        kind=task.kind,
        placement=placement,
        cross_file=task.cross_file,
        suggestion=None,
        replaced=0,
        score=replace(scored, passed=False if executable(task) else None),
        latency_ms=0.0,
        prompt_tokens=0,
        prompt_tokens_evaluated=0,
        completion_tokens=0,
        verdict="error",
    )


Progress = Callable[[str, int, int], None]  # (stage, done, total), as lsp.cli.progress draws it


def run_all(
    pipeline: CompletionPipeline,
    workspace: Workspace,
    jobs: Sequence[tuple[HoleTask, Placement]],
    *,
    budget: bool = False,
    limits: SandboxLimits | None = None,
    progress: Progress | None = None,
    label: str = "",
    alternatives: bool = False,
) -> list[TaskResult]:
    """Every (task, placement) job in order; one failing task is logged, never fatal."""
    limits = limits or SandboxLimits()
    out = []
    for i, (task, placement) in enumerate(jobs):
        if progress is not None:
            progress(label, i, len(jobs))
        try:
            out.append(
                run_task(
                    pipeline,
                    workspace,
                    task,
                    placement,
                    budget=budget,
                    limits=limits,
                    alternatives=alternatives,
                )
            )
        except Exception:  # a bug, counted and shown in the table; the run goes on
            logger.exception("task %s (%s) failed", task.task_id, placement)
            out.append(_failed(task, placement))
    if progress is not None:
        progress(label, len(jobs), len(jobs))
    return out


@dataclass(frozen=True)
class Summary:
    """Quality and cost of one row."""

    tasks: int
    pass_at_1: float | None
    exact: float
    edit_similarity: float
    identifier_f1: float
    callee_named: float | None
    unknown_symbols: float
    empty: float
    latency_p50_ms: float
    latency_p95_ms: float
    prompt_tokens: float
    generated_tokens: float
    tokens_per_s: float
    peak_rss_mb: float | None = None
    errors: int = 0  # tasks whose completion raised (a bug: see the log)

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def summarize(results: Sequence[TaskResult], peak_rss_mb: float | None = None) -> Summary:
    """Means and percentiles over ``results`` (rates in 0..1)."""
    n = max(1, len(results))
    tests = [r.score.passed for r in results if r.score.passed is not None]
    # The callee only counts where another file defines it: what repository context adds.
    callees = [
        r.score.callee_named for r in results if r.cross_file and r.score.callee_named is not None
    ]
    latencies = sorted(r.latency_ms for r in results) or [0.0]
    generated = sum(r.completion_tokens for r in results)
    seconds = sum(r.latency_ms for r in results) / 1000
    return Summary(
        tasks=len(results),
        pass_at_1=sum(tests) / len(tests) if tests else None,
        exact=sum(r.score.exact for r in results) / n,
        edit_similarity=sum(r.score.edit_similarity for r in results) / n,
        identifier_f1=sum(r.score.identifier_f1 for r in results) / n,
        callee_named=sum(callees) / len(callees) if callees else None,
        unknown_symbols=sum(bool(r.score.unknown_symbols) for r in results) / n,
        empty=sum(r.score.empty for r in results) / n,
        latency_p50_ms=statistics.median(latencies),
        latency_p95_ms=latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        prompt_tokens=sum(r.prompt_tokens for r in results) / n,
        generated_tokens=generated / n,
        tokens_per_s=generated / seconds if seconds else 0.0,
        peak_rss_mb=peak_rss_mb,
        errors=sum(r.verdict == "error" for r in results),
    )


def peak_rss_mb() -> float:
    """The largest peak RSS of this process and its children still running (the model
    worker), in MiB, read from /proc (Linux); 0 where /proc is missing."""
    pids = [os.getpid(), *_children(os.getpid())]
    peaks = [_vm_hwm_kb(pid) for pid in pids]
    return max(peaks, default=0) / 1024


def _children(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(parent):
            out.append(int(entry.name))
    return out


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
