"""A model worker stuck inside llama.cpp cannot hang a request or the server's shutdown.

The worker here is a stand-in process that loads, sends one piece, then hangs the way a
native loop does: deaf to cancel, exit and SIGTERM. No real model runs.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from model.runtime.api import BackendCrashedError, CancelToken, CompletionRequest
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend
from tests.gguf_writer import tiny_model

STUCK_WORKER = """
import json, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
info = {"name": "stuck", "architecture": "llama", "context_length": 2048,
        "special_tokens": [], "fim_tokens": {}}
for line in sys.stdin:
    message = json.loads(line)
    if message["op"] == "load":
        print(json.dumps({"id": message["id"], "ok": True, "info": info}), flush=True)
    elif message["op"] == "complete":
        print(json.dumps({"id": message["id"], "piece": "x"}), flush=True)
        time.sleep(3600)
"""


@pytest.fixture
def stuck(tmp_path: Path) -> LlamaCppBackend:
    script = tmp_path / "stuck_worker.py"
    script.write_text(STUCK_WORKER)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    model = tiny_model().write(tmp_path / "tiny.gguf")
    return LlamaCppBackend(LlamaConfig(model_path=model, stuck_after=0.5), python=str(python))


def _exits(pid: int) -> bool:
    """Whether the process is gone (reaped) within a few seconds."""
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.025)
    return False


@pytest.mark.timeout(60)
def test_close_ends_a_generation_stuck_in_the_worker(stuck: LlamaCppBackend) -> None:
    generating = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:  # as the server's model thread does
        stream = stuck.complete(CompletionRequest(prompt=("x",), max_tokens=5))
        try:
            next(stream)
            generating.set()
            list(stream)
        except BaseException as error:  # recorded for the assertion below
            errors.append(error)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert generating.wait(30)
    pid = stuck.worker_pid
    assert pid is not None
    stuck.close()  # the consumer holds the backend's lock, waiting on the stuck worker
    consumer.join(30)
    assert not consumer.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], BackendCrashedError)
    assert _exits(pid)


@pytest.mark.timeout(60)
def test_a_stuck_worker_past_the_deadline_is_killed(stuck: LlamaCppBackend) -> None:
    stream = stuck.complete(
        CompletionRequest(prompt=("x",), max_tokens=5, deadline=time.monotonic() + 0.2)
    )
    assert next(stream) == "x"
    pid = stuck.worker_pid
    assert pid is not None
    with pytest.raises(BackendCrashedError, match="stopped answering"):
        list(stream)
    stuck.close()
    assert _exits(pid)


@pytest.mark.timeout(60)
def test_a_stuck_worker_that_ignores_a_cancel_is_killed(stuck: LlamaCppBackend) -> None:
    token = CancelToken()
    stream = stuck.complete(CompletionRequest(prompt=("x",), max_tokens=5, cancel=token))
    assert next(stream) == "x"
    token.cancel()
    with pytest.raises(BackendCrashedError, match="stopped answering"):
        list(stream)
    stuck.close()
