"""What the machine offers the model and the embedder: physical cores, chiefly."""

from __future__ import annotations

import functools
import os
from pathlib import Path


@functools.cache
def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads do not add compute).

    On a 2-vCPU cloud machine the two logical CPUs often share one core, and one
    thread beats two for llama.cpp, torch and FAISS, so threads are chosen from
    physical cores, not ``os.cpu_count()``.
    """
    allowed = _allowed_cpus()
    siblings: set[tuple[str, str]] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return max(1, len(allowed))
    processor = physical = core = None
    for line in [*text.splitlines(), ""]:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            processor = int(value)
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif not line.strip():
            if processor is not None and processor in allowed and core is not None:
                siblings.add((physical or "0", core))
            processor = physical = core = None
    return max(1, min(len(siblings) or len(allowed), len(allowed)))


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def default_threads() -> int:
    """Threads for llama.cpp generation: one per physical core."""
    return physical_cores()


def interactive_threads() -> int:
    """Threads for a model serving an editor: one core is left to the editor and the checks.

    llama.cpp's threads meet at a barrier after every step, so when another process takes
    one of them off its core, all of them wait. Measured on a 2-core machine with other
    work running: 12 tokens took 7-25 s with 2 threads and about 0.5 s with 1.
    """
    return max(1, physical_cores() - 1)
