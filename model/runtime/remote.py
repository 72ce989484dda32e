"""RemoteBackend: streamed completions from an OpenAI-compatible ``/v1/completions`` server."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from model.runtime.api import (
    BackendPausedError,
    BackendUnavailableError,
    CancelToken,
    CompletionRequest,
    CompletionStream,
    FinishReason,
    ModelInfo,
    Usage,
    render_prompt,
)
from model.runtime.breaker import CircuitBreaker
from model.runtime.sse import MAX_LINE, EventReader, SseError

log = logging.getLogger(__name__)

API_KEY_ENV = "APPRENTICE_API_KEY"
_CHARS_PER_TOKEN = 3.5
_MAX_MESSAGE = 200
_MAX_ERROR_BODY = 64 * 1024
_MAX_JSON_BODY = 16 * 1024 * 1024
# How often the watcher looks at the cancel token and the clock; bounds how late a cancel
# or the end of the request lands while a read is blocked (or fed one byte at a time).
_CANCEL_POLL_S = 0.05
_DEADLINE_SLACK_S = 0.02


class _Overdue(Exception):
    """Internal: the whole request took longer than ``request_timeout`` (an error)."""


class _Stopped(Exception):
    """Internal: the caller's cancel or deadline ended the generation (not an error)."""

    def __init__(self, reason: FinishReason) -> None:
        super().__init__(reason)
        self.reason: FinishReason = reason


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int | None
    netloc: str
    prefix: str
    model: str | None = None  # the URL's ``#model-id``, as model specs write it

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}{path}"


@dataclass
class _Chunk:
    text: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    model: str | None


def _parse_base_url(base_url: str) -> _Endpoint:
    parts = urlsplit(base_url.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise BackendUnavailableError(
            f"remote model URL {base_url!r} is not of the form http(s)://host[:port][/v1]"
        )
    # Servers are addressed either at their root or at /v1 (as OpenAI clients are
    # configured); both name the same endpoints.
    prefix = parts.path.rstrip("/")
    if not prefix.endswith("/v1"):
        prefix += "/v1"
    # Userinfo never reaches messages: it may hold a password.
    netloc = parts.netloc.rpartition("@")[2]
    model = parts.fragment.strip() or None
    return _Endpoint(parts.scheme, parts.hostname, port, netloc, prefix, model)


def _refuse_plain_http_key(endpoint: _Endpoint) -> None:
    """An API key travels in clear over http: only to this machine, never across a network."""
    if endpoint.scheme == "https" or _is_loopback(endpoint.host):
        return
    raise BackendUnavailableError(
        f"refusing to send {API_KEY_ENV} over plain http to {endpoint.host}: use an https URL "
        "(or a server on this machine)"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: DNS could point it anywhere


class RemoteBackend:
    """A Backend that streams from llama.cpp's server, llama_cpp.server, vLLM or Ollama."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        request_timeout: float = 60.0,
        context_length: int = 4096,
        breaker: CircuitBreaker | None = None,
        repeat_penalty: float | None = None,
    ) -> None:
        self._endpoint = _parse_base_url(base_url)
        # ``model`` (model.remoteModel) wins over the URL's ``#model-id``: a server that
        # serves a base and its adapters (vLLM --lora-modules) lists the base first, so an
        # id dropped here would ask the base instead of the adapter.
        self._model = model or self._endpoint.model
        # Sent when set: llama_cpp.server penalises repeats (1.1) in every request that does
        # not say otherwise, so the same model there answers unlike Apprentice's own worker
        # (1.0); llama-server takes it too, vLLM ignores it (and logs so).
        self._repeat_penalty = repeat_penalty
        self._api_key = api_key or os.environ.get(API_KEY_ENV) or None
        if self._api_key:
            _refuse_plain_http_key(self._endpoint)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # Socket timeouts apply per receive: a server sending a byte now and then would
        # never hit them. This bounds the whole exchange, connect to last byte.
        self._request_timeout = request_timeout
        self._context_length = context_length
        self.breaker = breaker or CircuitBreaker()
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._open: set[socket.socket] = set()
        self._aborted: set[socket.socket] = set()
        self._ends: dict[socket.socket, float] = {}

    @property
    def base_url(self) -> str:
        """The server's ``/v1`` URL as used in messages (no credentials)."""
        return self._endpoint.url("")

    def info(self) -> ModelInfo:
        """The served model's id from ``GET /v1/models`` (fetched once, then cached)."""
        with self._lock:
            if self._info is not None:
                return self._info
        info = self._fetch_info()
        with self._lock:
            self._info = info
        return info

    def count_tokens(self, text: str) -> int:
        """An estimate (about 3.5 characters a token): the server's tokenizer is not at hand."""
        return math.ceil(len(text) / _CHARS_PER_TOKEN)

    def complete(self, request: CompletionRequest) -> CompletionStream:
        """Start a streamed completion; errors and all I/O happen while iterating."""
        prompt = render_prompt(request.prompt)
        estimate = self.count_tokens(prompt)
        usage = Usage(
            model=self._model or "", prompt_tokens=estimate, prompt_tokens_evaluated=estimate
        )
        return CompletionStream(self._generate(request, prompt, usage), usage)

    def close(self) -> None:
        """Abort every open connection; streams reading from them end as cancelled."""
        with self._lock:
            socks = list(self._open)
            self._aborted.update(socks)
        for sock in socks:
            _shutdown(sock)

    # -- one generation ---------------------------------------------------------------

    def _generate(self, request: CompletionRequest, prompt: str, usage: Usage) -> Iterator[str]:
        started = time.monotonic()
        url = self._endpoint.url("/completions")
        sock: socket.socket | None = None
        conn: http.client.HTTPConnection | None = None
        resp: http.client.HTTPResponse | None = None
        done = threading.Event()
        watcher: threading.Thread | None = None
        wait = self.breaker.refusal()
        if wait is not None:
            raise BackendPausedError(
                f"remote model server {url}: failed {self.breaker.failures} times in a row; "
                f"not asked again for {math.ceil(wait)} s"
            )
        outcome = "neutral"
        try:
            self._check(request, None)
            model = self._model or self.info().name
            usage.model = model
            body = self._request_body(request, prompt, model)
            conn, sock = self._connect(url, request)
            watcher = self._watch(sock, request, done)
            resp = self._send(conn, sock, url, "POST", "/completions", body, request)
            log.debug("streaming completion from %s", url)
            yield from self._read_stream(resp, sock, url, request, usage)
            outcome = "success"
        except _Stopped as stopped:
            usage.finish_reason = stopped.reason
            outcome = "success" if resp is not None else "neutral"
        except _Overdue:
            outcome = "failure"
            raise self._overdue(url) from None
        except BackendUnavailableError:
            outcome = "failure"
            raise
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
            self._release(conn, sock, resp)
            usage.seconds = time.monotonic() - started
            if outcome == "success":
                self.breaker.success()
            elif outcome == "failure":
                self.breaker.failure()
            else:
                self.breaker.release()

    def _request_body(self, request: CompletionRequest, prompt: str, model: str) -> bytes:
        stop = [s for s in (*request.stop, *(t.text for t in request.stop_tokens)) if s]
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            body["stop"] = list(dict.fromkeys(stop))
        if request.seed is not None:
            body["seed"] = request.seed
        if self._repeat_penalty is not None:
            body["repeat_penalty"] = self._repeat_penalty
        return json.dumps(body).encode("utf-8")

    def _read_stream(
        self,
        resp: http.client.HTTPResponse,
        sock: socket.socket,
        url: str,
        request: CompletionRequest,
        usage: Usage,
    ) -> Iterator[str]:
        content_type = (resp.getheader("Content-Type") or "").lower()
        if content_type.startswith("application/json"):
            # Some servers answer a streamed request with one JSON document.
            chunk = self._parse_chunk(self._read_body(resp, sock, url, request), url, request)
            self._apply(chunk, usage, pieces=1 if chunk.text else 0, request=request)
            if chunk.text:
                yield chunk.text
            return
        events = EventReader()
        pieces = 0
        finish: str | None = None
        while True:
            self._check(request, sock)
            self._bound_read(sock, request)
            try:
                raw = resp.readline(MAX_LINE)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise self._failure(url, exc, request, sock, connecting=False) from exc
            if not raw:
                self._check(request, sock)
                if finish is not None:
                    break  # tolerate servers that omit "data: [DONE]"
                raise self._error(url, "closed the connection mid-stream")
            try:
                payload = events.feed(raw)
            except SseError as exc:
                raise self._error(url, str(exc)) from None
            if payload is None:
                continue
            if payload.strip() == "[DONE]":
                if finish is None and pieces:
                    # Every OpenAI-compatible server says why an answer ended; one that
                    # does not was cut short (llama_cpp.server ends the streaming answer
                    # so when another request arrives, unless --interrupt_requests False).
                    raise self._error(
                        url,
                        "ended the answer without a finish reason (cut short; "
                        "llama_cpp.server: start it with --interrupt_requests False)",
                    )
                break
            chunk = self._parse_chunk(payload.encode("utf-8"), url, request)
            if chunk.text:
                pieces += 1
            finish = chunk.finish_reason or finish
            self._apply(chunk, usage, pieces=pieces, request=request)
            self._check(request, sock)
            if chunk.text:
                yield chunk.text

    def _parse_chunk(self, payload: bytes, url: str, request: CompletionRequest) -> _Chunk:
        try:
            obj = json.loads(payload)
        except ValueError:
            self._check(request, None)
            snippet = payload.decode("utf-8", errors="replace")
            raise self._error(url, f"sent malformed JSON: {snippet}") from None
        if not isinstance(obj, dict):
            raise self._error(url, f"sent an unexpected JSON value: {obj!r}")
        if "error" in obj:
            raise self._error(url, f"reported an error: {_error_message(obj)}")
        choices = obj.get("choices") or []
        choice = choices[0] if isinstance(choices, list) and choices else {}
        text = choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(choices, list) or not isinstance(text, str | None):
            raise self._error(url, f"sent a chunk without choices[].text: {obj!r}")
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        usage = obj.get("usage")
        model = obj.get("model")
        return _Chunk(
            text=text or "",
            finish_reason=reason if isinstance(reason, str) else None,
            usage=usage if isinstance(usage, dict) else None,
            model=model if isinstance(model, str) and model else None,
        )

    def _apply(
        self, chunk: _Chunk, usage: Usage, *, pieces: int, request: CompletionRequest
    ) -> None:
        # Streaming servers send about one token per chunk; the server's own usage,
        # when it sends one (include_usage), replaces that estimate.
        usage.completion_tokens = min(pieces, request.max_tokens)
        if chunk.model:
            usage.model = chunk.model
        if chunk.finish_reason is not None:
            usage.finish_reason = "length" if chunk.finish_reason == "length" else "stop"
        if chunk.usage is not None:
            prompt_tokens = chunk.usage.get("prompt_tokens")
            completion_tokens = chunk.usage.get("completion_tokens")
            if isinstance(prompt_tokens, int):
                usage.prompt_tokens = usage.prompt_tokens_evaluated = prompt_tokens
            if isinstance(completion_tokens, int):
                usage.completion_tokens = completion_tokens

    # -- models -----------------------------------------------------------------------

    def _fetch_info(self) -> ModelInfo:
        url = self._endpoint.url("/models")
        conn: http.client.HTTPConnection | None = None
        sock: socket.socket | None = None
        resp: http.client.HTTPResponse | None = None
        done = threading.Event()
        watcher: threading.Thread | None = None
        try:
            conn, sock = self._connect(url, None)
            watcher = self._watch(sock, None, done)
            resp = self._send(conn, sock, url, "GET", "/models", None, None)
            body = self._read_body(resp, sock, url, None)
        except _Stopped as stopped:  # only close() can stop a models request
            raise self._error(url, "request aborted: the backend was closed") from stopped
        except _Overdue:
            raise self._overdue(url) from None
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
            self._release(conn, sock, resp)
        try:
            listed = json.loads(body)["data"]
            ids = [str(entry["id"]) for entry in listed]
        except (ValueError, KeyError, TypeError):
            snippet = body.decode("utf-8", errors="replace")
            raise self._error(url, f"sent an unexpected model list: {snippet}") from None
        if not ids:
            raise self._error(url, "lists no models")
        if self._model is not None and self._model not in ids:
            log.warning("%s does not list model %r (it lists %s)", url, self._model, ids[:5])
        name = self._model or ids[0]
        log.info("remote model %s at %s", name, self.base_url)
        return ModelInfo(name=name, context_length=self._context_length, vocabulary_checked=False)

    # -- HTTP plumbing ----------------------------------------------------------------

    def _connect(
        self, url: str, request: CompletionRequest | None
    ) -> tuple[http.client.HTTPConnection, socket.socket]:
        started = time.monotonic()
        timeout = self._bounded(self._connect_timeout, request)
        ep = self._endpoint
        conn: http.client.HTTPConnection
        if ep.scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                ep.host, ep.port, timeout=timeout, context=self._ssl_context
            )
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
        try:
            conn.connect()
        except (OSError, ValueError) as exc:
            conn.close()
            raise self._failure(url, exc, request, None, connecting=True) from exc
        # Keep our own reference: http.client drops conn.sock when the response is
        # "Connection: close", but the response still reads from this socket.
        sock = conn.sock
        assert isinstance(sock, socket.socket)
        with self._lock:
            self._open.add(sock)
            self._ends[sock] = started + self._request_timeout
        return conn, sock

    def _send(
        self,
        conn: http.client.HTTPConnection,
        sock: socket.socket,
        url: str,
        method: str,
        path: str,
        body: bytes | None,
        request: CompletionRequest | None,
    ) -> http.client.HTTPResponse:
        headers = {"Accept": "text/event-stream" if body else "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            self._bound_read(sock, request)
            conn.request(method, self._endpoint.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._failure(url, exc, request, sock, connecting=False) from exc
        if 200 <= resp.status < 300:
            return resp
        try:
            detail = _error_message(resp.read(_MAX_ERROR_BODY))
        except (OSError, http.client.HTTPException, ValueError):
            detail = ""
        finally:
            resp.close()
        self._check(request, sock)
        status = f"HTTP {resp.status} {resp.reason}".rstrip()
        raise self._error(url, f"{status}: {detail}" if detail else status)

    def _read_body(
        self,
        resp: http.client.HTTPResponse,
        sock: socket.socket,
        url: str,
        request: CompletionRequest | None,
    ) -> bytes:
        try:
            self._bound_read(sock, request)
            body = resp.read(_MAX_JSON_BODY)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._failure(url, exc, request, sock, connecting=False) from exc
        # A body without a length ends at EOF, which is also what the watcher's shutdown
        # looks like: a cut-off body is the deadline's, not the server's answer.
        self._check(request, sock)
        return body

    def _release(
        self,
        conn: http.client.HTTPConnection | None,
        sock: socket.socket | None,
        resp: http.client.HTTPResponse | None,
    ) -> None:
        # Closing mid-stream is how a server learns to stop generating.
        if resp is not None:
            resp.close()
        if conn is not None:
            conn.close()
        if sock is not None:
            sock.close()
            with self._lock:
                self._open.discard(sock)
                self._aborted.discard(sock)
                self._ends.pop(sock, None)

    def _bounded(self, timeout: float, request: CompletionRequest | None) -> float:
        left = request.seconds_left() if request is not None else None
        if left is None:
            return timeout
        if left <= 0:
            raise _Stopped("deadline")
        return min(timeout, left)

    def _bound_read(self, sock: socket.socket, request: CompletionRequest | None) -> None:
        sock.settimeout(self._bounded(self._read_timeout, request))

    def _check(self, request: CompletionRequest | None, sock: socket.socket | None) -> None:
        """Raise _Stopped if the caller cancelled, the deadline passed or close() aborted."""
        with self._lock:
            aborted = sock is not None and sock in self._aborted
            end = self._ends.get(sock) if sock is not None else None
        if aborted:
            raise _Stopped("cancelled")
        if request is not None:
            if request.cancel is not None and request.cancel.cancelled:
                raise _Stopped("cancelled")
            if request.deadline is not None and time.monotonic() >= request.deadline:
                raise _Stopped("deadline")
        if end is not None and time.monotonic() >= end:
            raise _Overdue()

    def _failure(
        self,
        url: str,
        exc: BaseException,
        request: CompletionRequest | None,
        sock: socket.socket | None,
        *,
        connecting: bool,
    ) -> Exception:
        """The exception an I/O failure stands for: a stop we caused, or one clear error."""
        try:
            self._check(request, sock)
        except _Stopped as stopped:
            return stopped
        except _Overdue:
            return self._overdue(url)
        if isinstance(exc, TimeoutError):
            left = request.seconds_left() if request is not None else None
            if left is not None and left < _DEADLINE_SLACK_S:
                # The socket timeout was the deadline's remainder and fired a hair early.
                return _Stopped("deadline")
            if connecting:
                return self._error(url, f"timed out connecting after {self._connect_timeout:g} s")
            return self._error(url, f"no response within {self._read_timeout:g} s (read timeout)")
        if isinstance(exc, ConnectionRefusedError):
            return self._error(url, "connection refused (is the server running?)")
        if isinstance(exc, socket.gaierror):
            return self._error(url, f"cannot resolve host {self._endpoint.host!r}")
        if isinstance(exc, ssl.SSLError):
            return self._error(url, f"TLS error: {exc}")
        if isinstance(exc, http.client.RemoteDisconnected):
            return self._error(url, "closed the connection without answering")
        if isinstance(exc, http.client.IncompleteRead):
            return self._error(url, "closed the connection mid-stream")
        if isinstance(exc, http.client.HTTPException):
            return self._error(url, f"sent a malformed HTTP response ({type(exc).__name__})")
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        verb = "cannot connect" if connecting else "connection lost"
        return self._error(url, f"{verb}: {detail or type(exc).__name__}")

    def _watch(
        self, sock: socket.socket, request: CompletionRequest | None, done: threading.Event
    ) -> threading.Thread:
        """A thread that shuts ``sock`` down on a cancel, at the request's deadline or at the
        end of ``request_timeout``: a read blocked on a slow server, or fed one byte at a
        time, then returns within a poll interval."""
        with self._lock:
            end = self._ends.get(sock, math.inf)
        cancel = request.cancel if request is not None else None
        if request is not None and request.deadline is not None:
            end = min(end, request.deadline)
        watcher = threading.Thread(
            target=_watch,
            args=(sock, cancel, done, end),
            name="apprentice-remote-watch",
            daemon=True,
        )
        watcher.start()
        return watcher

    def _overdue(self, url: str) -> BackendUnavailableError:
        return self._error(
            url, f"no complete answer within {self._request_timeout:g} s (request timeout)"
        )

    def _error(self, url: str, detail: str) -> BackendUnavailableError:
        """One line naming the URL; the API key is masked even if a server echoes it."""
        text = " ".join(detail.split())
        if self._api_key:
            text = text.replace(self._api_key, "***")
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 1] + "…"
        return BackendUnavailableError(f"remote model server {url}: {text}")


def _watch(
    sock: socket.socket, cancel: CancelToken | None, done: threading.Event, end: float
) -> None:
    """Shut ``sock`` down once ``cancel`` fires or ``end`` passes, waking a blocked read."""
    while not done.wait(_CANCEL_POLL_S):
        if (cancel is not None and cancel.cancelled) or time.monotonic() >= end:
            _shutdown(sock)
            return


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown acts on the descriptor without touching an SSL object's
    # state, which the reading thread may be using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WHITESPACE = re.compile(r"\s+")


def _error_message(body: bytes | dict[str, Any]) -> str:
    """The human part of an error body: OpenAI's, Ollama's and FastAPI's shapes, else raw text."""
    if isinstance(body, bytes):
        text = body.decode("utf-8", errors="replace")
        try:
            obj: Any = json.loads(text)
        except ValueError:
            return _WHITESPACE.sub(" ", text).strip()
    else:
        obj = body
    found = _find_message(obj)
    return found if found is not None else json.dumps(obj)


def _find_message(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, list):
        for item in obj:
            found = _find_message(item)
            if found is not None:
                return found
        return None
    if isinstance(obj, dict):
        for key in ("error", "message", "detail", "msg"):
            if key in obj:
                found = _find_message(obj[key])
                if found is not None:
                    return found
    return None
