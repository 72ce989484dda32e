"""Runs model-written Python in a sandboxed subprocess (evaluation and distillation only).

Model output is never executed anywhere else. The child gets: a fresh empty working
directory, an empty environment, isolated mode (``-I``: no user site, no PYTHON* vars,
no script directory on the path), resource limits (CPU seconds, address space, file size,
open files, no child processes), a wall-clock timeout that kills its whole process group,
and an audit hook installed before the program runs that refuses sockets, subprocesses,
``os.system``/``exec*``/``fork`` and file writes outside its directory. Where the kernel
allows it (``unshare -rn``), the child also runs in a network namespace of its own, with
no interface but a loopback that is down.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Installed in the child before the program: the audit events that would let model-written
# code reach the network or start other programs raise instead.
_GUARD = r"""
import os, sys
_HOME = os.getcwd()
_BLOCKED = {
    "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.__new__",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "ctypes.dlopen", "urllib.Request",
    "shutil.rmtree", "os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown",
}
def _guard(event, args):
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        if any(flag in mode for flag in "wax+") or flags & writes:
            path = os.path.abspath(os.fsdecode(args[0]))
            if not path.startswith(_HOME + os.sep):
                raise PermissionError(f"sandbox: writing {path} is not allowed")
sys.addaudithook(_guard)
del _guard
_source = open(sys.argv[1], encoding="utf-8").read()
_code = compile(_source, "program.py", "exec")
del _source
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Bounds on one run; the defaults suit unit-test-sized programs."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64


@dataclass(frozen=True)
class SandboxResult:
    """How a program ended: ``passed`` only for exit status 0 within the limits."""

    passed: bool
    returncode: int | None
    timed_out: bool
    seconds: float
    stderr_tail: str
    isolated_network: bool

    @property
    def reason(self) -> str:
        """One word for reports: passed, timeout, error or signal."""
        if self.passed:
            return "passed"
        if self.timed_out:
            return "timeout"
        if self.returncode is not None and self.returncode < 0:
            return "signal"
        return "error"


@functools.lru_cache(maxsize=1)
def network_namespace_available() -> bool:
    """Whether ``unshare -rn`` works here (user and network namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        done = subprocess.run(
            [unshare, "-rn", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _limit(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec: resource limits and a process group."""
    import resource

    os.setsid()
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(
    program: str,
    limits: SandboxLimits | None = None,
    *,
    isolate_network: bool | None = None,
) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox; exit status 0 within limits passes.

    ``isolate_network`` None uses a network namespace where one can be made; True demands
    one (a RuntimeError where it cannot be had); False relies on the audit hook alone.
    """
    limits = limits or SandboxLimits()
    use_netns = network_namespace_available() if isolate_network is None else isolate_network
    if use_netns and not network_namespace_available():
        raise RuntimeError("a network namespace cannot be created here (unshare -rn failed)")
    with tempfile.TemporaryDirectory(prefix="apprentice-sandbox-") as home:
        script = Path(home) / "program.py"
        script.write_text(program, encoding="utf-8")
        command = [sys.executable, "-I", "-S", "-c", _GUARD, str(script)]
        if use_netns:
            unshare = shutil.which("unshare")
            assert unshare is not None
            command = [unshare, "-rn", *command]
        started = time.monotonic()
        child = subprocess.Popen(
            command,
            cwd=home,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Between fork and exec: only setrlimit and setsid, which take no locks.
            preexec_fn=lambda: _limit(limits),
            close_fds=True,
        )
        timed_out = False
        try:
            _, err = child.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(child)
            _, err = child.communicate()
        seconds = time.monotonic() - started
    code = child.returncode
    tail = err.decode("utf-8", "replace")[-2000:]
    return SandboxResult(
        passed=code == 0 and not timed_out,
        returncode=code,
        timed_out=timed_out,
        seconds=seconds,
        stderr_tail=tail,
        isolated_network=use_netns,
    )


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # the group changed owner inside a user namespace
        child.kill()
