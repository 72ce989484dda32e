"""One ``apprentice eval`` run: suites, models and pipeline variants, one model load each."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lsp.core.settings import CompletionSettings, ServerSettings
from lsp.evaluation import humaneval
from lsp.evaluation.confidence_curve import CurvePoint, Selection, curve, selection
from lsp.evaluation.repo import RepoSource
from lsp.evaluation.report import Row
from lsp.evaluation.runner import (
    Progress,
    TaskResult,
    Variant,
    Workspace,
    ablations,
    default_variant,
    execution_json,
    execution_unavailable,
    peak_rss_mb,
    pipeline_for,
    run_all,
    summarize,
    with_lever,
    without_lever,
)
from lsp.evaluation.verification import VerificationStudy, study
from model.factory import BackendSettings, create_backend
from model.runtime.api import Backend
from model.training.holes import LINE_PLACEMENTS, HoleTask, Placement, placements_for
from model.training.sandbox import SandboxLimits

logger = logging.getLogger(__name__)

SUITES = (*humaneval.SUITES, "repo")
# Seconds a request may take in an evaluation (the server's completion.timeoutMs is 10 s).
EVAL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: a label and how to reach it."""

    label: str
    settings: BackendSettings


def parse_model(spec: str, *, n_threads: int | None, n_ctx: int = 4096) -> ModelSpec:
    """An ``eval --model`` row: ``[LABEL=]MODEL``, where MODEL is any local model spec or
    a server URL (``model.checkpoints.spec``). The label defaults to the file's name (with
    the adapter's), the URL's model id or URL, or the keyword (``default``, ``student``)."""
    from model.checkpoints.spec import EVALUATION, parse_model_spec

    head = spec.split("://")[0]
    label, _, target = spec.partition("=") if "=" in head else ("", "", spec)
    model = parse_model_spec(target, allow=EVALUATION)
    # No KV snapshots: rows run the same tasks one after another, and a later row would
    # find every prompt of an earlier one kept (its latencies would not compare).
    settings = BackendSettings(n_threads=n_threads, n_ctx=n_ctx, snapshot_mb=0)
    if model.url is not None:
        settings = replace(settings, remote_url=model.url, remote_model=model.remote_model)
        return ModelSpec(label or model.remote_model or model.shown, settings)
    local = model.text if model.kind != "default" else None
    settings = replace(settings, model_path=local, lora_path=model.adapter)
    name = Path(model.text).name or "default"
    return ModelSpec(
        label or name + (f"+{Path(model.adapter).name}" if model.adapter else ""), settings
    )


@dataclass
class EvalOptions:
    """Everything a run needs; the CLI fills it."""

    suite: str = "humaneval-single"
    models: Sequence[ModelSpec] = ()
    limit: int | None = 150
    seed: int = 0
    placements: Sequence[Placement] = LINE_PLACEMENTS
    variants: Sequence[Variant] = ()
    source: RepoSource = field(default_factory=RepoSource)  # --suite repo
    as_typed: bool = False
    # Quality should not depend on how busy the machine is: a generous limit per request
    # (the server's own is completion.timeoutMs, 10 s); see eval_settings.
    timeout_s: float = EVAL_TIMEOUT_S
    # The default pipeline's candidates (the variants carry their own): the server's.
    candidates: int = CompletionSettings().candidates
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    # Candidates per task for the verification-against-execution study (0: no study).
    verification_samples: int = 0
    # Try every candidate and score each verified one: the show-or-hold curve and the
    # choice among candidates against the oracle (lsp.evaluation.confidence_curve).
    confidence_curve: bool = False
    # How a model spec becomes a backend (tests pass a fake).
    backend_factory: Callable[[BackendSettings], Backend] = create_backend


@dataclass
class EvalRun:
    """What a run produced: table rows and every task's result."""

    rows: list[Row] = field(default_factory=list)
    results: dict[tuple[str, str, str], list[TaskResult]] = field(default_factory=dict)
    tasks: int = 0
    verification: dict[str, VerificationStudy] = field(default_factory=dict)
    execution: str | None = None  # why tests could not run (no sandbox); None: they could
    # With --confidence-curve: per row (model, variant, placement), its curve and choice.
    curves: dict[tuple[str, str, str], list[CurvePoint]] = field(default_factory=dict)
    selections: dict[tuple[str, str, str], Selection] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "execution_scoring": execution_json(self.execution),
            "confidence_curve": [
                {
                    "model": m,
                    "variant": v,
                    "placement": p,
                    "points": [point.as_json() for point in points],
                    "selection": self.selections[(m, v, p)].as_json(),
                }
                for (m, v, p), points in self.curves.items()
            ],
            "rows": [
                {
                    "model": r.model,
                    "variant": r.variant,
                    "placement": r.placement,
                    **r.summary.as_json(),
                }
                for r in self.rows
            ],
            "results": [
                {"model": m, "variant": v, "placement": p, **t.as_json()}
                for (m, v, p), items in self.results.items()
                for t in items
            ],
            "verification": {model: v.as_json() for model, v in self.verification.items()},
        }


def variants_for(
    candidates: int,
    *,
    ablate: bool,
    without: Sequence[str],
    repository: bool = True,
    with_: Sequence[str] = (),
) -> list[Variant]:
    """The rows to run: the default pipeline, or the ablations, plus one row per lever off.

    Without a repository (HumanEval) the context row is left out: it would repeat the raw one.
    """
    base = [default_variant(candidates)]
    if ablate:
        base = [v for v in ablations(candidates) if repository or v.name != "+ repository context"]
    default = default_variant(candidates)
    return (
        base
        + [without_lever(default, lever) for lever in without]
        + [with_lever(default, lever) for lever in with_]
    )


def _jobs(
    tasks: Sequence[HoleTask], placements: Sequence[Placement]
) -> dict[str, list[tuple[HoleTask, Placement]]]:
    """Jobs grouped by placement; tasks whose hole does not allow a placement skip it."""
    jobs: dict[str, list[tuple[HoleTask, Placement]]] = {}
    for task in tasks:
        allowed = placements_for(task)
        for placement in placements if allowed == LINE_PLACEMENTS else allowed:
            if placement in allowed:
                jobs.setdefault(placement, []).append((task, placement))
    return jobs


def eval_settings(options: EvalOptions) -> ServerSettings:
    """The server's settings with the evaluation's deliberate differences, all of them here.

    - a generous timeout (``options.timeout_s``): quality must not depend on how busy the
      machine is;
    - a one-off pipeline (``lsp.core.factory``): no small first prompt (every task is a
      file's first request; what users get from the second on is measured) and no KV
      snapshots (``parse_model``: a later row would find an earlier row's prompts kept);
    - the time budget applies only ``--as-typed`` (``run_all``'s ``budget``); otherwise
      every request is an explicit one;
    - candidates, verification, context and levers per variant (``pipeline_for``).
    """
    settings = ServerSettings()
    timeout_ms = max(1, round(options.timeout_s * 1000))
    return replace(settings, completion=replace(settings.completion, timeout_ms=timeout_ms))


def run(options: EvalOptions, progress: Progress | None = None) -> EvalRun:
    """Load each model once and run every variant and placement on the same tasks."""
    base = eval_settings(options)
    out = EvalRun()
    suite = None
    with tempfile.TemporaryDirectory(prefix="apprentice-eval-") as scratch:
        if options.suite == "repo":
            from lsp.evaluation.repo import prepare_source

            suite = prepare_source(
                options.source, Path(scratch), limit=options.limit, seed=options.seed
            )
            tasks, workspace = suite.tasks, suite.workspace
        else:
            tasks = humaneval.load(options.suite, limit=options.limit, seed=options.seed)
            workspace = Workspace(root=Path(scratch))
        out.tasks = len(tasks)
        out.execution = execution_unavailable(tasks)
        try:
            _run_models(options, base, tasks, workspace, out, progress)
        finally:
            if suite is not None:
                suite.close()
    return out


def _run_models(
    options: EvalOptions,
    base: ServerSettings,
    tasks: Sequence[HoleTask],
    workspace: Workspace,
    out: EvalRun,
    progress: Progress | None,
) -> None:
    jobs = _jobs(tasks, options.placements)
    for spec in options.models:
        backend = options.backend_factory(spec.settings)
        try:
            backend.info()  # load the model once, before the clock starts
            for variant in options.variants:
                pipeline = pipeline_for(backend, base, variant, workspace)
                if options.confidence_curve:  # every candidate tried, nothing held
                    pipeline.settings = replace(
                        pipeline.settings, choose_among=variant.candidates, min_confidence=0.0
                    )
                for placement, placed in jobs.items():
                    label = f"{spec.label} · {variant.name} · {placement}"
                    results = run_all(
                        pipeline,
                        workspace,
                        placed,
                        budget=options.as_typed,
                        limits=options.sandbox,
                        progress=progress,
                        label=label,
                        alternatives=options.confidence_curve,
                    )
                    key = (spec.label, variant.name, placement)
                    out.results[key] = results
                    if options.confidence_curve:
                        recorded = [r.alternatives for r in results]
                        out.curves[key] = curve(recorded, variant.candidates)
                        out.selections[key] = selection(recorded, variant.candidates)
                    summary = summarize(results, peak_rss_mb())
                    no_sandbox = out.execution is not None
                    out.rows.append(Row(spec.label, variant.name, placement, summary, no_sandbox))
                    logger.info("%s: %s", label, summary)
            if options.verification_samples and out.execution is None:  # it runs the tests
                pipeline = pipeline_for(backend, base, default_variant(1), workspace)
                out.verification[spec.label] = study(
                    pipeline,
                    workspace,
                    [t for t in tasks if t.test is not None and t.line_hole],
                    samples=options.verification_samples,
                    limits=options.sandbox,
                    progress=progress,
                )
        finally:
            backend.close()
