"""The index directory's process lock: one apprentice process indexes a repository at a time."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from indexer.records import IndexBusyError, IndexUnavailableError

logger = logging.getLogger(__name__)

LOCK_NAME = "lock"


class IndexLock:
    """An exclusive ``flock`` on ``directory/lock``, holding the holder's pid and repository.

    The kernel drops the lock when its holder exits, even by SIGKILL, so a stale lock
    file never blocks anyone. Not re-entrant: a second IndexLock on the same directory
    conflicts even within one process. The lock is not inherited across ``exec``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        wait_s: float = 0.0,
        repo_root: Path | str | None = None,
        on_wait: Callable[[str], None] | None = None,
        poll_s: float = 0.1,
    ) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.wait_s = wait_s
        self.repo = str(repo_root) if repo_root is not None else None
        self.on_wait = on_wait
        self.poll_s = poll_s
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds; raise IndexBusyError if still held."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this IndexLock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # No O_TRUNC: the file holds the current holder's pid, which waiters read.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise IndexUnavailableError(
                f"cannot create the index lock {self.path}: {exc.strerror or exc};"
                " set a writable index location"
            ) from exc
        try:
            self._wait_for(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self.repo or ''}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _wait_for(self, fd: int) -> None:
        if _try_lock(fd):
            return
        busy = self._busy_message(fd)
        if self.wait_s <= 0:
            raise IndexBusyError(f"{busy}; try again when it has finished")
        message = f"{busy}; waiting..."
        logger.info("%s", message)
        if self.on_wait is not None:
            self.on_wait(message)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
            if _try_lock(fd):
                return
        raise IndexBusyError(
            f"{self._busy_message(fd)}; gave up after {self.wait_s:g} s, try again"
        )

    def _busy_message(self, fd: int) -> str:
        pid, repo = _holder(fd)
        repo = repo or self.repo or str(self.path.parent)
        return f"another apprentice process is indexing {repo} (pid {pid or 'unknown'})"


def lock_holder(directory: Path) -> int | None:
    """The pid written by the process holding ``directory``'s lock, if any is recorded."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _holder(fd)[0]
    finally:
        os.close(fd)


def _holder(fd: int) -> tuple[int | None, str]:
    try:
        lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    return pid, lines[1].strip() if len(lines) > 1 else ""


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
