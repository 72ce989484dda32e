"""Serving suggestions while the user types: debounce, last request wins, type-ahead cache.

Nothing here speaks LSP: the server hands in a document key, its version and a cursor,
and gets back the text to show (or None).
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lint_bridge.safety import hazards
from lsp.core.pipeline import CompletionResult, Cursor
from lsp.server.engine import Engine
from model.runtime.api import CancelToken

logger = logging.getLogger(__name__)

# How far back (characters typed or deleted) a cached suggestion is still looked for;
# llama.vim scans back 128 characters.
TYPE_AHEAD_REACH = 128
_ENTRIES_PER_DOCUMENT = 16
# How often a request waiting for the model to load looks at it.
_MODEL_POLL_S = 0.02
_TYPED_WORD = re.compile(r"[\w.]+\Z")


@dataclass(frozen=True)
class _Entry:
    prefix: str
    suffix: str
    text: str


class TypeAheadCache:
    """Suggestions by the text before the cursor, replayed while the user types along them.

    A suggestion made at prefix P with text T still holds at P + t when T starts with t
    (the user typed its first characters), and at a shorter P' when P = P' + d (the user
    deleted d): the buffer the suggestion completes is the same, so its verdict still holds.
    """

    def __init__(self) -> None:
        self._entries: dict[str, deque[_Entry]] = {}

    def store(self, key: str, prefix: str, suffix: str, text: str) -> None:
        """Remember a verified suggestion made at this point of this document."""
        entries = self._entries.setdefault(key, deque(maxlen=_ENTRIES_PER_DOCUMENT))
        entries.append(_Entry(prefix, suffix, text))

    def lookup(self, key: str, prefix: str, suffix: str) -> str | None:
        """The rest of a cached suggestion that the buffer is on the way to, if any."""
        for entry in reversed(self._entries.get(key, ())):
            if entry.suffix != suffix:
                continue
            if len(prefix) >= len(entry.prefix):
                typed_len = len(prefix) - len(entry.prefix)
                if typed_len > TYPE_AHEAD_REACH or typed_len >= len(entry.text):
                    continue
                if prefix.startswith(entry.prefix) and entry.text.startswith(
                    prefix[len(entry.prefix) :]
                ):
                    return entry.text[typed_len:]
            elif len(entry.prefix) - len(prefix) <= TYPE_AHEAD_REACH and entry.prefix.startswith(
                prefix
            ):
                return entry.prefix[len(prefix) :] + entry.text
        return None

    def forget(self, key: str) -> None:
        """Drop a closed document's entries."""
        self._entries.pop(key, None)


@dataclass
class Stats:
    """Counters and latencies for ``apprentice.status`` and the typing benchmark."""

    total: int = 0
    shown: int = 0
    empty: int = 0
    cancelled: int = 0
    superseded: int = 0
    stale: int = 0
    cache_hits: int = 0
    not_ready: int = 0
    held_back: int = 0
    prompt_tokens: int = 0
    evaluated_tokens: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=500))

    def latency(self) -> dict[str, float | int | None]:
        """Server-side latency of requests that produced a suggestion (ms)."""
        values = sorted(self.latencies_ms)
        if not values:
            return {"count": 0, "p50_ms": None, "p95_ms": None, "last_ms": None}
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        return {
            "count": len(values),
            "p50_ms": round(statistics.median(values), 1),
            "p95_ms": round(p95, 1),
            "last_ms": round(self.latencies_ms[-1], 1),
        }

    def as_json(self) -> dict[str, object]:
        """The ``requests``, ``tokens`` and ``latency`` parts of ``apprentice.status``."""
        return {
            "requests": {
                "total": self.total,
                "shown": self.shown,
                "empty": self.empty,
                "cancelled": self.cancelled,
                "superseded": self.superseded,
                "stale": self.stale,
                "cache_hits": self.cache_hits,
                "not_ready": self.not_ready,
                "held_back": self.held_back,
            },
            "tokens": {"prompt": self.prompt_tokens, "evaluated": self.evaluated_tokens},
            "latency": self.latency(),
        }


@dataclass(frozen=True)
class Suggestion:
    """Text to show at the cursor, and where it came from."""

    text: str
    from_cache: bool
    result: CompletionResult | None = None

    @property
    def replaced(self) -> int:
        """Characters before the cursor the suggestion replaces (0: inserted at it)."""
        return self.result.replaced if self.result is not None else 0


class _Ticket:
    """One request in flight for a document; a newer request supersedes it."""

    def __init__(self) -> None:
        self.cancel = CancelToken()
        self.superseded = False

    def supersede(self) -> None:
        self.superseded = True
        self.cancel.cancel()


class CompletionService:
    """Per-document scheduling of completions over one Engine."""

    def __init__(self, engine: Engine, *, debounce_s: float) -> None:
        self.engine = engine
        self.debounce_s = debounce_s
        self.cache = TypeAheadCache()
        self.stats = Stats()
        self._active: dict[str, _Ticket] = {}
        engine.on_result = self._count_tokens

    def _count_tokens(self, result: CompletionResult) -> None:
        """Every generation's prompt tokens, also those whose request was cancelled."""
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.evaluated_tokens += result.prompt_tokens_evaluated

    async def suggest(
        self,
        key: str,
        version: int,
        cursor: Cursor,
        is_current: Callable[[int], bool],
        *,
        invoked: bool = False,
    ) -> Suggestion | None:
        """The suggestion at ``cursor``; None when superseded, stale, or nothing passed.

        ``invoked``: the user asked (no debounce, no time budget). Raises
        ``asyncio.CancelledError`` when the client cancels; generation stops then.
        """
        started = time.monotonic()
        self.stats.total += 1
        previous = self._active.pop(key, None)
        if previous is not None:
            previous.supersede()
        cached = self.cache.lookup(key, cursor.prefix, cursor.suffix)
        if cached is not None and not invoked and _held_back(cached, cursor, "(cached)"):
            self.stats.held_back += 1
            return None
        if cached is not None:
            self.stats.cache_hits += 1
            self.stats.shown += 1
            return Suggestion(cached, from_cache=True)
        if self.engine.status.state != "ready":
            self.engine.retry_if_due()
        ticket = _Ticket()
        self._active[key] = ticket
        try:
            begun = started
            if self.engine.status.state != "ready":
                ready = await self._wait_for_model(ticket, started)
                if not ready and not ticket.superseded:
                    self.stats.not_ready += 1
                    return None
                begun = time.monotonic()  # the time budget starts once the model is up
            elif self.debounce_s > 0 and not invoked:
                await asyncio.sleep(self.debounce_s)
            if ticket.superseded:
                self.stats.superseded += 1
                return None
            result = await self.engine.complete(
                cursor, ticket.cancel, budget=not invoked, started=begun
            )
        except asyncio.CancelledError:
            ticket.cancel.cancel()
            self.stats.cancelled += 1
            raise
        finally:
            if self._active.get(key) is ticket:
                del self._active[key]
        return self._settle(key, version, cursor, result, ticket, is_current, started, invoked)

    async def _wait_for_model(self, ticket: _Ticket, started: float) -> bool:
        """Wait while the model loads, up to ``completion.timeoutMs`` from ``started``.

        Only the latest request of a document waits: a newer one supersedes it. False when
        the model failed, the wait ran out, or the request was superseded.
        """
        end = started + self.engine.settings.completion.timeout_ms / 1000
        while not ticket.superseded:
            state = self.engine.status.state
            if state == "ready":
                return True
            if state == "error" or time.monotonic() >= end:
                return False
            await asyncio.sleep(_MODEL_POLL_S)
        return False

    def _settle(
        self,
        key: str,
        version: int,
        cursor: Cursor,
        result: CompletionResult | None,
        ticket: _Ticket,
        is_current: Callable[[int], bool],
        started: float,
        invoked: bool,
    ) -> Suggestion | None:
        if ticket.superseded:
            self.stats.superseded += 1
            return None
        if result is None or not result.text:
            self.stats.empty += 1
            return None
        if not result.replaced:  # typing along replays insertions at the cursor only
            self.cache.store(key, cursor.prefix, cursor.suffix, result.text)
        if not invoked and _held_back(result.text, cursor, f"#{result.request_id}"):
            self.stats.held_back += 1
            return None
        if not is_current(version):
            self.stats.stale += 1
            logger.info("completion #%d dropped: the document changed", result.request_id)
            return None
        self.stats.shown += 1
        self.stats.latencies_ms.append((time.monotonic() - started) * 1000)
        return Suggestion(result.text, from_cache=False, result=result)

    def forget(self, key: str) -> None:
        """A document closed: cancel its request and drop its cache."""
        ticket = self._active.pop(key, None)
        if ticket is not None:
            ticket.supersede()
        self.cache.forget(key)


def _held_back(text: str, cursor: Cursor, which: str) -> bool:
    """Whether a suggestion waits for an explicit request (lint_bridge.safety); logs why.

    The word being typed counts as part of the suggestion (``sub`` + ``process.run(...)``).
    """
    typed = _TYPED_WORD.search(cursor.text[max(0, cursor.offset - 200) : cursor.offset])
    found = hazards((typed.group(0) if typed else "") + text, cursor.text)
    if not found:
        return False
    reasons = sorted({hazard.reason for hazard in found})
    logger.info("completion %s not shown automatically: %s", which, "; ".join(reasons))
    logger.debug("completion %s held back for %s", which, [h.detail for h in found])
    return True
