"""What ``apprentice distill`` reports while it runs: files done, tasks done, tasks a second,
teacher requests in flight and the time left.

A file is done when every one of its tasks is; the total number of tasks is not known
before the last file is cut, so the time left is estimated from files. Tasks a resumed run
had already finished are not counted in the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DistillProgress:
    """One report: counts so far, speed, and requests being answered now."""

    files_done: int
    files_total: int
    tasks_done: int  # finished by this run
    tasks_per_s: float
    in_flight: int
    eta_s: float | None  # None until a file with work in it is done


class ProgressTracker:
    """Counts files and tasks as the run cuts and finishes them; reports to ``report``."""

    def __init__(
        self,
        files_total: int,
        report: Callable[[DistillProgress], None] | None,
        in_flight: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files_total = files_total
        self.files_done = 0
        self.tasks_done = 0
        self._report = report
        self._in_flight = in_flight
        self._clock = clock
        self._started = clock()
        self._worked_files = 0  # done files that had tasks to run (the ETA's rate)
        self._left: dict[int, int] = {}  # file number -> its tasks still running

    def file_cut(self, file: int, tasks: int) -> None:
        """File number ``file`` gave ``tasks`` tasks to run (0: nothing left to do there)."""
        if tasks:
            self._left[file] = tasks
        else:
            self.files_done += 1
        self.report()

    def task_done(self, file: int) -> None:
        """One task of file number ``file`` finished."""
        self.tasks_done += 1
        self._left[file] -= 1
        if not self._left[file]:
            del self._left[file]
            self.files_done += 1
            self._worked_files += 1

    def snapshot(self) -> DistillProgress:
        """The counts now."""
        elapsed = self._clock() - self._started
        rate = self.tasks_done / elapsed if elapsed > 0 else 0.0
        eta = None
        if self._worked_files and elapsed > 0:
            eta = (self.files_total - self.files_done) * elapsed / self._worked_files
        return DistillProgress(
            files_done=self.files_done,
            files_total=self.files_total,
            tasks_done=self.tasks_done,
            tasks_per_s=rate,
            in_flight=self._in_flight(),
            eta_s=eta,
        )

    def report(self) -> None:
        """Send the counts now to the reporter, if there is one."""
        if self._report is not None:
            self._report(self.snapshot())
