"""Issue 18: a remote server that trickles bytes is cut off at the request timeout.

The server answers 200 and headers at once, then one byte every 0.2 s for 30 s: no socket
read timeout ever fires, so only a deadline over the whole request ends the wait.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lsp.cli import build_parser
from model.factory import BackendSettings, create_backend
from model.runtime.api import BackendUnavailableError, CompletionRequest, ModelError

TRICKLE_S = 30.0
BYTE_EVERY_S = 0.2
REQUEST_TIMEOUT = 1.0
HUNG_S = 10.0  # proves it did not wait for the trickle; not a performance target


class _TrickleHandler(BaseHTTPRequestHandler):
    server: _TrickleServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._trickle("application/json", b'{"data": [{"id": "m"}]}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._trickle("text/event-stream", b'data: {"choices": [{"text": "x"}]}\n\n')

    def _trickle(self, content_type: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        ends = time.monotonic() + TRICKLE_S
        while time.monotonic() < ends and not self.server.stop.is_set():
            try:
                self.wfile.write(b" " if content_type == "application/json" else b":")
                self.wfile.flush()
            except OSError:
                return  # the client hung up: what the deadline should do
            if self.server.stop.wait(BYTE_EVERY_S):
                return


class _TrickleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.stop = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hangs up mid-trickle on purpose


@pytest.fixture
def trickle() -> Iterator[str]:
    server = _TrickleServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _settings(url: str, **kwargs: Any) -> BackendSettings:
    return BackendSettings(remote_url=url, request_timeout=REQUEST_TIMEOUT, **kwargs)


@pytest.mark.timeout(60)
def test_the_model_list_is_cut_at_the_request_timeout(trickle: str) -> None:
    backend = create_backend(_settings(trickle))
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        backend.info()
    elapsed = time.monotonic() - started
    assert isinstance(caught.value, BackendUnavailableError)
    message = str(caught.value)
    assert f"{trickle}/v1/models" in message
    assert f"within {REQUEST_TIMEOUT:g} s (request timeout)" in message
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < HUNG_S


@pytest.mark.timeout(60)
def test_a_completion_is_cut_at_the_request_timeout(trickle: str) -> None:
    backend = create_backend(_settings(trickle, remote_model="m"))  # no model-list request
    request = CompletionRequest(prompt=("def f():\n    return",), max_tokens=8)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        backend.complete(request).text()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert f"{trickle}/v1/completions" in message
    assert f"within {REQUEST_TIMEOUT:g} s (request timeout)" in message
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < HUNG_S


def test_the_cli_timeout_bounds_remote_requests() -> None:
    from lsp.cli.workspace import complete_settings
    from lsp.core.factory import backend_settings

    args = build_parser().parse_args(
        ["complete", "x.py", "--line", "0", "--col", "0", "--remote", "http://h", "--timeout", "5"]
    )
    assert isinstance(args, argparse.Namespace)
    settings = backend_settings(complete_settings(args), one_off=True)
    assert settings.remote_url == "http://h"
    assert settings.request_timeout == 5.0


@pytest.mark.timeout(60)
def test_the_distill_teacher_is_cut_at_its_timeout(trickle: str) -> None:
    from lsp.cli.train import _teacher

    args = argparse.Namespace(
        teacher=trickle,
        remote_model=None,
        k=1,
        temperature=0.0,
        teacher_timeout=REQUEST_TIMEOUT,
        retries=0,
        rate=0.0,
        fim_template=None,
    )
    teacher = _teacher(args)
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        teacher.check()  # the model list: no per-request deadline of its own
    elapsed = time.monotonic() - started
    assert f"within {REQUEST_TIMEOUT:g} s (request timeout)" in str(caught.value)
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < HUNG_S


@pytest.mark.timeout(60)
async def test_the_language_server_model_load_is_cut_at_the_request_timeout(trickle: str) -> None:
    from lsp.core.settings import parse_settings
    from lsp.server.engine import Engine

    settings, problems = parse_settings(
        {"model": {"remoteUrl": trickle}, "completion": {"timeoutMs": int(REQUEST_TIMEOUT * 1000)}}
    )
    assert problems == []
    reports: list[str] = []
    engine = Engine(settings, root=None, report=lambda key, message: reports.append(message))
    started = time.monotonic()
    await engine.start()
    elapsed = time.monotonic() - started
    engine.close()
    assert engine.status.state == "error"
    assert f"within {REQUEST_TIMEOUT:g} s (request timeout)" in (engine.status.error or "")
    assert len(reports) == 1 and trickle in reports[0]
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < HUNG_S
