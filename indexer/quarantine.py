"""Files that keep crashing a component are left alone: a count of crashes per file.

A file that makes the parser raise, or the model worker die, will do it again on the next
save, re-scan or keystroke: after ``LIMIT`` crashes it is quarantined (skipped, logged once)
instead of costing a crash, a worker restart and a log traceback every time. A file whose
content changes gets a fresh start where a version is given (the indexer passes the content
hash); the model side counts per path for the life of the server.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

LIMIT = 3


class Quarantine:
    """Crash counts per (file, version); thread-safe."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._counts: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def crashed(self, path: str, what: str, version: str = "") -> bool:
        """Count one crash of ``what`` on ``path``; True when this one quarantines the file."""
        with self._lock:
            seen, count = self._counts.get(path, (version, 0))
            count = count + 1 if seen == version else 1
            self._counts[path] = (version, count)
        if count == self.limit:
            logger.warning(
                "%s is quarantined: it crashed %s %d times; it is skipped from now on%s",
                path,
                what,
                count,
                " (until it changes)" if version else "",
            )
            return True
        return False

    def blocked(self, path: str, version: str = "") -> bool:
        """Whether ``path`` (at this version) is quarantined."""
        with self._lock:
            seen, count = self._counts.get(path, (version, 0))
        return seen == version and count >= self.limit

    def quarantined(self) -> list[str]:
        """Every quarantined path (for ``apprentice.status``)."""
        with self._lock:
            return sorted(path for path, (_, count) in self._counts.items() if count >= self.limit)
