"""How many threads the next llama.cpp step may use: more while the machine's other cores idle.

llama.cpp's threads meet at a barrier after every step, so one thread taken off its core
stalls them all: on a busy 2-core machine 12 tokens took 7-25 s with two threads and
0.5 s with one. On an idle one, two threads decode 1.65x faster (22.7 -> 37.4 tokens/s,
Gemma 3 270M). A person who stops typing is exactly when the machine goes idle and a
suggestion is wanted, so the worker reads the machine's load every 100 ms and takes the
extra cores only while nothing else (the editor, ruff, the indexer) uses them, dropping
back between two tokens as soon as something does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

logger = logging.getLogger(__name__)

_SAMPLE_S = 0.1
# The busiest of the last few samples decides: a burst of other work (a ruff run, a
# keystroke's parse) must not be averaged away.
_WINDOW = 3
# Other processes' use, in cores, below which the spare cores count as free.
_IDLE_CORES = 0.3


class CpuTimes:
    """Busy CPU time of the whole machine and of this process, from /proc (Linux)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def machine_busy_s(self) -> float | None:
        """Seconds of CPU all processes have used since boot (None: unknown)."""
        try:
            with (self._proc / "stat").open(encoding="ascii") as stat:
                fields = stat.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        values = [int(value) for value in fields[1:9]]  # user .. steal
        idle = values[3] + values[4]  # idle + iowait
        return (sum(values) - idle) / self._ticks

    def own_busy_s(self) -> float:
        """Seconds of CPU this process (all its threads) has used."""
        times = os.times()
        return times.user + times.system


class SpareCores:
    """Threads for llama.cpp: ``high`` while others leave the spare cores idle, else ``low``."""

    def __init__(self, low: int, high: int, times: CpuTimes | None = None) -> None:
        self.low = max(1, low)
        self.high = max(self.low, high)
        self._times = times or CpuTimes()
        self._others: deque[float] = deque(maxlen=_WINDOW)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.switches = 0
        self._last = self.low
        if self.high > self.low and self._times.machine_busy_s() is not None:
            threading.Thread(target=self._watch, name="spare-cores", daemon=True).start()

    def _watch(self) -> None:
        previous = self._reading()
        while not self._stop.wait(_SAMPLE_S):
            current = self._reading()
            if previous is not None and current is not None:
                wall = current[0] - previous[0]
                machine = current[1] - previous[1]
                own = current[2] - previous[2]
                if wall > 0:
                    with self._lock:
                        self._others.append(max(0.0, (machine - own) / wall))
            previous = current

    def _reading(self) -> tuple[float, float, float] | None:
        machine = self._times.machine_busy_s()
        if machine is None:
            return None
        return time.monotonic(), machine, self._times.own_busy_s()

    def others_busy(self) -> float | None:
        """Cores other processes used lately (the busiest recent sample); None: not known."""
        with self._lock:
            return max(self._others) if len(self._others) == self._others.maxlen else None

    def threads(self) -> int:
        """Threads for the next step."""
        if self.high == self.low:
            return self.low
        others = self.others_busy()
        chosen = self.high if others is not None and others < _IDLE_CORES else self.low
        if chosen != self._last:
            self.switches += 1
            self._last = chosen
        return chosen

    def close(self) -> None:
        """Stop watching."""
        self._stop.set()
