"""``apprentice eval --trigger automatic|typed``: what a person sees at a pause, from a server.

Automatic is ``apprentice eval``'s default: what an editor shows is the headline measure.
The invoked evaluation (``--trigger invoked``, runner.py) calls the pipeline directly, an
explicit request on a warm prompt. An editor differs: every task here is a freshly
opened file in one real ``apprentice serve`` subprocess (its default settings; driven over
stdio by pygls's client, lsp/evaluation/lsp_client.py), and requests are *automatic* (triggerKind
2), as an editor sends them while a person types.

- ``automatic``: open the file, wait the reading delay, send one automatic request at the
  placement's cursor and wait for its answer.
- ``typed``: open the file with the hole's line holding the editor's auto-indent, wait the
  reading delay, then type the answer's first characters (the "typed" placement's text)
  one keystroke at a time, 8 a second: ``didChange``, an automatic request, and
  ``$/cancelRequest`` for the previous request while its answer has not come (as VS Code
  does). At the pause, the answer to the last request is what is shown.

The first item is applied as an editor applies it (``insertText`` replaces ``range``, which
may start before the cursor) and scored as the invoked run scores (runner.score_completed:
tests in the sandbox for HumanEval; exact match and edit similarity for repository holes).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp.evaluation import humaneval
from lsp.evaluation.driver import ModelSpec
from lsp.evaluation.editor_session import KEYSTROKE_S, EditorSession, failed
from lsp.evaluation.lsp_client import serve, wait_ready
from lsp.evaluation.repo import RepoSource
from lsp.evaluation.report import EditorRow
from lsp.evaluation.runner import Progress, execution_json, execution_unavailable
from lsp.evaluation.shown import ShownResult, summarize_shown
from model.factory import BackendSettings
from model.training.holes import HoleTask, Placement, placements_for
from model.training.sandbox import SandboxLimits

logger = logging.getLogger(__name__)

TRIGGERS = ("invoked", "automatic", "typed")
DEFAULT_DELAYS = (0.0, 3.0)
# Beyond the server's own completion.timeoutMs: the server may finish what it has, and
# the machine may be busy; an answer later than this counts as a timeout.
ANSWER_MARGIN_S = 5.0


class ServerRunError(RuntimeError):
    """The server failed (would not start, load the model, index, or died); its log is kept."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(f"{message} (server log: {log})")
        self.log = log


@dataclass
class EditorOptions:
    """Everything an editor-trigger run needs; the CLI fills it."""

    trigger: str = "automatic"  # automatic | typed
    suite: str = "humaneval-single"
    models: Sequence[ModelSpec] = ()
    limit: int | None = 150
    seed: int = 0
    placements: Sequence[Placement] = ("empty",)  # automatic; typed is indent -> typed
    delays: Sequence[float] = DEFAULT_DELAYS
    source: RepoSource = field(default_factory=RepoSource)  # --suite repo
    n_threads: int | None = None  # model.threads; None: the server's default
    answer_timeout_s: float | None = None  # None: completion.timeoutMs + ANSWER_MARGIN_S
    keystroke_s: float = KEYSTROKE_S
    ready_timeout_s: float = 900.0
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    server_command: Sequence[str] = ()  # default: this interpreter's ``apprentice serve``
    # completion.minConfidence per server run (a row each, on the same tasks); None: the
    # server's default, and the row is labelled by the model alone.
    min_confidences: Sequence[float | None] = (None,)


@dataclass
class EditorRun:
    """Rows and every task's result."""

    trigger: str
    rows: list[EditorRow] = field(default_factory=list)
    results: dict[tuple[str, str, float], list[ShownResult]] = field(default_factory=dict)
    tasks: int = 0
    execution: str | None = None  # why tests could not run (no sandbox); None: they could

    def as_json(self) -> dict[str, object]:
        return {
            "execution_scoring": execution_json(self.execution),
            "rows": [
                {
                    "model": r.model,
                    "trigger": r.trigger,
                    "placement": r.placement,
                    "delay_s": r.delay_s,
                    **r.summary.as_json(),
                }
                for r in self.rows
            ],
            "results": [
                {"model": m, "trigger": self.trigger, "delay_s": d, **t.as_json()}
                for (m, _, d), items in self.results.items()
                for t in items
            ],
        }


def server_options(
    spec: ModelSpec,
    *,
    index_dir: Path,
    index: bool,
    embed: bool,
    n_threads: int | None,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """``initializationOptions``: the server's defaults but for the model, where the index
    lives (a scratch folder, never the user's cache), whether there is one, and the
    show-or-hold threshold where the run asks for one."""
    s = spec.settings
    model: dict[str, Any] = {}
    if s.remote_url:
        model["remoteUrl"] = s.remote_url
        if s.remote_model:
            model["remoteModel"] = s.remote_model
    elif s.model_path:
        model["path"] = _absolute(s.model_path)
        if s.lora_path:
            model["lora"] = _absolute(s.lora_path)
    if n_threads:
        model["threads"] = n_threads
    settings: dict[str, Any] = {"index": {"location": str(index_dir)}}
    if not index:
        settings["index"]["enabled"] = False
    elif not embed:
        settings["index"]["embeddings"] = False
    if model:
        settings["model"] = model
    if min_confidence is not None:
        settings["completion"] = {"minConfidence": min_confidence}
    return settings


def _absolute(spec: str) -> str:
    """A path the server finds whatever its working directory (names like base stay)."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def answer_timeout_s(options: EditorOptions) -> float:
    """How long to wait for an answer: the server's own limit and a margin."""
    if options.answer_timeout_s is not None:
        return options.answer_timeout_s
    from lsp.core.settings import ServerSettings

    return ServerSettings().completion.timeout_ms / 1000 + ANSWER_MARGIN_S


def jobs_for(
    tasks: Sequence[HoleTask], trigger: str, placements: Sequence[Placement]
) -> dict[Placement, list[HoleTask]]:
    """Tasks by placement: typed takes whole-line holes; automatic takes the asked
    placements of whole-line holes and the cursor of a hole inside a line."""
    jobs: dict[Placement, list[HoleTask]] = {}
    for task in tasks:
        allowed = placements_for(task)
        if trigger == "typed":
            if task.line_hole:
                jobs.setdefault("typed", []).append(task)
            continue
        for placement in placements if task.line_hole else allowed:
            jobs.setdefault(placement, []).append(task)
    return jobs


def run_editor(options: EditorOptions, progress: Progress | None = None) -> EditorRun:
    """Every model's server in turn, every placement and delay on the same tasks."""
    if options.trigger not in ("automatic", "typed"):
        raise ValueError(f"--trigger {options.trigger}: the editor run is automatic or typed")
    scratch = Path(tempfile.mkdtemp(prefix="apprentice-eval-"))
    suite = None
    keep = False  # the scratch folder stays when the server failed: its log is named
    try:
        if options.suite == "repo":
            from lsp.evaluation.repo import prepare_source

            suite = prepare_source(
                options.source,
                scratch,
                limit=options.limit,
                seed=options.seed,
                index=False,  # the server indexes the masked copy itself, as it would
            )
            tasks, root = suite.tasks, suite.copy
        else:
            tasks = humaneval.load(options.suite, limit=options.limit, seed=options.seed)
            root = scratch / "workspace"
            root.mkdir()
        jobs = jobs_for(tasks, options.trigger, options.placements)
        if not jobs:
            raise ValueError("no task fits: --trigger typed needs whole-line holes")
        out = EditorRun(options.trigger, tasks=len(tasks))
        out.execution = execution_unavailable(tasks)
        models = options.models or [ModelSpec("default", BackendSettings())]
        runs = [(spec, mc) for spec in models for mc in options.min_confidences or (None,)]
        for number, (spec, min_confidence) in enumerate(runs):
            log = scratch / f"server-{number}.log"
            try:
                _run_interruptible(
                    _run_model(
                        options, spec, min_confidence, jobs, root, scratch, log, out, progress
                    )
                )
            except (RuntimeError, TimeoutError, OSError) as error:
                keep = True
                raise ServerRunError(str(error), log) from error
    finally:
        if suite is not None:
            suite.close()
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return out


def _run_interruptible(coroutine: Any) -> None:
    """``asyncio.run``, where a Ctrl-C always ends in KeyboardInterrupt.

    asyncio turns Ctrl-C into a cancel of the running task, and raises KeyboardInterrupt
    afterwards only if that task ended cancelled: a cancel that lands where a request's
    wait absorbs it let the run go on to the next task and exit 0. The interrupt is
    remembered here, beside asyncio's own handler, and raised once the loop has closed
    (the server and its workers shut down on the way out, as for any other error).
    """
    interrupted = threading.Event()
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main_thread else None

    async def watched() -> None:
        asyncio_handler = signal.getsignal(signal.SIGINT)
        if callable(asyncio_handler) and main_thread:

            def on_sigint(signum: int, frame: Any) -> None:
                interrupted.set()
                asyncio_handler(signum, frame)

            signal.signal(signal.SIGINT, on_sigint)
        await coroutine

    try:
        asyncio.run(watched())
    finally:
        if main_thread:  # the caller's handler back (not ours, not asyncio's)
            signal.signal(signal.SIGINT, before if before is not None else signal.SIG_DFL)
    if interrupted.is_set():
        raise KeyboardInterrupt


async def _run_model(
    options: EditorOptions,
    spec: ModelSpec,
    min_confidence: float | None,
    jobs: dict[Placement, list[HoleTask]],
    root: Path,
    scratch: Path,
    log: Path,
    out: EditorRun,
    progress: Progress | None,
) -> None:
    settings = server_options(
        spec,
        index_dir=scratch / "index",
        index=options.suite == "repo",
        embed=options.source.embed,
        n_threads=options.n_threads,
        min_confidence=min_confidence,
    )
    model = (
        spec.label if min_confidence is None else f"{spec.label} · minConfidence {min_confidence:g}"
    )
    async with serve(root, settings, log, command=options.server_command) as client:
        await wait_ready(client, options.ready_timeout_s)
        session = EditorSession(
            client,
            root,
            timeout_s=answer_timeout_s(options),
            in_place=options.suite == "repo",
            keystroke_s=options.keystroke_s,
            sandbox=options.sandbox,
        )
        for placement, tasks in jobs.items():
            for delay in options.delays:
                label = f"{model} · {options.trigger} · {placement} · {delay:g} s"
                results = []
                for i, task in enumerate(tasks):
                    if progress is not None:
                        progress(label, i, len(tasks))
                    results.append(await _one(session, options.trigger, task, placement, delay))
                if progress is not None:
                    progress(label, len(tasks), len(tasks))
                out.results[(model, placement, delay)] = results
                summary = summarize_shown(results)
                no_sandbox = out.execution is not None
                row = EditorRow(model, options.trigger, placement, delay, summary, no_sandbox)
                out.rows.append(row)
                logger.info("%s: %s", label, summary)


async def _one(
    session: EditorSession, trigger: str, task: HoleTask, placement: Placement, delay: float
) -> ShownResult:
    """One task; a failure is logged and counted, unless the server itself is gone."""
    try:
        if trigger == "typed":
            return await session.typed(task, delay)
        return await session.automatic(task, placement, delay)
    except Exception:
        session.check_alive()  # a dead server ends the run (its log is kept)
        logger.exception("task %s (%s, %g s) failed", task.task_id, placement, delay)
        return failed(task, placement)
