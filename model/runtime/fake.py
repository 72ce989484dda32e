"""FakeBackend: a deterministic, scriptable Backend for unit tests."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from model.runtime.api import (
    CompletionRequest,
    CompletionStream,
    ModelInfo,
    TokenLogprobs,
    Usage,
    render_prompt,
)

Responder = Callable[[str], str]
_TOKEN = re.compile(r"\s*\S+|\s+")


@dataclass
class FakeBackend:
    """Answers every prompt with ``respond(rendered_prompt)``, one word-sized token at a time.

    ``token_delay`` slows generation so tests can cancel it mid-way; ``requests``
    records every request received; prefix reuse is simulated like llama.cpp's
    (tokens shared with the previous prompt are not counted as evaluated).
    ``logprobs(rendered_prompt)`` gives the token log-probabilities a generation reports
    (None, the default: none, as a remote server); they are reported only when a token
    was generated, as llama.cpp's are.
    """

    respond: Responder = field(default=lambda prompt: "pass")
    info_value: ModelInfo = field(default_factory=lambda: ModelInfo(name="fake"))
    token_delay: float = 0.0
    logprobs: Callable[[str], TokenLogprobs | None] = field(default=lambda prompt: None)
    requests: list[CompletionRequest] = field(default_factory=list)
    _previous: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> ModelInfo:
        """The configured model description."""
        return self.info_value

    def count_tokens(self, text: str) -> int:
        """About four characters a token, like real code tokenizers on average."""
        return (len(text) + 3) // 4

    def complete(self, request: CompletionRequest) -> CompletionStream:
        """Stream the scripted answer, honouring limits, stops, cancel and deadline."""
        usage = Usage(model=self.info_value.name)
        return CompletionStream(self._pieces(request, usage), usage)

    def _pieces(self, request: CompletionRequest, usage: Usage) -> Iterator[str]:
        with self._lock:
            started = time.monotonic()
            self.requests.append(request)
            prompt = render_prompt(request.prompt)
            tokens = _TOKEN.findall(prompt)
            shared = 0
            for a, b in zip(self._previous, tokens, strict=False):
                if a != b:
                    break
                shared += 1
            self._previous = tokens
            usage.prompt_tokens = len(tokens)
            usage.prompt_tokens_evaluated = len(tokens) - shared
            answer = self.respond(prompt)
            for stop in request.stop:
                if stop and stop in answer:
                    answer = answer[: answer.index(stop)]
                    usage.finish_reason = "stop"
            usage.finish_reason = usage.finish_reason if answer else "stop"
            pieces = _TOKEN.findall(answer)
            for count, piece in enumerate(pieces, start=1):
                if request.cancel is not None and request.cancel.cancelled:
                    usage.finish_reason = "cancelled"
                    break
                if request.deadline is not None and time.monotonic() > request.deadline:
                    usage.finish_reason = "deadline"
                    break
                if count > request.max_tokens:
                    usage.finish_reason = "length"
                    break
                if self.token_delay:
                    time.sleep(self.token_delay)
                usage.completion_tokens = count
                if count == 1:
                    usage.logprobs = self.logprobs(prompt)
                yield piece
            usage.seconds = time.monotonic() - started

    def close(self) -> None:
        """Nothing to release."""
