"""``python -m llama_cpp.server`` on 127.0.0.1 for the tests that need a real OpenAI server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(command: Sequence[str], log: Path, start_s: float = 120) -> Iterator[str]:
    """Run ``command`` (a ``served_model`` command and its options) on a free port; yield
    ``http://127.0.0.1:PORT/v1`` once it lists its models, and stop it afterwards.

    Its output goes to ``log`` (a file, never a pipe nobody drains); a server that exits or
    is not ready within ``start_s`` fails the test with the log's tail.
    """
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        give_up = time.monotonic() + start_s
        while True:
            if server.poll() is not None or time.monotonic() > give_up:
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=1.0):
                    break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
