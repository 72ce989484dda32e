"""RemoteBackend against a real llama_cpp.server and against tiny misbehaving HTTP stubs."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from model.runtime.api import (
    Backend,
    BackendPausedError,
    BackendUnavailableError,
    CancelToken,
    CompletionRequest,
    SpecialToken,
)
from model.runtime.breaker import CircuitBreaker
from model.runtime.remote import RemoteBackend

SERVER_START_TIMEOUT_S = 60.0
API_KEY = "sekrit-key-123"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(prompt: str = "def add(a, b):\n    return", **kwargs: Any) -> CompletionRequest:
    return CompletionRequest(prompt=(prompt,), **kwargs)


# -- the real server ---------------------------------------------------------------------


@dataclass
class LlamaServer:
    """A running `python -m llama_cpp.server` and where its output goes."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def failure(self, what: str) -> str:
        """``what`` plus the exit status and the tail of the server's output."""
        code = self.proc.poll()
        if code is not None and code < 0:
            status = f"killed by {signal.Signals(-code).name}"
        else:
            status = f"exit code {code}"
        tail = self.log_path.read_text(errors="replace")[-2000:]
        return f"llama_cpp.server {what} ({status}):\n{tail}"


@pytest.fixture(scope="module")
def llama_process(
    served_model: Sequence[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """A llama_cpp.server serving the embedded Gemma, started once per module."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        *served_model,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
    ]  # fmt: skip
    # Output goes to a file, not a pipe nobody drains, so the server can never block on it.
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def llama_server(llama_process: LlamaServer) -> Iterator[str]:
    """The shared server's base URL; a test during which it died says so, with its output."""
    if llama_process.proc.poll() is not None:
        pytest.fail(llama_process.failure("died during an earlier test"))
    yield llama_process.url
    if llama_process.proc.poll() is not None:
        pytest.fail(llama_process.failure("died during this test"))


def _wait_ready(server: LlamaServer) -> None:
    give_up = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < give_up and server.proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{server.url}/v1/models", timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(server.failure("did not become ready"))


def test_streams_a_completion_in_several_pieces(llama_server: str) -> None:
    backend = RemoteBackend(llama_server)
    stream = backend.complete(_request(max_tokens=16, temperature=0.0, seed=1))
    pieces = list(stream)
    assert "".join(pieces).strip()
    assert len(pieces) >= 2
    usage = stream.usage
    assert usage.model == backend.info().name
    assert usage.finish_reason in ("stop", "length")
    assert 0 < usage.completion_tokens <= 16
    assert usage.prompt_tokens > 0
    assert usage.prompt_tokens_evaluated == usage.prompt_tokens
    assert usage.seconds > 0


def test_max_tokens_is_honoured(llama_server: str) -> None:
    stream = RemoteBackend(llama_server).complete(_request("1, 2, 3, 4,", max_tokens=4))
    stream.text()
    assert 0 < stream.usage.completion_tokens <= 4
    assert stream.usage.finish_reason == "length"


def test_cancel_after_the_first_piece_ends_the_stream(llama_server: str) -> None:
    token = CancelToken()
    stream = RemoteBackend(llama_server).complete(
        _request("1, 2, 3, 4,", max_tokens=400, cancel=token)
    )
    first = next(stream)
    assert first
    token.cancel()
    started = time.monotonic()
    rest = list(stream)
    assert time.monotonic() - started < 0.5
    assert rest == []
    assert stream.usage.finish_reason == "cancelled"


def test_past_deadline_ends_before_any_request(llama_server: str) -> None:
    stream = RemoteBackend(llama_server).complete(_request(deadline=time.monotonic() - 1))
    assert stream.text() == ""
    assert stream.usage.finish_reason == "deadline"


def test_near_deadline_cuts_generation(llama_server: str) -> None:
    backend = RemoteBackend(llama_server)
    started = time.monotonic()
    stream = backend.complete(_request("1, 2, 3, 4,", max_tokens=1500, deadline=started + 0.4))
    stream.text()
    assert stream.usage.finish_reason == "deadline"
    assert time.monotonic() - started < 1.5


def test_stop_sequence_is_honoured(llama_server: str) -> None:
    # Runs after the timing-sensitive tests: llama_cpp.server is slow to start the
    # request that follows a stopped one.
    backend = RemoteBackend(llama_server)
    full = backend.complete(_request(max_tokens=24)).text()
    assert len(full) >= 4, full
    # Greedy decoding repeats itself, so a stop taken from the free run's second half
    # must cut the stopped run exactly where it first occurs.
    stop = full[len(full) // 2 :][:3]
    stream = backend.complete(_request(max_tokens=24, stop=(stop,)))
    assert stream.text() == full[: full.index(stop)]
    assert stream.usage.finish_reason == "stop"


def test_info_names_the_served_model(llama_server: str) -> None:
    with urllib.request.urlopen(f"{llama_server}/v1/models", timeout=5) as resp:
        served = json.load(resp)["data"][0]["id"]
    info = RemoteBackend(llama_server + "/v1", context_length=2048).info()
    assert info.name == served
    assert info.context_length == 2048
    assert info.special_tokens == frozenset()


# -- stubs that misbehave on purpose -----------------------------------------------------


@dataclass
class Seen:
    """One request a stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.flaky_fails = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (timeouts, cancels); that is not news


def _chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "text_completion",
        "model": "stub-model",
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
    }


def _events(*chunks: dict[str, Any], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)
    return out + (b"data: [DONE]\r\n\r\n" if done else b"")


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
        route = self.path.split("/")[1]
        if self.path.endswith("/v1/models") and route not in ("err500", "hang"):
            self._reply(200, "application/json", json.dumps({"data": [{"id": "stub-model"}]}))
            return
        getattr(self, f"_route_{route}")()

    def _reply(self, status: int, content_type: str, body: bytes | str) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        if content_type != "text/event-stream":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _route_ok(self) -> None:
        usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
        sse = _events(_chunk("a"), _chunk("b"), _chunk(""), _chunk("c", "length"), usage)
        self._reply(200, "text/event-stream", b": ping\r\n\r\n" + sse)

    def _route_json(self) -> None:
        whole = {**_chunk("whole answer", "stop"), "usage": {"completion_tokens": 2}}
        self._reply(200, "application/json", json.dumps(whole))

    def _route_err500(self) -> None:
        error = {"error": {"message": "model exploded\nwhile loading", "type": "server_error"}}
        self._reply(500, "application/json", json.dumps(error))

    def _route_err400(self) -> None:
        self._reply(400, "application/json", json.dumps({"error": "too long: " + "x" * 1000}))

    def _route_auth(self) -> None:
        echoed = {"error": {"message": f"invalid api key {self.headers['Authorization']}"}}
        self._reply(401, "application/json", json.dumps(echoed))

    def _route_hang(self) -> None:
        self.server.release.wait(30)

    def _route_slow(self) -> None:
        self.server.release.wait(5)
        self._reply(200, "text/event-stream", _events(_chunk("late", "stop")))

    def _route_badjson(self) -> None:
        self._reply(200, "text/event-stream", b"data: {oops\r\n\r\n")

    def _route_notsse(self) -> None:
        self._reply(200, "text/event-stream", b"<html>hello</html>\r\n\r\n")

    def _route_midstream(self) -> None:
        self._reply(200, "text/event-stream", _events(_chunk("a"), done=False))

    def _route_interrupted(self) -> None:
        # What llama_cpp.server sends a streaming answer a newer request interrupts.
        self._reply(200, "text/event-stream", _events(_chunk("a"), _chunk("b")))

    def _route_trickle(self) -> None:
        # Headers at once, then one byte of a never-ending comment every 20 ms (for ten
        # minutes): each receive is quick, so only a deadline over the whole request ends it.
        self._reply(200, "text/event-stream", b": ")
        for _ in range(30_000):
            if self.server.release.wait(0.02):
                return
            try:
                self.wfile.write(b"z")
                self.wfile.flush()
            except OSError:
                return

    def _route_longline(self) -> None:
        self._reply(200, "text/event-stream", b"data: " + b"x" * (200 * 1024))

    def _route_longevent(self) -> None:
        self._reply(200, "text/event-stream", b"data: xxxxxxxxxxxxxxxx\n" * 40_000)

    def _route_endless(self) -> None:
        self._reply(200, "text/event-stream", _events(*[_chunk("")] * 60_000, done=False))

    def _route_flaky(self) -> None:
        if self.server.flaky_fails:
            self._route_midstream()
        else:
            self._route_ok()


@pytest.fixture(scope="module")
def stub() -> Iterator[_StubServer]:
    """A local HTTP server whose first path segment picks how it (mis)behaves."""
    server = _StubServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def _url(server: _StubServer, route: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{route}"


def _failure(backend: RemoteBackend, request: CompletionRequest | None = None) -> str:
    with pytest.raises(BackendUnavailableError) as caught:
        backend.complete(request or _request()).text()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_stub_stream_parses_pieces_usage_and_request(stub: _StubServer) -> None:
    backend = RemoteBackend(_url(stub, "ok") + "/v1/", api_key=API_KEY)
    assert isinstance(backend, Backend)
    request = CompletionRequest(
        prompt=("<pre>", SpecialToken("<|fim|>"), "x = "),
        max_tokens=9,
        stop=("\n\n",),
        stop_tokens=(SpecialToken("<end_of_turn>"),),
        temperature=0.2,
        top_p=0.9,
        seed=42,
    )
    stream = backend.complete(request)
    assert list(stream) == ["a", "b", "c"]
    assert stream.usage.finish_reason == "length"
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (7, 3)
    assert stream.usage.model == "stub-model"
    sent = stub.seen[-1]
    assert sent.path == "/ok/v1/completions"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.body == {
        "model": "stub-model",
        "prompt": "<pre><|fim|>x = ",
        "max_tokens": 9,
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\n", "<end_of_turn>"],
        "seed": 42,
    }


def test_stub_json_answer_to_a_streamed_request(stub: _StubServer) -> None:
    stream = RemoteBackend(_url(stub, "json"), model="m").complete(_request())
    assert list(stream) == ["whole answer"]
    assert stream.usage.completion_tokens == 2
    assert stream.usage.finish_reason == "stop"


def test_dead_server_fails_fast_naming_the_url() -> None:
    port = _free_port()
    backend = RemoteBackend(f"http://127.0.0.1:{port}", model="m")
    started = time.monotonic()
    message = _failure(backend)
    assert f"http://127.0.0.1:{port}/v1/completions" in message
    assert "connection refused" in message
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}/v1/models"):
        backend.info()
    assert time.monotonic() - started < 2.0


def test_http_500_reports_status_and_server_message(stub: _StubServer) -> None:
    message = _failure(RemoteBackend(_url(stub, "err500"), model="m"))
    assert "HTTP 500" in message
    assert "model exploded while loading" in message
    with pytest.raises(BackendUnavailableError, match="HTTP 500"):
        RemoteBackend(_url(stub, "err500")).info()


def test_http_400_message_is_truncated(stub: _StubServer) -> None:
    message = _failure(RemoteBackend(_url(stub, "err400"), model="m"))
    assert "HTTP 400" in message
    assert "too long: xxx" in message
    assert len(message) < 300
    assert message.endswith("…")


def test_silent_server_hits_the_read_timeout(stub: _StubServer) -> None:
    backend = RemoteBackend(_url(stub, "hang"), model="m", read_timeout=0.5)
    started = time.monotonic()
    message = _failure(backend)
    assert 0.4 < time.monotonic() - started < 2.0
    assert "read timeout" in message
    assert "/hang/v1/completions" in message


def test_malformed_json_in_the_stream(stub: _StubServer) -> None:
    assert "malformed JSON: {oops" in _failure(RemoteBackend(_url(stub, "badjson"), model="m"))


def test_body_that_is_not_sse(stub: _StubServer) -> None:
    assert "malformed server-sent event" in _failure(RemoteBackend(_url(stub, "notsse"), model="m"))


def test_server_closing_mid_stream(stub: _StubServer) -> None:
    backend = RemoteBackend(_url(stub, "midstream"), model="m")
    stream = backend.complete(_request())
    assert next(stream) == "a"
    with pytest.raises(BackendUnavailableError, match="closed the connection mid-stream"):
        next(stream)


def test_an_answer_ended_without_a_finish_reason_was_cut_short(stub: _StubServer) -> None:
    stream = RemoteBackend(_url(stub, "interrupted"), model="m").complete(_request())
    with pytest.raises(BackendUnavailableError, match="without a finish reason") as refused:
        list(stream)
    assert "--interrupt_requests False" in str(refused.value)


def test_api_key_is_sent_but_never_shown(
    stub: _StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPRENTICE_API_KEY", API_KEY)
    message = _failure(RemoteBackend(_url(stub, "auth")))
    assert [s.headers.get("Authorization") for s in stub.seen if s.path.startswith("/auth")] == [
        f"Bearer {API_KEY}",  # GET /v1/models, to learn the model id
        f"Bearer {API_KEY}",
    ]
    assert "HTTP 401" in message
    assert "invalid api key Bearer ***" in message
    assert API_KEY not in message


def test_cancel_lands_while_the_server_is_silent(stub: _StubServer) -> None:
    token = CancelToken()
    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    started = time.monotonic()
    stream = RemoteBackend(_url(stub, "slow"), model="m").complete(_request(cancel=token))
    assert stream.text() == ""
    assert stream.usage.finish_reason == "cancelled"
    assert time.monotonic() - started < 1.0


def test_deadline_bounds_a_silent_server(stub: _StubServer) -> None:
    started = time.monotonic()
    stream = RemoteBackend(_url(stub, "slow"), model="m").complete(_request(deadline=started + 0.3))
    assert stream.text() == ""
    assert stream.usage.finish_reason == "deadline"
    assert time.monotonic() - started < 1.0


def test_close_aborts_an_open_stream(stub: _StubServer) -> None:
    backend = RemoteBackend(_url(stub, "slow"), model="m")
    threading.Timer(0.2, backend.close).start()
    stream = backend.complete(_request())
    assert stream.text() == ""
    assert stream.usage.finish_reason == "cancelled"


def test_settings_are_checked_and_tokens_estimated() -> None:
    with pytest.raises(BackendUnavailableError, match="ftp://host"):
        RemoteBackend("ftp://host/v1")
    backend = RemoteBackend("https://user:pw@example.invalid:8443/api/")
    assert backend.base_url == "https://example.invalid:8443/api/v1"
    assert backend.count_tokens("") == 0
    assert backend.count_tokens("x") == 1
    assert backend.count_tokens("abcdefg") == 2  # 7 / 3.5


# -- limits over the whole request -------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_trickling_server_is_cut_at_the_request_timeout(stub: _StubServer) -> None:
    backend = RemoteBackend(_url(stub, "trickle"), model="m", read_timeout=5, request_timeout=1)
    assert "request timeout" in _failure(backend)


@pytest.mark.timeout(60)
def test_a_trickling_server_is_cut_at_the_request_deadline(stub: _StubServer) -> None:
    backend = RemoteBackend(_url(stub, "trickle"), model="m", read_timeout=5)
    stream = backend.complete(_request(deadline=time.monotonic() + 0.5))
    assert stream.text() == ""
    assert stream.usage.finish_reason == "deadline"


@pytest.mark.parametrize(
    ("route", "complaint"),
    [
        ("longline", "a line longer than 64 KiB"),
        ("longevent", "an event longer than 256 KiB"),
        ("endless", "more than 4096 KiB"),
    ],
)
def test_stream_size_is_capped(stub: _StubServer, route: str, complaint: str) -> None:
    assert complaint in _failure(RemoteBackend(_url(stub, route), model="m"))


# -- circuit breaker ----------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_server_is_left_alone_then_tried_again(stub: _StubServer) -> None:
    clock = _Clock()
    breaker = CircuitBreaker(threshold=2, cooldown_s=5, clock=clock)
    backend = RemoteBackend(_url(stub, "flaky"), model="m", breaker=breaker)
    stub.flaky_fails = True

    def asked() -> int:
        return sum(s.path == "/flaky/v1/completions" for s in stub.seen)

    for _ in range(2):  # fails mid-generation, twice
        assert "mid-stream" in _failure(backend)
    assert asked() == 2 and breaker.state == "open"
    with pytest.raises(BackendPausedError, match="failed 2 times in a row"):
        backend.complete(_request()).text()
    assert asked() == 2  # refused without a request

    clock.now += 6  # past the cool-down: one trial goes through, and fails
    assert "mid-stream" in _failure(backend)
    assert asked() == 3 and breaker.state == "open"
    clock.now += 6  # the cool-down doubled after a failed trial
    with pytest.raises(BackendPausedError):
        backend.complete(_request()).text()
    assert asked() == 3

    stub.flaky_fails = False
    clock.now += 5
    assert backend.complete(_request()).text() == "abc"  # the trial succeeds
    assert breaker.state == "closed"
    assert backend.complete(_request()).text() == "abc"
    assert asked() == 5
