"""Threads for llama.cpp from the machine's load: more only while the other cores idle."""

from __future__ import annotations

import threading
import time

from model.runtime.spare_cores import CpuTimes, SpareCores


class FakeTimes(CpuTimes):
    """CPU seconds that grow as the test says: ``others`` cores busy besides this process."""

    def __init__(self, others: float) -> None:
        self.others = others
        self._start = time.monotonic()
        self._lock = threading.Lock()

    def machine_busy_s(self) -> float | None:
        with self._lock:
            return (time.monotonic() - self._start) * (self.others + 1.0)

    def own_busy_s(self) -> float:
        return time.monotonic() - self._start  # this process keeps one core busy


def settle() -> None:
    time.sleep(0.6)  # several samples of 100 ms


def test_idle_cores_are_taken_and_given_back_when_others_work() -> None:
    times = FakeTimes(others=0.0)
    cores = SpareCores(1, 2, times)
    assert cores.threads() == 1  # nothing measured yet: the safe choice
    settle()
    assert cores.threads() == 2
    times.others = 0.9  # the editor, ruff or the indexer wakes up
    settle()
    assert cores.threads() == 1
    assert cores.switches == 2
    cores.close()


def test_fixed_threads_never_change() -> None:
    cores = SpareCores(2, 2, FakeTimes(others=0.0))
    settle()
    assert cores.threads() == 2
    cores.close()


def test_the_real_machine_is_read() -> None:
    times = CpuTimes()
    first = times.machine_busy_s()
    assert first is not None and first > 0  # Linux /proc/stat
    assert times.own_busy_s() >= 0
    cores = SpareCores(1, 2)
    settle()
    assert cores.others_busy() is not None
    assert cores.threads() in (1, 2)
    cores.close()


def test_without_proc_the_low_count_stays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cores = SpareCores(1, 4, CpuTimes(proc=tmp_path))
    settle()
    assert cores.threads() == 1
