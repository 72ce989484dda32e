"""The first suggestion in a file: a small prompt when the full one is not cached yet.

llama.cpp keeps one prompt in its cache. The first request in a file usually finds
nothing of its prompt there (repository context and a thousand tokens of file: 5-8 s
of prefill on a laptop CPU, one thread). That request gets a small prompt instead
(the file's last lines before the cursor, no repository context), whose prefill is
bounded; the full prompt is then evaluated in the background, cancelled by any
completion that needs the model, and later requests in the file use it, growing
from what is cached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from model.runtime.api import PromptPart
from model.runtime.prompt import BuiltPrompt

logger = logging.getLogger(__name__)

# Prompt tokens the first request in a file may evaluate cold: about 1.3 s at the
# ~200 tokens/s one llama.cpp thread prefills on the 2-vCPU development machine.
FIRST_PROMPT_TOKENS = 256
_REMEMBERED_FILES = 512


@runtime_checkable
class CachedTokens(Protocol):
    """A backend that can tell how much of a prompt its cache holds (llama.cpp)."""

    def cached_tokens(self, prompt: tuple[PromptPart, ...]) -> tuple[int, int]:
        """(leading tokens of ``prompt`` already cached, tokens in ``prompt``)."""
        ...


class ColdStart:
    """Decides, once per file, whether its first prompt must be the small one
    (``first_prompt_tokens`` 0: never)."""

    def __init__(self, backend: object, first_prompt_tokens: int = 0) -> None:
        self.backend = backend if isinstance(backend, CachedTokens) else None
        self.first_prompt_tokens = first_prompt_tokens
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._to_warm: str | None = None

    def choose(
        self, path: str, full: BuiltPrompt, small: Callable[[int], BuiltPrompt]
    ) -> BuiltPrompt:
        """``full``, or ``small(first_prompt_tokens)`` for a file's first request when more
        than that many of the full prompt's tokens would be evaluated cold."""
        backend = self.backend
        with self._lock:
            if backend is None or self.first_prompt_tokens <= 0:
                return full
            if self._to_warm == path:  # the same first request, at the line below
                return small(self.first_prompt_tokens)
            if path in self._seen:
                return full
            if len(self._seen) >= _REMEMBERED_FILES:
                self._seen.clear()
            self._seen.add(path)
        cached, total = backend.cached_tokens(full.prompt)
        if total - cached <= self.first_prompt_tokens:
            return full
        logger.info(
            "first prompt in %s: %d of %d tokens not cached; a small prompt now, "
            "the full one warmed in the background",
            path,
            total - cached,
            total,
        )
        with self._lock:
            self._to_warm = path
        return small(self.first_prompt_tokens)

    def take_warm(self) -> str | None:
        """The file whose full prompt waits to be warmed (once), if any."""
        with self._lock:
            path, self._to_warm = self._to_warm, None
        return path
