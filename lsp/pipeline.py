"""The completion pipeline, in one place for the server, ``apprentice complete`` and the benchmarks.

cursor -> prefix/suffix -> (repository context) -> prompt -> backend -> cleaned suggestion.
Nothing here imports pygls: the server converts the result to LSP types.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lint_bridge.api import Document, Splice
from lint_bridge.verify import Verifier
from model.api import Backend, CancelToken, CompletionRequest, ModelInfo, Usage
from model.fim import FimTemplate, select_template
from model.postprocess import clean_completion, plan_completion
from model.prompt import PromptInput, Snippet, build_prompt

logger = logging.getLogger(__name__)

_request_ids = itertools.count(1)


@dataclass(frozen=True)
class PipelineSettings:
    """Knobs of one completion; every one defaulted."""

    max_tokens: int = 64
    max_tokens_multiline: int = 96
    context_budget: int = 1024
    fim_template: str | None = None
    timeout_s: float = 10.0
    temperature: float = 0.0
    candidates: int = 3
    sample_temperature: float = 0.6


@dataclass(frozen=True)
class Cursor:
    """A document and a cursor in it, as plain data."""

    path: str
    language: str
    text: str
    offset: int
    repo_name: str = ""
    abs_path: Path | None = None

    @property
    def prefix(self) -> str:
        return self.text[: self.offset]

    @property
    def suffix(self) -> str:
        return self.text[self.offset :]


@dataclass
class CompletionResult:
    """The verified, cleaned suggestion (or None) and what it cost."""

    text: str | None
    model: str
    latency_ms: float
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    mode: str = "prefix"
    raw: str = ""
    snippets_used: tuple[str, ...] = field(default_factory=tuple)
    request_id: int = 0
    verdict: str = "none"
    candidates: int = 0
    rejected_reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """The ``--json`` shape of ``apprentice complete``."""
        return {
            "text": self.text,
            "model": self.model,
            "latency_ms": round(self.latency_ms, 1),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "mode": self.mode,
            "finish_reason": self.finish_reason,
            "verdict": self.verdict,
            "candidates": self.candidates,
            "rejected_reasons": list(self.rejected_reasons),
            "context": list(self.snippets_used),
        }


class _Attempts:
    """What the candidates of one completion produced: usage summed, the best text kept."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.raw = ""
        self.count = 0
        self.verdict = "none"
        self.text: str | None = None
        self.repair: str | None = None
        self.reasons: list[str] = []
        self.unchecked: list[str] = []

    def add_usage(self, usage: Usage, raw: str) -> None:
        self.count += 1
        self.raw = raw
        self.usage.model = usage.model
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.prompt_tokens_evaluated += usage.prompt_tokens_evaluated
        self.usage.completion_tokens += usage.completion_tokens
        self.usage.finish_reason = usage.finish_reason

    def accept(self, text: str, verdict: str, unchecked: list[str]) -> None:
        self.text, self.verdict, self.unchecked = text, verdict, unchecked

    def offer_repair(self, text: str) -> None:
        if self.repair is None or len(text) > len(self.repair):
            self.repair = text

    def final_text(self) -> str | None:
        if self.text is not None:
            return self.text
        if self.repair is not None:
            self.verdict = "repair"
            return self.repair
        self.verdict = "reject" if self.count else "none"
        return None


class CompletionPipeline:
    """Turns a cursor into one cleaned suggestion through a Backend."""

    def __init__(
        self,
        backend: Backend,
        settings: PipelineSettings | None = None,
        *,
        verifier: Verifier | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings or PipelineSettings()
        self.verifier = verifier
        self._template: tuple[ModelInfo, FimTemplate | None] | None = None

    def template(self) -> FimTemplate | None:
        """The FIM template for the backend's model (None: prefix-only), chosen once."""
        info = self.backend.info()
        if self._template is None or self._template[0] != info:
            self._template = (info, select_template(info, self.settings.fim_template))
        return self._template[1]

    def complete(
        self,
        cursor: Cursor,
        snippets: Sequence[Snippet] = (),
        cancel: CancelToken | None = None,
    ) -> CompletionResult:
        """Generate, clean and return one suggestion at the cursor."""
        started = time.monotonic()
        request_id = next(_request_ids)
        settings = self.settings
        template = self.template()
        plan = plan_completion(cursor.prefix, cursor.suffix, cursor.language)
        built = build_prompt(
            PromptInput(
                path=cursor.path,
                language=cursor.language,
                prefix=cursor.prefix,
                suffix=cursor.suffix,
                snippets=tuple(snippets),
                repo_name=cursor.repo_name,
            ),
            template,
            self.backend.count_tokens,
            settings.context_budget,
        )
        max_tokens = settings.max_tokens_multiline if plan.multiline else settings.max_tokens
        deadline = started + settings.timeout_s
        outcome = _Attempts()
        for attempt in range(max(1, settings.candidates)):
            if cancel is not None and cancel.cancelled:
                outcome.usage.finish_reason = "cancelled"
                break
            if time.monotonic() > deadline:
                outcome.usage.finish_reason = "deadline"
                break
            request = CompletionRequest(
                prompt=built.prompt,
                max_tokens=max_tokens,
                stop=plan.stop,
                stop_tokens=built.stop_tokens,
                deadline=deadline,
                cancel=cancel,
                # The first candidate is greedy; later ones sample, so they differ.
                temperature=settings.temperature if attempt == 0 else settings.sample_temperature,
                seed=None if attempt == 0 else attempt,
            )
            stream = self.backend.complete(request)
            raw = stream.text()
            outcome.add_usage(stream.usage, raw)
            if stream.usage.finish_reason == "cancelled":
                break
            candidate = clean_completion(raw, cursor.prefix, cursor.suffix, plan)
            if candidate is None:
                continue
            if self.verifier is None:
                outcome.accept(candidate, "unchecked", [])
                break
            verdict = self.verifier.check_sync(
                Document(
                    path=cursor.abs_path or Path(cursor.path),
                    text=cursor.text,
                    language=cursor.language,
                ),
                Splice(cursor.offset, cursor.offset, candidate),
            )
            outcome.reasons.extend(reason.label for reason in verdict.reasons)
            if verdict.verdict == "accept":
                outcome.accept(candidate, "accept", verdict.unchecked)
                break
            if verdict.verdict == "repair" and verdict.text:
                outcome.offer_repair(verdict.text)
        text = outcome.final_text()
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
        )
        logger.info(
            "completion #%d %s: %d prompt tokens (%d evaluated), %d generated, %.0f ms, %s; "
            "context: %s",
            request_id,
            built.mode,
            result.prompt_tokens,
            result.prompt_tokens_evaluated,
            result.completion_tokens,
            result.latency_ms,
            f"{outcome.verdict} after {outcome.count} candidate(s)" if text else "nothing usable",
            ", ".join(built.snippets_used) or "none",
        )
        return result
