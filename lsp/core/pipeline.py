"""The completion pipeline, in one place for the server, ``apprentice complete`` and the benchmarks.

cursor -> prefix/suffix -> (repository context) -> prompt -> backend -> cleaned suggestion.
Nothing here imports pygls: the server converts the result to LSP types.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lint_bridge.api import Document, Splice, Verdict
from lint_bridge.verify import Verifier
from lsp.core.attempts import Attempts, SuffixAsks
from lsp.core.coldstart import ColdStart
from lsp.core.confidence import shipped
from lsp.core.legal_names import name_constraint
from lsp.core.linestart import line_start
from lsp.core.pipeline_types import CompletionResult, Cursor, PipelineSettings
from lsp.core.qualified_names import qualified_names
from lsp.core.text.clean import CompletionPlan, clean_completion, plan_completion, single_line
from lsp.core.text.partials import (
    balanced_cuts,
    comment_where_code_goes,
    cut_at_existing_body,
    trailing_blank,
    unheal,
    without_partial_word,
)
from lsp.core.timing import Limits, LinkedCancel, Stages, TokenCounts
from model.runtime.api import (
    Backend,
    CancelToken,
    CompletionRequest,
    CompletionStream,
    Usage,
)
from model.runtime.fim import FimTemplate, TemplateChoice
from model.runtime.prompt import BuiltPrompt, PromptInput, Snippet, build_prompt

if TYPE_CHECKING:
    from indexer.retrieval import Retriever

logger = logging.getLogger(__name__)

_request_ids = itertools.count(1)

__all__ = [
    "CompletionPipeline",
    "CompletionResult",
    "ContextSource",
    "Cursor",
    "PipelineSettings",
    "index_context",
]


ContextSource = Callable[["Cursor"], Sequence[Snippet]]


def index_context(
    retriever: Retriever, *, semantic: bool = True, unused_imports: bool = True
) -> ContextSource:
    """Repository context from the index: definitions near the cursor (and of what the
    buffer imports but does not use yet), then similar chunks."""

    def snippets(cursor: Cursor) -> list[Snippet]:
        found = retriever.context_for(
            cursor.path,
            cursor.text,
            cursor.offset,
            semantic=semantic,
            unused_imports=unused_imports,
        )
        return [Snippet(f.path, f.text, f.start_line, f.reason) for f in found]

    return snippets


class CompletionPipeline:
    """Turns a cursor into one cleaned, verified suggestion through a Backend.

    ``context`` (optional) gives the repository snippets for a cursor: retrieval from
    the index; without it, or when it fails, prompts carry the file alone.
    """

    def __init__(
        self,
        backend: Backend,
        settings: PipelineSettings | None = None,
        *,
        verifier: Verifier | None = None,
        context: ContextSource | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings or PipelineSettings()
        self.verifier = verifier
        self.context = context
        self._template = TemplateChoice(self.settings.fim_template)
        self._count_tokens = TokenCounts(backend.count_tokens)
        # A file's first prompt: small unless cached (when first_prompt_tokens is set).
        self.cold = ColdStart(backend, self.settings.first_prompt_tokens)
        self.confidence = shipped()  # show or hold, and the choice among candidates
        # Lints the buffer as it is while the model generates (see _lint_before).
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apprentice-lint")
        self._pending_lint: Future[Any] | None = None

    def template(self) -> FimTemplate | None:
        """The FIM template for the backend's model (None: prefix-only), chosen once."""
        return self._template.for_model(self.backend.info())

    def _snippets(self, cursor: Cursor) -> Sequence[Snippet]:
        if self.context is None:
            return ()
        try:
            return self.context(cursor)
        except Exception:  # retrieval must never cost the suggestion
            logger.exception("repository context failed for %s; completing without it", cursor.path)
            return ()

    def plan(self, cursor: Cursor) -> CompletionPlan:
        """How far the suggestion at this cursor may reach."""
        plan = plan_completion(cursor.prefix, cursor.suffix, cursor.language)
        if not (plan.multiline and self.settings.multiline):
            # Several lines only for the body of a block just opened; elsewhere the rest of
            # the line, which is what a user typing along can judge at a glance.
            plan = single_line(plan)
        return plan

    def prompt(
        self,
        cursor: Cursor,
        snippets: Sequence[Snippet],
        template: FimTemplate | None,
        budget: int | None = None,
    ) -> BuiltPrompt:
        """The token-budgeted prompt for this cursor: repository context first, then the file."""
        return build_prompt(
            PromptInput(
                path=cursor.path,
                language=cursor.language,
                prefix=cursor.prefix[: len(cursor.prefix) - len(self._blank(cursor))],
                suffix=cursor.suffix,
                snippets=tuple(snippets),
                repo_name=cursor.repo_name,
            ),
            template,
            self._count_tokens,
            self.settings.context_budget if budget is None else budget,
            snippet_heads=self.settings.snippet_heads,
        )

    def warm(self, cursor: Cursor, cancel: CancelToken | None = None) -> Usage | None:
        """Evaluate this cursor's prompt into the backend's cache now (llama.cpp only).

        The next completion in the same file then evaluates only the tokens that differ;
        ``cancel`` stops it within one prefill chunk, keeping what was evaluated.
        """
        warm = getattr(self.backend, "warm", None)
        if warm is None:
            return None
        view = line_start(cursor) if self.settings.line_start else None
        if view is not None:
            cursor = view.cursor  # the prompt a completion here would send
        built = self.prompt(cursor, self._snippets(cursor), self.template())
        usage = warm(built.prompt, cancel) if cancel is not None else warm(built.prompt)
        assert isinstance(usage, Usage)
        return usage

    def _blank(self, cursor: Cursor) -> str:
        """What the prompt leaves out for token healing ("" when that lever is off)."""
        return trailing_blank(cursor.prefix) if self.settings.token_healing else ""

    def _checks_names(self, cursor: Cursor) -> bool:
        """Whether verification rejects unknown names here (a half-generated one included)."""
        verifier = self.verifier
        return verifier is not None and verifier.settings.symbols and cursor.language == "python"

    def _lint_before(self, cursor: Cursor) -> Future[Any] | None:
        """Start ruff on the unedited buffer now, in parallel with generation.

        Verification compares a candidate's diagnostics with the buffer's own; while the
        user types, every request brings a new buffer, so that first lint (tens of
        milliseconds) would otherwise be paid after generation, on the critical path.
        """
        verifier = self.verifier
        if verifier is None or not verifier.settings.ruff or cursor.language != "python":
            return None
        path = cursor.abs_path or Path(cursor.path)
        if self._pending_lint is not None:
            self._pending_lint.cancel()  # a superseded buffer's lint is not worth waiting for
        future = self._background.submit(
            lambda: asyncio.run(verifier.ruff.diagnostics(cursor.text, path))
        )
        self._pending_lint = future
        return future

    def _verify(self, cursor: Cursor, text: str, before: Future[Any] | None = None) -> Verdict:
        assert self.verifier is not None
        if before is not None and not before.cancelled():
            try:
                before.result(timeout=self.verifier.settings.ruff_timeout_s)
            except Exception:  # the check itself reports a ruff that does not answer
                logger.debug("linting the buffer ahead failed", exc_info=True)
        return self.verifier.check_sync(
            Document(
                path=cursor.abs_path or Path(cursor.path),
                text=cursor.text,
                language=cursor.language,
            ),
            Splice(cursor.offset, cursor.offset, text),
        )

    def _wants_next_line(
        self, cursor: Cursor, outcome: Attempts, cancel: CancelToken | None, deadline: float
    ) -> bool:
        """At the end of a finished line the model often just ends the line: then its next
        line is the suggestion (ghost text starting with a line break)."""
        if outcome.text is not None or outcome.repair is not None or outcome.raw.strip():
            return False
        if outcome.usage.finish_reason != "stop" or (cancel is not None and cancel.cancelled):
            return False
        plan = self.plan(cursor)
        return (
            bool(cursor.prefix.rsplit("\n", 1)[-1].strip())
            and not plan.line_suffix.strip()
            and not plan.multiline
            and time.monotonic() < deadline
        )

    def _candidates(
        self,
        cursor: Cursor,
        snippets: Sequence[Snippet],
        template: FimTemplate | None,
        cancel: CancelToken | None,
        limits: Limits,
        stages: Stages,
        outcome: Attempts,
    ) -> BuiltPrompt:
        """Generate, clean and verify candidates until enough pass (``lsp.core.choose``);
        results go to ``outcome``."""
        settings = self.settings
        plan = self.plan(cursor)
        built = self.cold.choose(
            cursor.path,
            self.prompt(cursor, snippets, template),
            lambda budget: self.prompt(cursor, (), template, budget),
        )
        stages.mark("prompt")
        max_tokens = settings.max_tokens_multiline if plan.multiline else settings.max_tokens
        # Lever complete_names: only legal names, where all of them are known.
        blank = self._blank(cursor)
        names = name_constraint(cursor, self.verifier, blank) if settings.complete_names else None
        known = qualified_names(cursor, self.verifier, blank) if settings.complete_names else None
        outcome.scene(cursor, built.snippets_used, names is not None)
        verdict = "accept" if self.verifier else "unchecked"
        attempts = max(1, settings.candidates)  # grows while candidates are only reserved
        for attempt in itertools.count():
            if attempt >= attempts:
                break
            if cancel is not None and cancel.cancelled:
                outcome.usage.finish_reason = "cancelled"
                break
            if time.monotonic() > limits.deadline:
                outcome.usage.finish_reason = "deadline"
                break
            stop_early = LinkedCancel(cancel)
            request = CompletionRequest(
                prompt=built.prompt,
                max_tokens=max_tokens,
                stop=plan.stop,
                stop_tokens=built.stop_tokens,
                deadline=limits.deadline,
                cancel=stop_early,
                # The first candidate is greedy; later ones sample, so they differ.
                temperature=settings.temperature if attempt == 0 else settings.sample_temperature,
                seed=None if attempt == 0 else attempt,
                names=names,
                qualified=known,
            )
            stream = self.backend.complete(request)
            outcome.begin(stream.usage)
            raw, early = self._consume(
                stream, cursor, plan, limits.soft, stop_early, outcome, stages
            )
            stages.mark("generate")
            outcome.add_usage(stream.usage, raw)
            if early is not None:
                outcome.usage.finish_reason = "deadline"  # stopped by the budget, not the user
                outcome.accept(early, verdict, outcome.unchecked)
                break
            if stream.usage.finish_reason == "cancelled":
                break
            if not raw and stream.usage.finish_reason == "stop":
                break  # the model's best guess is to stop here: sampled tries rarely beat it
            cut_short = stream.usage.finish_reason == "deadline"
            if cut_short and settings.whole_lines:
                # Out of time mid-line: the lines it finished, never a line cut short.
                raw, cut_short = _complete_lines(raw), False
            form = self._first_passing(cursor, plan, raw, outcome, stages, cut=cut_short)
            if form is None:
                continue
            if not outcome.asks.met_by(cursor, form):
                # The code below asks for something this one does not do: another may.
                outcome.reserve(form, verdict)
                if attempts < settings.candidates + settings.extra_candidates:
                    attempts += 1
                continue
            if outcome.accept(form, verdict, outcome.unchecked):
                break
        # No candidate did what the code below asks: the best verified one all the same.
        outcome.accept_reserved(verdict)
        return built

    def _consume(
        self,
        stream: CompletionStream,
        cursor: Cursor,
        plan: CompletionPlan,
        soft: float | None,
        stop_early: LinkedCancel,
        outcome: Attempts,
        stages: Stages,
    ) -> tuple[str, str | None]:
        """Read a generation; past the soft budget, the first verified partial ends it.

        Verification runs here while the model worker goes on generating, so checking a
        partial costs the user nothing when it fails. Returns (raw text, accepted form).
        """
        pieces: list[str] = []
        whole = self.settings.whole_lines
        for piece in stream:
            pieces.append(piece)
            if soft is None or time.monotonic() < soft:
                continue
            if whole and "\n" not in piece:
                continue  # only a line just completed is worth a look
            if not whole and not piece.strip():
                continue
            partial = "".join(pieces)
            if whole:
                partial = _complete_lines(partial)
                if not partial.strip():
                    continue
            # One check per piece (the longest balanced form), so checking keeps up with
            # generation; the shorter forms get their turn when generation ends.
            form = self._first_passing(
                cursor, plan, partial, outcome, stages, cut=not whole, tries=1
            )
            if form is not None:
                stop_early.cancel()
                for rest in stream:  # at most a token more: the worker stops at once
                    pieces.append(rest)
                return partial, form
        return "".join(pieces), None

    def _first_passing(
        self,
        cursor: Cursor,
        plan: CompletionPlan,
        raw: str,
        outcome: Attempts,
        stages: Stages,
        *,
        cut: bool,
        tries: int = 3,
    ) -> str | None:
        """The cleaned text (or, when ``cut`` short, its longest balanced form) that verifies."""
        raw = unheal(raw, self._blank(cursor))
        if cut and not self._checks_names(cursor):
            # The last word may be cut in half; without a name check nothing catches that.
            raw = without_partial_word(raw)
        candidate = clean_completion(raw, cursor.prefix, cursor.suffix, plan)
        if candidate is None:
            return None
        if self.settings.code_over_comment and comment_where_code_goes(cursor, candidate):
            outcome.reasons.append("comment-only")
            return None
        if self.settings.suffix_body:
            candidate = cut_at_existing_body(candidate, cursor)
        if self.verifier is None:
            return candidate
        # A generation cut short may stop mid-expression: only its balanced forms
        # ("json.load(f" -> "json.load") are tried.
        for form in balanced_cuts(candidate, limit=tries) if cut else [candidate]:
            if (cursor.offset, form) in outcome.checked:
                if outcome.verified_before(form):
                    return form  # another candidate said the same: it counts as agreement
                continue  # a later piece often leaves the longest balanced form unchanged
            outcome.checked.add((cursor.offset, form))
            verdict = self._verify(cursor, form, outcome.lint_before)
            stages.mark("verify")
            outcome.reasons.extend(reason.label for reason in verdict.reasons)
            if verdict.verdict == "accept":
                outcome.unchecked = verdict.unchecked
                return form
            if verdict.verdict == "repair" and verdict.text:
                outcome.offer_repair(verdict.text)
        return None

    def complete(
        self,
        cursor: Cursor,
        snippets: Sequence[Snippet] | None = None,
        cancel: CancelToken | None = None,
        *,
        budget: bool = True,
        started: float | None = None,
    ) -> CompletionResult:
        """Generate, clean, verify and return one suggestion at the cursor.

        ``snippets`` None asks the pipeline's context source for them. ``budget`` False
        (the user asked explicitly) waits for the whole suggestion, up to the timeout.
        ``started`` (monotonic) is when the request arrived, if earlier than now: the time
        budget and the reported latency count from then.
        """
        started = time.monotonic() if started is None else started
        request_id = next(_request_ids)
        settings = self.settings
        stages = Stages(started)
        stages.mark("queue")  # debounce and waiting for the model
        template = self.template()
        if snippets is None:
            snippets = self._snippets(cursor)
        stages.mark("context")
        limits = Limits.of(settings, started, budget=budget)
        outcome = Attempts(settings, self.confidence, hold=budget)
        view = line_start(cursor) if settings.line_start else None
        if view is not None:
            cursor = view.cursor  # the model writes the line's indentation itself
        outcome.asks = SuffixAsks.of(cursor, settings)
        outcome.lint_before = self._lint_before(cursor)
        built = self._candidates(cursor, snippets, template, cancel, limits, stages, outcome)
        lead = ""
        if self._wants_next_line(cursor, outcome, cancel, limits.deadline):
            # The line is done and the model's answer is "a new line": suggest that line.
            below = replace(
                cursor,
                text=cursor.text[: cursor.offset] + "\n" + cursor.text[cursor.offset :],
                offset=cursor.offset + 1,
            )
            self._candidates(below, snippets, template, cancel, limits, stages, outcome)
            lead = "\n"
        text, replaced = outcome.finish(lead, view)
        usage = outcome.usage
        raw = outcome.raw
        result = CompletionResult(
            text=text,
            model=usage.model,
            latency_ms=(time.monotonic() - started) * 1000,
            prompt_tokens=usage.prompt_tokens,
            prompt_tokens_evaluated=usage.prompt_tokens_evaluated,
            completion_tokens=usage.completion_tokens,
            finish_reason=usage.finish_reason,
            mode=built.mode,
            raw=raw,
            snippets_used=built.snippets_used,
            request_id=request_id,
            verdict=outcome.verdict,
            candidates=outcome.count,
            rejected_reasons=tuple(outcome.reasons),
            replaced=replaced,
            logprobs=outcome.logprobs(),
            constrained_tokens=usage.constrained_tokens,
            confidence=outcome.confidence,
            alternatives=outcome.alternatives,
        )
        result.stages_ms = stages.spent
        logger.info(
            "completion #%d %s: %d prompt tokens (%d evaluated), %d generated (%s), %.0f ms (%s), "
            "%s; context: %s",
            request_id,
            built.mode,
            result.prompt_tokens,
            result.prompt_tokens_evaluated,
            result.completion_tokens,
            result.finish_reason,
            result.latency_ms,
            ", ".join(f"{name} {ms:.0f}" for name, ms in stages.spent.items()),
            outcome.summary(text is not None),
            ", ".join(built.snippets_used) or "none",
        )
        # The model's text (it may repeat the buffer's secrets) is for debugging only.
        logger.debug("completion #%d raw %r", request_id, raw[:200])
        return result


def _complete_lines(text: str) -> str:
    """The lines of a partial generation that are finished (up to its last line break)."""
    end = text.rfind("\n")
    return text[:end] if end >= 0 else ""
