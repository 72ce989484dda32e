"""Time and cancel bookkeeping of one completion: limits, linked cancels, stage timings,
and remembered token counts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from lsp.core.pipeline_types import PipelineSettings
from model.runtime.api import CancelToken


@dataclass(frozen=True)
class Limits:
    """When to start showing a verified partial (soft) and when to stop generating."""

    soft: float | None
    deadline: float

    @staticmethod
    def of(settings: PipelineSettings, started: float, *, budget: bool) -> Limits:
        deadline = started + settings.timeout_s
        if not budget or settings.time_budget_s is None:
            return Limits(None, deadline)
        if settings.max_wait_s is not None:
            deadline = min(deadline, started + settings.max_wait_s)
        return Limits(min(deadline, started + settings.time_budget_s), deadline)


class LinkedCancel(CancelToken):
    """One candidate's cancel signal: its own (a partial passed), or the request's."""

    def __init__(self, parent: CancelToken | None) -> None:
        super().__init__()
        self._parent = parent

    @property
    def cancelled(self) -> bool:
        own = super().cancelled
        return own or (self._parent is not None and self._parent.cancelled)


class Stages:
    """Milliseconds spent per stage of one completion (summed over candidates), for the log."""

    def __init__(self, started: float) -> None:
        self._last = started
        self.spent: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.monotonic()
        self.spent[stage] = self.spent.get(stage, 0.0) + (now - self._last) * 1000
        self._last = now


class TokenCounts:
    """The backend's token counts, remembered: snippets and headers recur on every keystroke.

    Each count is a round trip to the model worker, so a prompt of ten pieces would
    otherwise cost ten of them before generation starts.
    """

    def __init__(self, count: Callable[[str], int], size: int = 512) -> None:
        self._count = count
        self._size = size
        self._known: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        with self._lock:
            known = self._known.get(text)
            if known is not None:
                self._known.move_to_end(text)
                return known
        tokens = self._count(text)
        with self._lock:
            self._known[text] = tokens
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return tokens
