"""Every attack a security review made on the earlier audit-hook sandbox, run for real.

Each payload goes through ``run_python`` and the test checks that it had no effect
outside: a file outside keeps its content, nothing appears next to it, no process
outlives the run, the caller neither receives a signal nor grows in memory. The earlier
sandbox shared its interpreter with the payload, so a payload could switch the guard off;
these tests hold because the boundary is the kernel's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from model.training import sandbox_setup
from model.training.sandbox import (
    SandboxLimits,
    run_python,
    sandbox_available,
    sandbox_unavailable_reason,
)

pytestmark = pytest.mark.skipif(
    not sandbox_available(), reason=f"no sandbox here: {sandbox_unavailable_reason()}"
)

VICTIM_TEXT = "untouched\n"

# Ways the payload switched the earlier guard off (it ran in the payload's interpreter).
GUARD_OFF = {
    "main-module": "import sys\nsys.modules['__main__'].__dict__.get('_BLOCKED', set()).clear()\n",
    "gc-hook-code": (
        "import gc\n"
        "noop = (lambda event, args: None).__code__\n"
        "for obj in gc.get_objects():\n"
        "    if callable(obj) and getattr(obj, '__name__', '') == '_guard':\n"
        "        obj.__code__ = noop\n"
    ),
    "abspath": "import os\nos.path.abspath = lambda path: os.getcwd() + '/inside'\n",
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the sandbox holding one victim file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text(VICTIM_TEXT, encoding="utf-8")
    return folder


def _untouched(outside: Path) -> bool:
    entries = sorted(p.name for p in outside.iterdir())
    return entries == ["victim.txt"] and (outside / "victim.txt").read_text() == VICTIM_TEXT


def _attempts(*lines: str) -> str:
    """Each line tried on its own; a refusal is not the end of the payload."""
    return "".join(f"try:\n    {line}\nexcept Exception:\n    pass\n" for line in lines)


def _processes_named(token: str) -> list[int]:
    """Processes on this machine whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("switch", sorted(GUARD_OFF))
def test_switching_a_guard_off_then_writing_outside_changes_nothing(
    outside: Path, switch: str
) -> None:
    victim = str(outside / "victim.txt")
    program = GUARD_OFF[switch] + "import os\n"
    program += _attempts(
        f"open({victim!r}, 'w').write('owned')",
        f"os.system('echo owned > {victim}')",
        f"__import__('ctypes').CDLL(None).system(b'echo owned > {victim}')",
    )
    run_python(program)
    assert _untouched(outside)


WRITES_OUTSIDE = {
    "symlink": "os.symlink(VICTIM, 'link'); open('link', 'w').write('owned')",
    "dir_fd": "os.open('victim.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=os.open(DIR, os.O_RDONLY))",
    "hard-link": "os.link(VICTIM, 'hard'); open('hard', 'r+').write('owned')",
    "mkdir": "os.mkdir(os.path.join(DIR, 'made'))",
    "sqlite": "sqlite3.connect(os.path.join(DIR, 'made.db')).execute('create table t(x)')",
    "truncate": "os.truncate(VICTIM, 0)",
}


@pytest.mark.parametrize("how", sorted(WRITES_OUTSIDE))
def test_no_write_outside_its_folder(outside: Path, how: str) -> None:
    program = f"import os, sqlite3\nVICTIM = {str(outside / 'victim.txt')!r}\n"
    program += f"DIR = {str(outside)!r}\n" + _attempts(WRITES_OUTSIDE[how])
    run_python(program)
    assert _untouched(outside)


def test_a_shell_started_without_an_audit_event_changes_nothing(outside: Path) -> None:
    victim = outside / "victim.txt"
    program = "import time\nfrom multiprocessing.util import spawnv_passfds\n"
    program += _attempts(
        f"spawnv_passfds(b'/bin/sh', ['/bin/sh', '-c', 'echo owned > {victim}'], ())"
    )
    program += "time.sleep(0.3)\n"
    run_python(program)
    assert _untouched(outside)


def test_a_fork_bomb_is_bounded() -> None:
    program = GUARD_OFF["main-module"] + (
        "import os, sys, time\n"
        "made = 0\n"
        "for _ in range(64):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(1)\n"
        "        os._exit(0)\n"
        "    made += 1\n"
        "sys.stderr.write(f'forked {made}\\n')\n"
    )
    limits = SandboxLimits(timeout_s=5.0)
    result = run_python(program, limits)
    assert result.seconds < limits.timeout_s + 2
    made = int(result.stderr_tail.split("forked ")[-1].split()[0])
    assert made < limits.threads


def _escape(mark: Path, token: str) -> str:
    """A shell in a session of its own that writes ``mark`` half a second later; the
    payload says ``running`` once it sees that shell among its processes."""
    inner = f"sleep 0.5; echo escaped > {mark}"
    command = f'exec setsid /bin/sh -c "{inner}" {token}'
    spawn = f"spawnv_passfds(b'/bin/sh', ['/bin/sh', '-c', {command!r}], ())"
    return f"""
import os, sys, time
from multiprocessing.util import spawnv_passfds
try:
    {spawn}
except OSError:
    pass
time.sleep(0.2)
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        if {token!r}.encode() in open(f'/proc/{{pid}}/cmdline', 'rb').read():
            sys.stderr.write('running\\n')
    except OSError:
        pass
"""


@pytest.mark.parametrize("ending", ["exit", "timeout"])
@pytest.mark.parametrize("layers", ["all", "pid-namespace-only"])
def test_a_process_in_its_own_session_does_not_outlive_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str, layers: str
) -> None:
    if layers == "pid-namespace-only":
        # Without the seccomp filter the shell starts: the PID namespace must end it.
        monkeypatch.setattr(sandbox_setup, "seccomp_filter", lambda: None)
    mark = tmp_path / "escaped.txt"
    token = f"apprentice-escape-{uuid.uuid4().hex}"
    program = _escape(mark, token)
    if ending == "timeout":
        program += "while True:\n    pass\n"
    result = run_python(program, SandboxLimits(timeout_s=1.0))
    assert result.timed_out == (ending == "timeout")
    if layers == "pid-namespace-only":
        assert "running" in result.stderr_tail
    assert _processes_named(token) == []
    time.sleep(1.0)
    assert not mark.exists() and _processes_named(token) == []


def test_no_signal_reaches_the_caller() -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: received.append(number))
    try:
        me = os.getpid()
        program = "import os, signal\n" + _attempts(
            f"signal.pidfd_send_signal(os.pidfd_open({me}), signal.SIGUSR2)",
            f"os.kill({me}, signal.SIGUSR2)",
        )
        run_python(program)
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert received == []


FLOOD = (
    "import sys\n"
    "chunk = b'x' * (1 << 20)\n"
    "for _ in range(200):\n"
    "    sys.stderr.buffer.write(chunk)\n"
    "sys.stderr.buffer.write(b'\\nEND OF FLOOD\\n')\n"
)


def _in_a_fresh_caller(body: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``body`` in a new interpreter that imports the sandbox as this test does; its
    last line of output is JSON. A fresh caller has its own peak RSS and its environment
    in /proc/PID/environ, as a person's ``apprentice`` process does."""
    module = run_python.__module__
    root = Path(sys.modules[module].__file__ or "").parents[module.count(".")]
    script = f"import json, sys\nsys.path.insert(0, {str(root)!r})\n"
    script += f"from {module} import SandboxLimits, run_python\n{body}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_a_stderr_flood_does_not_grow_the_caller() -> None:
    body = f"""
def peak_kib():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
run_python('pass')
before = peak_kib()
result = run_python({FLOOD!r}, SandboxLimits(timeout_s=60, cpu_s=60))
print(json.dumps({{'growth_kib': peak_kib() - before, 'passed': result.passed,
                  'tail': result.stderr_tail[-40:]}}))
"""
    measured = _in_a_fresh_caller(body)
    assert measured["passed"] and "END OF FLOOD" in str(measured["tail"])
    assert int(str(measured["growth_kib"])) < 50 * 1024, measured


def test_the_callers_environment_is_not_there() -> None:
    # The payload looks for the variable, not its value: the value is nowhere in it.
    program = """
import os
assert 'APPRENTICE_API_KEY' not in os.environ
for entry in os.listdir('/proc'):
    try:
        data = open(f'/proc/{entry}/environ', 'rb').read()
    except OSError:
        continue
    assert b'APPRENTICE_API_KEY=' not in data, entry
"""
    body = f"result = run_python({program!r})\n"
    body += "print(json.dumps({'passed': result.passed, 'tail': result.stderr_tail}))\n"
    seen = _in_a_fresh_caller(body, {"APPRENTICE_API_KEY": f"secret-{uuid.uuid4().hex}"})
    assert seen["passed"], seen["tail"]


def test_no_network_even_to_this_machine() -> None:
    name = f"\0apprentice-test-{uuid.uuid4().hex}"
    with socket.socket() as server, socket.socket(socket.AF_UNIX) as local:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        local.bind(name)
        local.listen(1)
        program = (
            GUARD_OFF["main-module"]
            + "import socket\nreached = []\n"
            + _attempts(
                f"socket.create_connection(('127.0.0.1', {port}), 2); reached.append('tcp')",
                f"socket.socket(socket.AF_UNIX).connect({name!r}); reached.append('abstract')",
            )
        )
        program += "raise SystemExit(f'reached {reached}' if reached else 0)\n"
        result = run_python(program)
    assert result.passed, result.stderr_tail


def test_the_disk_it_can_fill_is_bounded() -> None:
    program = """
import os, sys
written = 0
for number in range(20):
    try:
        with open(f'fill-{number}', 'wb') as out:
            for _ in range(3):
                out.write(b'x' * (1 << 20))
                out.flush()
                written += 1 << 20
    except OSError:
        break
try:
    with open('one-big-file', 'wb') as out:
        out.write(b'x' * (5 << 20))
except OSError:
    big = False
else:
    big = True
sys.stderr.write(f'written {written} big {big}\\n')
"""
    result = run_python(program, SandboxLimits(disk_mb=8, file_size_mb=4))
    written, big = result.stderr_tail.split("written ")[-1].split(" big ")
    assert int(written) <= 8 << 20
    assert big.strip() == "False"


def test_no_namespace_of_its_own_to_mount_an_unbounded_tmpfs() -> None:
    # A nested user namespace would give the program every capability in it, and with
    # them a tmpfs outside the size bound.
    program = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for flags in (0x10000000, 0x10020000, 0x00020000):  # user, user + mount, mount
    if libc.unshare(flags) == 0:
        sys.exit(f'unshare({flags:#x}) worked')
if libc.mount(b'none', b'/sandbox', b'tmpfs', 0, None) == 0:
    sys.exit('mounted a tmpfs')
"""
    result = run_python(GUARD_OFF["main-module"] + program)
    assert result.passed, result.stderr_tail
