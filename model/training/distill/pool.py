"""Distillation's tasks on worker threads: up to N at once, results handed back in order of
finishing to the one thread that writes them, and a clean stop on a failure or Ctrl-C.

A teacher is synchronous HTTP (or a local model behind a lock), so threads are enough:
they wait on the server, and the checks after it are mostly subprocesses (ruff, the
sandbox). At most ``2 * workers`` tasks are queued or running, so the calling thread cuts
the next file's tasks while the workers are busy and memory stays bounded. Work that has
not been handed back when the run stops is dropped: it runs again when the run resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often the calling thread wakes while it waits, to refresh the progress line.
_TICK_S = 0.5


class TaskPool(Generic[T]):
    """Runs jobs on ``workers`` threads; ``deliver`` gets each result in the calling thread.

    Use it as a context manager. When the body or a job raises (a job's error comes out
    of ``submit`` or ``drain``), ``stop`` is called so running jobs end early, queued jobs
    are cancelled, the threads are joined, and the error goes on. ``tick`` runs after every
    wait (a progress report).
    """

    def __init__(
        self,
        workers: int,
        deliver: Callable[[T], None],
        *,
        stop: Callable[[], None],
        tick: Callable[[], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"concurrency must be 1 or more, not {workers}")
        self.workers = workers
        self.window = 2 * workers
        self._deliver = deliver
        self._stop = stop
        self._tick = tick
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="apprentice-distill")
        self._pending: list[Future[T]] = []

    def __enter__(self) -> TaskPool[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            logger.info("distillation stopping: %s", type(error).__name__)
            for future in self._pending:
                future.cancel()  # the queued ones, before a stopped job frees their thread
            self._stop()
        # Joins the running jobs (the stop has cut their requests short).
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet handed back."""
        return len(self._pending)

    def submit(self, job: Callable[[], T]) -> None:
        """Queue ``job``, first waiting (and handing back results) while the queue is full."""
        while len(self._pending) >= self.window:
            self._collect()
        self._pending.append(self._executor.submit(job))

    def drain(self) -> None:
        """Wait for every job, handing back each result."""
        while self._pending:
            self._collect()

    def _collect(self) -> None:
        """Wait for a job to finish (or a tick), hand back what finished; raise the first error."""
        wait(self._pending, timeout=_TICK_S, return_when=FIRST_COMPLETED)
        finished: list[Future[T]] = []
        running: list[Future[T]] = []
        for future in self._pending:
            (finished if future.done() else running).append(future)
        self._pending = running
        failure: BaseException | None = None
        for future in finished:
            error = future.exception()
            if error is None:
                self._deliver(future.result())
            elif failure is None:
                failure = error
        if self._tick is not None:
            self._tick()
        if failure is not None:
            raise failure
