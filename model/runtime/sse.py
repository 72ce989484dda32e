"""Server-sent events from a byte stream, line by line, within fixed limits.

A streamed completion is a few hundred bytes a token. A server that sends an endless
line, never ends an event, or never stops must not grow the client's memory: each line,
each event and the whole stream have a cap, and passing one is an error.
"""

from __future__ import annotations

MAX_LINE = 64 * 1024
MAX_EVENT = 256 * 1024
MAX_STREAM = 4 * 1024 * 1024


class SseError(ValueError):
    """The stream broke a rule or a limit; the message says which, in a few words."""


class EventReader:
    """Feed it raw lines (``readline(MAX_LINE)``); it returns each event's data when complete."""

    def __init__(
        self, *, max_line: int = MAX_LINE, max_event: int = MAX_EVENT, max_stream: int = MAX_STREAM
    ) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self.max_stream = max_stream
        self.received = 0
        self._data: list[str] = []
        self._pending = 0

    def feed(self, raw: bytes) -> str | None:
        """One line as read (with its line break): the event's data once a blank line ends
        it, else None. Comments, ``event``, ``id`` and ``retry`` fields are skipped."""
        self.received += len(raw)
        if self.received > self.max_stream:
            raise SseError(f"sent more than {self.max_stream >> 10} KiB; stopped reading")
        if len(raw) >= self.max_line and not raw.endswith(b"\n"):
            raise SseError(f"sent a line longer than {self.max_line >> 10} KiB")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line:
            if line.startswith(":"):
                return None  # a comment (keep-alive ping)
            name, _, value = line.partition(":")
            if name == "data":
                self._pending += len(value)
                if self._pending > self.max_event:
                    raise SseError(f"sent an event longer than {self.max_event >> 10} KiB")
                self._data.append(value.removeprefix(" "))
            elif name not in ("event", "id", "retry"):
                raise SseError(f"sent a malformed server-sent event: {line!r}")
            return None
        if not self._data:
            return None
        payload = "\n".join(self._data)
        self._data.clear()
        self._pending = 0
        return payload
