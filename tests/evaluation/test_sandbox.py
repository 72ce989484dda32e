"""The sandbox that runs model-written programs: exit status, limits, no network."""

from __future__ import annotations

import socket

import pytest

from model.sandbox import SandboxLimits, network_namespace_available, run_python


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
    assert result.seconds < 10


def test_memory_is_limited() -> None:
    result = run_python("x = bytearray(3 * 1024 ** 3)\n", SandboxLimits(memory_mb=512))
    assert not result.passed and "MemoryError" in result.stderr_tail


def test_no_network_even_to_this_machine() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        for isolate in (False, None):
            result = run_python(program, isolate_network=isolate)
            assert not result.passed
            assert "PermissionError" in result.stderr_tail


@pytest.mark.skipif(not network_namespace_available(), reason="no user/network namespaces")
def test_the_network_namespace_has_no_route_even_without_the_audit_hook() -> None:
    # ctypes-free raw check: the namespace itself refuses (the hook would also refuse).
    result = run_python("print(1)\n", isolate_network=True)
    assert result.passed and result.isolated_network


def test_no_subprocesses_and_no_writes_outside_its_directory(tmp_path) -> None:
    spawned = run_python("import subprocess\nsubprocess.run(['true'])\n")
    assert "subprocess.Popen" in spawned.stderr_tail
    target = tmp_path / "escaped.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('x')\n")
    assert not result.passed and not target.exists()
    assert run_python("open('scratch.txt', 'w').write('x')\n").passed


def test_the_environment_is_empty(monkeypatch) -> None:
    monkeypatch.setenv("APPRENTICE_API_KEY", "secret-value")
    result = run_python("import os\nassert 'APPRENTICE_API_KEY' not in os.environ\n")
    assert result.passed
