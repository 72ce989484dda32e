"""``$/progress`` for long server work (indexing): begin, throttled percentages, end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from lsprotocol import types


class ProgressHost(Protocol):
    """What sending progress needs of the server (``ApprenticeServer`` has it)."""

    @property
    def work_done_progress(self) -> Any: ...

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None: ...


def percent_done(done: int, total: int) -> int:
    """``done`` of ``total`` as a whole percentage, 0-100 (an empty job is done)."""
    return 100 if total <= 0 else max(0, min(100, done * 100 // total))


class WorkProgress:
    """One ``$/progress`` sequence fed from the indexing thread (begin, percentages, end)."""

    def __init__(self, server: ProgressHost, token: str | None, title: str) -> None:
        self.server = server
        self.token = token
        self.title = title
        self._last: tuple[str, int] | None = None
        self._last_at = 0.0
        if token is not None:
            server.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title=title, percentage=0, cancellable=False)
            )

    def callback(self, stage: str, done: int, total: int) -> None:
        """Progress from a worker thread: forwarded to the loop, at most ~10 per second."""
        percent = percent_done(done, total)
        now = time.monotonic()
        if self.token is None or (stage, percent) == self._last:
            return
        if now - self._last_at < 0.1 and percent not in (0, 100):
            return
        self._last, self._last_at = (stage, percent), now
        message = f"{stage}: {done}/{total}"
        self.server.call_soon(self._send, message, percent)

    def _send(self, message: str, percent: int) -> None:
        if self.token is not None:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percent)
            )

    def end(self, message: str) -> None:
        """Close the progress sequence."""
        if self.token is not None:
            self.server.work_done_progress.end(
                self.token, types.WorkDoneProgressEnd(message=message)
            )
