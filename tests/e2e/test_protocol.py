"""JSON-RPC robustness: garbage on stdin never kills the server, every request gets one reply.

pygls's client cannot send malformed messages, so these tests speak the wire format
themselves: ``Content-Length`` framing over the server's stdin and stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.conftest import READY_TIMEOUT_S, SERVER_COMMAND, server_env

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

REPLY_TIMEOUT_S = 60.0


class RawClient:
    """The server as a subprocess, spoken to in framed JSON-RPC, every message kept."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.workspace = Path()
        self.received: list[dict[str, Any]] = []
        self.unparsable: list[bytes] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read_all())

    @classmethod
    async def start(cls, log: Path) -> RawClient:
        """Start ``apprentice serve`` with its stderr (the log) going to ``log``."""
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *SERVER_COMMAND,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=server_env(),
            )
        return cls(process)

    async def _read_all(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            length = None
            while True:
                line = await stdout.readline()
                if not line:
                    return  # the server closed its stdout
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            assert length is not None, "a message without Content-Length"
            body = await stdout.readexactly(length)
            try:
                self.received.append(json.loads(body))
            except ValueError:
                self.unparsable.append(body)
            self._arrived.set()

    async def send_bytes(self, body: bytes) -> None:
        """One framed message with exactly this body."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await stdin.drain()

    async def send(self, message: object) -> None:
        """One framed JSON message (anything JSON can encode, valid JSON-RPC or not)."""
        await self.send_bytes(json.dumps(message).encode("utf-8"))

    async def request(self, msg_id: int | str, method: str, params: object = None) -> None:
        """Send a request (its reply is collected by ``reply``)."""
        await self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})

    def notify(self, method: str, params: object = None) -> asyncio.Future[None]:
        """Send a notification."""
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        return asyncio.ensure_future(self.send(message))

    def replies(self, msg_id: int | str) -> list[dict[str, Any]]:
        """Every reply received for this id so far."""
        return [
            m
            for m in self.received
            if m.get("id") == msg_id and "method" not in m and ("result" in m or "error" in m)
        ]

    async def reply(self, msg_id: int | str, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the reply to a request."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.replies(msg_id):
            if self.process.returncode is not None or self._reader.done():
                pytest.fail(f"the server is gone (exit {self.process.returncode}) before {msg_id}")
            self._arrived.clear()
            left = end - loop.time()
            if left <= 0:
                pytest.fail(f"no reply to request {msg_id!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 1.0))
        return self.replies(msg_id)[0]

    async def call(self, msg_id: int | str, method: str, params: object = None) -> dict[str, Any]:
        """A request and its reply."""
        await self.request(msg_id, method, params)
        return await self.reply(msg_id)

    def notifications(self, method: str) -> list[dict[str, Any]]:
        """Every notification of this method received so far."""
        return [m for m in self.received if m.get("method") == method and "id" not in m]

    async def close(self) -> None:
        """Kill the server if it is still running."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@pytest_asyncio.fixture
async def raw(tmp_path: Path) -> AsyncIterator[RawClient]:
    """A raw client, initialized on a one-file workspace; the server log is in tmp_path."""
    root = tmp_path / "workspace"
    root.mkdir()
    (root / "app.py").write_text("import json\n\n\ndef load(path):\n    return 1\n")
    client = await RawClient.start(tmp_path / "server.log")
    try:
        answer = await client.call(
            "init",
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": {
                    "index": {"location": str(tmp_path / "index"), "embeddings": False}
                },
            },
        )
        assert "capabilities" in answer["result"]
        await client.notify("initialized", {})
        client.workspace = root
        yield client
    finally:
        await client.close()


async def alive(client: RawClient, msg_id: str) -> dict[str, Any]:
    """The server still answers ``apprentice.status``."""
    answer = await client.call(
        msg_id, "workspace/executeCommand", {"command": "apprentice.status", "arguments": []}
    )
    assert "result" in answer, answer
    assert answer["result"]["server"]
    return answer["result"]


async def send_garbage(raw: RawClient) -> None:
    """Malformed messages of every kind, each followed by a request that must be answered."""
    await alive(raw, "s0")

    await raw.send_bytes(b"this is not JSON at all")
    await alive(raw, "s1")

    await raw.send_bytes(b'{"jsonrpc": "2.0", "id": 7, "method": "apprentice.sta')  # cut short
    await alive(raw, "s2")

    await raw.send({"jsonrpc": "2.0", "id": "no-method", "params": {}})
    await alive(raw, "s3")

    await raw.send([1, 2, 3])  # JSON, but not a JSON-RPC message
    await raw.send(42)
    await raw.send(None)
    await alive(raw, "s4")

    await raw.notify("apprentice/noSuchNotification", {"x": 1})
    await raw.notify("$/cancelRequest", {"id": "never-sent"})
    await raw.send({"jsonrpc": "2.0", "id": "never-asked", "result": None})  # a stray reply
    await alive(raw, "s5")

    await raw.notify("textDocument/didOpen", {"textDocument": "not an object"})
    await alive(raw, "s6")


async def test_garbage_does_not_kill_the_server(raw: RawClient) -> None:
    await send_garbage(raw)
    assert raw.process.returncode is None
    assert raw.unparsable == []


async def test_garbage_is_logged_not_shown(raw: RawClient) -> None:
    await send_garbage(raw)
    # A malformed message is the client's bug: the user can do nothing about it, so it
    # belongs in the log, not in an error popup per message.
    shown = [m["params"]["message"] for m in raw.notifications("window/showMessage")]
    assert shown == []


async def test_a_body_that_is_not_json_gets_a_parse_error(raw: RawClient) -> None:
    await raw.send_bytes(b"{this is not JSON")
    await alive(raw, "after-parse-error")
    errors = [m for m in raw.received if "error" in m and m.get("id") is None]
    assert [e["error"]["code"] for e in errors] == [-32700]
    assert "id" in errors[0]  # JSON-RPC wants an explicit null id here


async def test_unknown_method_is_method_not_found(raw: RawClient) -> None:
    answer = await raw.call("u1", "apprentice/noSuchMethod", {})
    assert answer["error"]["code"] == -32601
    await alive(raw, "s1")


async def test_invalid_params_are_answered(raw: RawClient) -> None:
    uri = (raw.workspace / "app.py").as_uri()
    answer = await raw.call(
        "p1",
        "textDocument/inlineCompletion",
        {"textDocument": {"uri": uri}, "position": "here", "context": {"triggerKind": 1}},
    )
    assert answer["error"]["code"] == -32602
    assert "inlineCompletion" in answer["error"]["message"]

    answer = await raw.call(
        "p2",
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": "zero", "character": 0}},
    )
    assert answer["error"]["code"] == -32602

    answer = await raw.call("p3", "workspace/executeCommand", {"arguments": []})  # no command
    assert answer["error"]["code"] == -32602

    await alive(raw, "s1")


async def test_position_past_the_end_gets_no_suggestion(raw: RawClient) -> None:
    uri = (raw.workspace / "app.py").as_uri()
    await raw.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}},
    )
    answer = await raw.call(
        "o1",
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 99, "character": 0},
            "context": {"triggerKind": 1},
        },
    )
    assert answer.get("result") in ([], {"items": []}), answer
    await alive(raw, "s1")


async def test_unknown_document_gets_no_suggestion(raw: RawClient) -> None:
    # Neither opened by the client nor on disk (a request racing a close or a delete).
    ghost = (raw.workspace / "ghost.py").as_uri()
    answer = await raw.call(
        "o2",
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": ghost},
            "position": {"line": 0, "character": 0},
            "context": {"triggerKind": 1},
        },
    )
    assert answer.get("result") in ([], {"items": []}), answer
    await alive(raw, "s1")


async def test_every_request_gets_exactly_one_reply(raw: RawClient) -> None:
    uri = (raw.workspace / "app.py").as_uri()
    await raw.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}},
    )
    sent = {
        "a": ("apprentice/noSuchMethod", {}),
        "b": ("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": 3}),
        "c": ("textDocument/codeAction", {"textDocument": {"uri": uri}}),
        "d": ("workspace/executeCommand", {"command": "apprentice.status"}),
        "e": ("workspace/executeCommand", {"command": "apprentice.noSuchCommand"}),
        "f": (
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": 0, "character": 5},
                "context": {"triggerKind": 2},
            },
        ),
    }
    for msg_id, (method, params) in sent.items():
        await raw.request(msg_id, method, params)
    for msg_id in sent:
        await raw.reply(msg_id)
    # A last round trip: any duplicate reply to the requests above has arrived by now.
    await alive(raw, "last")

    ids = Counter(m["id"] for m in raw.received if "method" not in m)
    assert {msg_id: ids[msg_id] for msg_id in sent} == dict.fromkeys(sent, 1)
    assert raw.replies("e")[0].get("error"), "an unknown command is an error"
    assert raw.unparsable == []


async def test_shutdown_and_exit(raw: RawClient) -> None:
    answer = await raw.call("bye", "shutdown", None)
    assert answer == {"jsonrpc": "2.0", "id": "bye", "result": None}
    await raw.notify("exit", None)
    code = await asyncio.wait_for(raw.process.wait(), READY_TIMEOUT_S)
    assert code == 0
