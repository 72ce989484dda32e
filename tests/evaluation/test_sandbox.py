"""The sandbox that runs model-written programs: exit status, limits, what it can see.

The attacks a review found against the earlier audit-hook sandbox are in
``test_sandbox_attacks.py``.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from model.training import sandbox, sandbox_setup
from model.training.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    run_python,
    sandbox_available,
    sandbox_unavailable_reason,
)

pytestmark = pytest.mark.skipif(
    not sandbox_available(), reason=f"no sandbox here: {sandbox_unavailable_reason()}"
)


def test_a_passing_program_and_a_failing_one() -> None:
    assert run_python("assert sum([1, 2]) == 3\n").passed
    failed = run_python("assert 1 == 2\n")
    assert not failed.passed and failed.reason == "error"
    assert "AssertionError" in failed.stderr_tail
    exited = run_python("raise SystemExit(3)\n")
    assert not exited.passed and exited.returncode == 3


def test_a_program_that_never_ends_is_killed_at_the_timeout() -> None:
    result = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=1.0, cpu_s=30))
    assert result.timed_out and not result.passed and result.reason == "timeout"
    assert result.seconds < 5


def test_cpu_time_is_limited() -> None:
    result = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=20.0, cpu_s=1))
    assert not result.timed_out and result.reason == "signal" and result.seconds < 10


def test_memory_is_limited() -> None:
    result = run_python("x = bytearray(3 * 1024 ** 3)\n", SandboxLimits(memory_mb=512))
    assert not result.passed and "MemoryError" in result.stderr_tail


def test_threads_work_and_child_processes_are_refused() -> None:
    threads = "import threading\nt = threading.Thread(target=print)\nt.start()\nt.join()\n"
    assert run_python(threads).passed
    spawned = run_python("import subprocess\nsubprocess.run(['true'])\n")
    assert not spawned.passed and "PermissionError" in spawned.stderr_tail


@pytest.mark.skipif(
    os.getuid() == 0, reason="the kernel does not apply RLIMIT_NPROC to a root caller"
)
def test_threads_are_limited() -> None:
    program = """
import sys, threading, time
threading.stack_size(64 * 1024)
made = 0
try:
    for _ in range(200):
        threading.Thread(target=time.sleep, args=(1,), daemon=True).start()
        made += 1
except RuntimeError:
    pass
sys.stderr.write(f'threads {made}')
"""
    result = run_python(program, SandboxLimits(threads=8))
    assert int(result.stderr_tail.split("threads ")[-1]) < 8


def test_the_working_directory_is_the_only_writable_place() -> None:
    program = """
import os, tempfile
open('scratch.txt', 'w').write('x')
tempfile.NamedTemporaryFile().write(b'x')  # TMPDIR is the working directory
for place in ('/', '/dev', '/dev/shm', '/usr', '/proc', os.path.dirname(os.__file__)):
    try:
        open(os.path.join(place, 'escaped'), 'w')
    except OSError:
        continue
    raise SystemExit(f'wrote in {place}')
"""
    result = run_python(program)
    assert result.passed, result.stderr_tail


def test_only_the_interpreter_and_the_system_libraries_are_there(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read", encoding="utf-8")
    # The home folder's entries, but the one leading to the interpreter (pyenv and the like).
    home = Path.home()
    interpreter = Path(os.path.realpath(sys.base_prefix))
    hidden = [secret, Path(__file__), Path(pytest.__file__), Path("/etc/passwd")]
    hidden += [p for p in home.iterdir() if p not in interpreter.parents and p != interpreter]
    program = f"""
import os, sys
assert os.getcwd() == '/sandbox' and os.listdir('.') == ['program.py'], os.listdir('.')
for hidden in {[str(p) for p in hidden]!r}:
    assert not os.path.exists(hidden), hidden
try:
    import pytest
except ImportError:
    pass
else:
    raise SystemExit('the project environment is visible')
import json, sqlite3, decimal  # the standard library and its extension modules are
"""
    result = run_python(program)
    assert result.passed, result.stderr_tail


def test_read_only_paths_are_readable_and_stay_unchanged(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 41\n", encoding="utf-8")
    program = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import helper
assert helper.VALUE == 41
try:
    open({str(tmp_path / "helper.py")!r}, 'w').write('VALUE = 0')
except OSError:
    pass
else:
    raise SystemExit('wrote a read-only file')
"""
    result = run_python(program, read_only=[tmp_path])
    assert result.passed, result.stderr_tail
    assert (tmp_path / "helper.py").read_text(encoding="utf-8") == "VALUE = 41\n"


def test_own_namespaces_and_no_capabilities() -> None:
    names = ("user", "pid", "net", "ipc", "uts", "mnt", "cgroup")
    outside = {name: os.readlink(f"/proc/self/ns/{name}") for name in names}
    program = f"""
import os
outside = {outside!r}
shared = [n for n, link in outside.items() if os.readlink(f'/proc/self/ns/{{n}}') == link]
assert not shared, shared
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
assert int(status['CapEff'], 16) == 0 and int(status['CapBnd'], 16) == 0, status['CapEff']
assert status['NoNewPrivs'].strip() == '1'
pids = [p for p in os.listdir('/proc') if p.isdigit()]
assert len(pids) <= 3, pids  # bwrap's init and this program
"""
    result = run_python(program)
    assert result.passed, result.stderr_tail


def test_landlock_is_a_second_layer_where_the_kernel_has_it() -> None:
    try:
        from landlock import landlock_abi_version

        abi = landlock_abi_version()
    except Exception:
        pytest.skip("no Landlock in this kernel")
    assert abi >= 1
    # Writable without Landlock (a process may rename itself): Landlock refuses it.
    result = run_python("open('/proc/self/comm', 'w').write('renamed')\n")
    assert not result.passed and "PermissionError" in result.stderr_tail


def test_without_bwrap_it_refuses_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_setup, "find_bwrap", lambda: None)
    sandbox.sandbox_unavailable_reason.cache_clear()
    try:
        assert not sandbox_available()
        with pytest.raises(SandboxUnavailable) as raised:
            run_python("print(1)\n")
        message = str(raised.value)
        assert "\n" not in message and "bubblewrap" in message and "namespaces" in message
    finally:
        monkeypatch.undo()
        sandbox.sandbox_unavailable_reason.cache_clear()
    assert sandbox_available()


def test_a_bwrap_that_cannot_make_namespaces_is_refused_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "bubblewrap 0.8.0"; exit 0; fi\n'
        'if [ "$1" = --help ]; then echo "--size BYTES"; exit 0; fi\n'
        "echo 'bwrap: No permissions to create new namespace' >&2\nexit 1\n",
        encoding="utf-8",
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sandbox_setup, "find_bwrap", lambda: str(fake))
    sandbox.sandbox_unavailable_reason.cache_clear()
    try:
        reason = sandbox_unavailable_reason()
        assert reason is not None and "No permissions to create new namespace" in reason
        assert "bubblewrap 0.8.0" in reason and "\n" not in reason
        with pytest.raises(SandboxUnavailable):
            run_python("print(1)\n")
    finally:
        monkeypatch.undo()
        sandbox.sandbox_unavailable_reason.cache_clear()
