"""``apprentice/status``: the server's state, pushed to the client whenever it changes.

Clients used to poll ``apprentice.status`` every second while the model loaded or the index
was built. Instead the server sends this small notification when the model starts loading,
is ready or fails, when a file's prompt is being warmed, as the index is built (with a
percentage), when a suggestion is shown (its latency), and after a settings change.
``apprentice.status`` (the command) stays the detailed answer.

The params are one JSON object; every key is always present::

    state          "loading" | "indexing" | "warming" | "ready" | "error" | "off"
    message        one line for people: "Gemma 3 270m · indexing 40%", the model's error...
    percentage     the index build's progress (0-100) while it runs, else null
    model          the serving model (a checkpoint's name and version, the model's name, or
                   the remote server), null until one has loaded
    index          {"state": "off"|"waiting"|"indexing"|"embedding"|"ready"|"error",
                    "files": files indexed, or null before the first build ends}
    warming        the file whose prompt the model is evaluating ahead of a request, else null
    lastLatencyMs  server-side time of the last suggestion shown, else null

``state`` is the most pressing of them: error (no completions), loading (none yet), warming,
indexing (completions work, with less repository context), ready; off before the model
engine exists. Bursts are coalesced: at most one notification per ``MIN_INTERVAL_S``, always
ending with the latest state, and never one equal to the last sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Protocol

from lsp.server.work_progress import percent_done

if TYPE_CHECKING:
    from lsp.server.completions import CompletionService
    from lsp.server.engine import Engine
    from lsp.server.indexing import IndexService

logger = logging.getLogger(__name__)

METHOD = "apprentice/status"
# At most ~5 notifications a second (the indexing progress alone would send one per file).
MIN_INTERVAL_S = 0.2
_BUILDING = ("waiting", "indexing", "embedding")

IndexProgress = Callable[[str, int, int], None]


class _Server(Protocol):
    """What the push reads from the server (``ApprenticeServer``, or a test's fake)."""

    engine: Engine | None
    index: IndexService | None
    completions: CompletionService | None
    main_loop: asyncio.AbstractEventLoop | None

    @property
    def protocol(self) -> Any: ...


def model_label(engine: Engine) -> str | None:
    """The serving model as people name it; None while none has loaded."""
    status = engine.status
    if status.state != "ready":
        return None
    checkpoint = status.checkpoint or {}
    name, version = checkpoint.get("name"), checkpoint.get("version")
    if isinstance(name, str) and name:
        return f"{name} {version}" if isinstance(version, str) and version else name
    return status.name or engine.settings.model.remote_url or "model"


def payload(
    engine: Engine | None,
    index: IndexService | None,
    progress: tuple[str, int, int] | None = None,
    latency_ms: float | None = None,
) -> dict[str, object]:
    """The notification's params for this state of the server (see the module docstring)."""
    index_state = index.state if index is not None else "off"
    report = index.last_report if index is not None else None
    percentage: int | None = None
    if index_state in ("indexing", "embedding"):
        stage, done, total = progress or ("files", 0, 0)
        running = "embeddings" if index_state == "embedding" else "files"
        percentage = percent_done(done, total) if stage == running else 0
    model = engine.status if engine is not None else None
    label = model_label(engine) if engine is not None else None
    warming = engine.warming if engine is not None else None

    index_part = None
    if index_state in _BUILDING:
        shown = "embedding" if index_state == "embedding" else "indexing"
        index_part = shown if percentage is None else f"{shown} {percentage}%"
    elif index_state == "error":
        index_part = "index error"
    if model is None:
        state, message = "off", "not started"
    elif model.state == "error":
        state, message = "error", f"model error: {model.error or 'unknown'}"
    elif label is None:
        state, message = "loading", " · ".join(filter(None, ["loading the model", index_part]))
    elif warming is not None:
        state, message = "warming", f"{label} · warming {PurePath(warming).name}"
    elif index_state in _BUILDING:
        state, message = "indexing", f"{label} · {index_part}"
    else:
        state, message = "ready", " · ".join(filter(None, [label, index_part]))
    return {
        "state": state,
        "message": message,
        "percentage": percentage,
        "model": label,
        "index": {"state": index_state, "files": report.files if report is not None else None},
        "warming": warming,
        "lastLatencyMs": None if latency_ms is None else round(latency_ms, 1),
    }


class StatusPush:
    """Sends ``apprentice/status`` on the server's event loop; ``changed`` may be called from
    any thread, as often as it likes, and never raises."""

    def __init__(self, server: _Server, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.server = server
        self.min_interval_s = min_interval_s
        self.progress: tuple[str, int, int] | None = None
        self._progress_key: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent_at = -float("inf")
        self._last: dict[str, object] | None = None
        self._failures = 0

    def changed(self) -> None:
        """Something the payload shows may have changed: send it soon (coalesced)."""
        try:
            loop = self.server.main_loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._schedule)
        except Exception:  # a loop shutting down: nothing to tell anyone any more
            logger.debug("status push not scheduled", exc_info=True)

    def tracking(self, progress: IndexProgress) -> IndexProgress:
        """``progress`` (the ``$/progress`` reporter) that also feeds the pushed percentage."""
        self.progress = self._progress_key = None

        def report(stage: str, done: int, total: int) -> None:
            try:
                self.progress = (stage, done, total)
                key = (stage, percent_done(done, total))
                if key != self._progress_key:
                    self._progress_key = key
                    self.changed()
            except Exception:  # the push must never stop an index build
                logger.debug("status push progress failed", exc_info=True)
            progress(stage, done, total)

        return report

    def snapshot(self) -> dict[str, object]:
        """The payload for the server's state now."""
        server = self.server
        latency = None
        if server.completions is not None and server.completions.stats.latencies_ms:
            latency = server.completions.stats.latencies_ms[-1]
        return payload(server.engine, server.index, self.progress, latency)

    def _schedule(self) -> None:
        """On the loop: one send is due at a time; it reads the state when it runs."""
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._sent_at + self.min_interval_s - time.monotonic())
        self._timer = loop.call_later(delay, self._send)

    def _send(self) -> None:
        self._timer = None
        try:
            params = self.snapshot()
            if params == self._last:
                return
            self.server.protocol.notify(METHOD, params)
            self._last, self._sent_at = params, time.monotonic()
        except Exception:
            # A client that went away, or a bug here: logged (in full once), never raised
            # into the loop or the thread that reported the change.
            self._failures += 1
            logger.log(
                logging.ERROR if self._failures == 1 else logging.DEBUG,
                "sending %s failed",
                METHOD,
                exc_info=True,
            )
