"""A tiny OpenAI-compatible completions server on 127.0.0.1, for tests of the server's
behaviour that do not need a real model (the language server points ``model.remoteUrl``
at it). Every completion streams ``answer`` word by word; ``delay_s`` holds each answer
back, ``fail`` makes completions answer HTTP 500, and ``answer_for`` (when set) chooses each
answer from its prompt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CompletionStub(ThreadingHTTPServer):
    """The server; its settings may be changed between requests."""

    daemon_threads = True

    def __init__(self, answer: str = "pass\n") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.delay_s = 0.0
        self.fail = False
        self.answer_for: Callable[[str], str] | None = None
        self.prompts: list[str] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL to configure as ``model.remoteUrl``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (cancels); that is not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CompletionStub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.authorizations.append(self.headers.get("Authorization"))
        self._send(200, "application/json", json.dumps({"data": [{"id": "stub"}]}).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        prompt = str(body.get("prompt", ""))
        with self.server.lock:
            self.server.prompts.append(prompt)
            self.server.authorizations.append(self.headers.get("Authorization"))
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        if self.server.fail:
            error = {"error": {"message": "the stub was told to fail"}}
            self._send(500, "application/json", json.dumps(error).encode())
            return
        answer_for = self.server.answer_for
        words = (answer_for(prompt) if answer_for else self.server.answer).split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        events = [
            {"model": "stub", "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
            for piece in pieces
        ]
        events.append(
            {"model": "stub", "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
        )
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        self._send(200, "text/event-stream", data + b"data: [DONE]\n\n")

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def running_stub(answer: str = "pass\n") -> Iterator[CompletionStub]:
    """A started stub, shut down afterwards."""
    stub = CompletionStub(answer)
    thread = threading.Thread(target=stub.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.shutdown()
        stub.server_close()
