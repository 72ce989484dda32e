"""A circuit breaker for a backend that keeps failing: leave it alone a while, then try once.

A remote server that breaks mid-generation would otherwise be called on every keystroke,
each call paying a connect or a timeout. After ``threshold`` failures in a row the breaker
opens: calls are refused at once for ``cooldown_s``, doubled after every failed trial up
to ``max_cooldown_s``. Then one trial call goes through; its success closes the breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failures; thread-safe."""

    def __init__(
        self,
        *,
        threshold: int = 2,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._pause = cooldown_s
        self._trial = False

    @property
    def state(self) -> BreakerState:
        """``closed`` (calls go through), ``open`` (refused) or ``half-open`` (one trial)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self._clock() < self._open_until else "half-open"

    @property
    def failures(self) -> int:
        """Failures in a row so far."""
        return self._failures

    def refusal(self) -> float | None:
        """None when a call may go ahead now; else the seconds until the next trial."""
        with self._lock:
            if self._open_until is None:
                return None
            left = self._open_until - self._clock()
            if left > 0:
                return left
            if self._trial:  # one trial at a time; the others wait for its outcome
                return self._pause
            self._trial = True
            return None

    def success(self) -> None:
        """A call worked: close the breaker and forget the failures."""
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._pause = self.cooldown_s
            self._trial = False

    def failure(self) -> None:
        """A call failed: open the breaker once failures reach the threshold."""
        with self._lock:
            self._failures += 1
            if self._trial:
                self._pause = min(self.max_cooldown_s, self._pause * 2)
            self._trial = False
            if self._failures >= self.threshold:
                self._open_until = self._clock() + self._pause

    def release(self) -> None:
        """A trial call ended without telling either way (cancelled): allow another."""
        with self._lock:
            self._trial = False
