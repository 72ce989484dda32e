"""An exception injected into each of the server's handlers gives the request error -32603, or
for a notification a log line, and the server goes on answering.

The server runs in this process on a pair of pipes (the real reader, framing and dispatch);
each registered handler and command is replaced in turn by one that raises.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from lsp.server.language_server import CURSOR, REINDEX, STATUS, ApprenticeServer, build_server

REPLY_S = 60.0


class Wire:
    """The client end of the server's stdin/stdout."""

    def __init__(self, server: ApprenticeServer) -> None:
        to_server, self._to_server = os.pipe()
        self._from_server, from_server = os.pipe()
        self.writer = os.fdopen(self._to_server, "wb")
        reader = os.fdopen(to_server, "rb")
        writer = os.fdopen(from_server, "wb")
        self.thread = threading.Thread(target=server.start_io, args=(reader, writer), daemon=True)
        self.thread.start()
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[dict[str, Any]] = []

    def _read(self) -> None:
        stream = os.fdopen(self._from_server, "rb")
        while True:
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            self.messages.put(json.loads(stream.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.writer.flush()

    def call(self, msg_id: str, method: str, params: object) -> dict[str, Any]:
        self.send({"id": msg_id, "method": method, "params": params})
        while True:
            message = self.messages.get(timeout=REPLY_S)
            self.seen.append(message)
            if message.get("id") == msg_id and "method" not in message:
                return message
            if "method" in message and "id" in message:  # a request from the server
                self.send({"id": message["id"], "result": None})

    def notify(self, method: str, params: object) -> None:
        self.send({"method": method, "params": params})

    def alive(self, msg_id: str) -> None:
        answer = self.call(msg_id, "workspace/executeCommand", {"command": STATUS, "arguments": []})
        assert "result" in answer, answer


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[tuple[ApprenticeServer, Wire, Path]]:
    root = tmp_path / "workspace"
    root.mkdir()
    (root / "app.py").write_text("import json\n\n\ndef load(path):\n    return 1\n")
    server = build_server()
    connection = Wire(server)
    answer = connection.call(
        "init",
        "initialize",
        {
            "processId": None,
            "rootUri": root.as_uri(),
            "capabilities": {},
            "initializationOptions": {
                "index": {"location": str(tmp_path / "index"), "embeddings": False},
                "model": {"remoteUrl": "http://127.0.0.1:9"},  # no model needed here
            },
        },
    )
    assert "result" in answer
    connection.notify("initialized", {})
    yield server, connection, root
    connection.call("bye", "shutdown", None)
    connection.notify("exit", None)
    connection.thread.join(10)


def injected(original: Any) -> Any:
    """A handler of the same kind (sync or async) as ``original`` that raises."""
    if inspect.iscoroutinefunction(original):

        async def boom_async(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("injected fault")

        return boom_async

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    return boom


def position() -> dict[str, int]:
    return {"line": 4, "character": 12}


def messages(uri: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """A valid message for each handler: (kind, params)."""
    doc = {"uri": uri}
    return {
        types.TEXT_DOCUMENT_INLINE_COMPLETION: (
            "request",
            {"textDocument": doc, "position": position(), "context": {"triggerKind": 1}},
        ),
        types.TEXT_DOCUMENT_COMPLETION: ("request", {"textDocument": doc, "position": position()}),
        types.TEXT_DOCUMENT_CODE_ACTION: (
            "request",
            {
                "textDocument": doc,
                "range": {"start": position(), "end": position()},
                "context": {"diagnostics": []},
            },
        ),
        types.CODE_ACTION_RESOLVE: ("request", {"title": "x", "data": {"uri": uri}}),
        types.TEXT_DOCUMENT_DID_OPEN: (
            "notification",
            {"textDocument": {**doc, "languageId": "python", "version": 9, "text": "x = 1\n"}},
        ),
        types.TEXT_DOCUMENT_DID_SAVE: ("notification", {"textDocument": doc}),
        types.TEXT_DOCUMENT_DID_CLOSE: ("notification", {"textDocument": doc}),
        types.WORKSPACE_DID_CHANGE_CONFIGURATION: ("notification", {"settings": {}}),
        types.WORKSPACE_DID_CHANGE_WATCHED_FILES: (
            "notification",
            {"changes": [{"uri": uri, "type": 2}]},
        ),
        CURSOR: ("notification", {"textDocument": doc, "position": position()}),
        types.INITIALIZED: ("notification", {}),
        types.SHUTDOWN: ("request", None),  # last: the server is still asked to shut down
    }


def test_every_handler_fault_is_answered_or_logged(
    wire: tuple[ApprenticeServer, Wire, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, connection, root = wire
    uri = (root / "app.py").as_uri()
    connection.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}},
    )
    features = server.protocol.fm.features
    plan = messages(uri)
    assert set(plan) <= set(features), "a handler this test does not know"
    # initialize cannot be sent twice; a fault in it is answered like any request's.
    untested = set(features) - set(plan) - {types.INITIALIZE}
    assert untested == set(), f"handlers without an injected fault: {untested}"
    for n, (method, (kind, params)) in enumerate(plan.items()):
        original = features[method]
        features[method] = injected(original)
        caplog.clear()
        try:
            with caplog.at_level(logging.ERROR):
                if kind == "request":
                    answer = connection.call(f"fault-{n}", method, params)
                    assert answer["error"]["code"] == -32603, (method, answer)
                else:
                    connection.notify(method, params)
                connection.alive(f"alive-{n}")
                if kind == "notification":
                    for _ in range(1000):  # the failure is logged when its task ends
                        if "injected fault" in caplog.text:
                            break
                        time.sleep(0.01)
                    assert "injected fault" in caplog.text, method
        finally:
            features[method] = original
    # Commands: the fault is injected into what each command runs.
    for n, (command, attribute) in enumerate([(STATUS, "status"), (REINDEX, "build_index")]):
        original = getattr(server, attribute)
        setattr(server, attribute, injected(original))
        try:
            answer = connection.call(
                f"command-{n}", "workspace/executeCommand", {"command": command, "arguments": []}
            )
        finally:
            setattr(server, attribute, original)
        assert answer["error"]["code"] == -32603, (command, answer)
        connection.alive(f"alive-command-{n}")
    assert connection.thread.is_alive()
