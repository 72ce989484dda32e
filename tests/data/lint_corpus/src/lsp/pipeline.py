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

from model.api import Backend, CancelToken, CompletionRequest, ModelInfo
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


@dataclass(frozen=True)
class Cursor:
    """A document and a cursor in it, as plain data."""

    path: str
    language: str
    text: str
    offset: int
    repo_name: str = ""

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
        }


class CompletionPipeline:
    """Turns a cursor into one cleaned suggestion through a Backend."""

    def __init__(self, backend: Backend, settings: PipelineSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or PipelineSettings()
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
        request = CompletionRequest(
            prompt=built.prompt,
            max_tokens=settings.max_tokens_multiline if plan.multiline else settings.max_tokens,
            stop=plan.stop,
            stop_tokens=built.stop_tokens,
            deadline=started + settings.timeout_s,
            cancel=cancel,
            temperature=settings.temperature,
        )
        stream = self.backend.complete(request)
        raw = stream.text()
        usage = stream.usage
        text = None
        if usage.finish_reason != "cancelled":
            text = clean_completion(raw, cursor.prefix, cursor.suffix, plan)
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
            "suggestion" if text else "nothing usable",
            ", ".join(built.snippets_used) or "none",
        )
        return result
