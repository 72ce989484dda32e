"""Hostile framing against the real server: oversized, bad and missing lengths are answered,
deeply nested JSON gets an error reply, and the server stays in sync and alive."""

from __future__ import annotations

import json

import pytest

from lsp.server.framing import MAX_BODY
from tests.e2e.test_protocol import RawClient, alive, raw  # noqa: F401  (raw: a fixture)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]


def status_request(msg_id: str, padding: int = 0) -> bytes:
    message = {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": "workspace/executeCommand",
        "params": {"command": "apprentice.status", "arguments": ["x" * padding]},
    }
    return json.dumps(message).encode()


async def write(client: RawClient, data: bytes) -> None:
    stdin = client.process.stdin
    assert stdin is not None
    stdin.write(data)
    await stdin.drain()


async def test_an_oversized_message_is_refused_and_the_stream_stays_in_sync(
    raw: RawClient,  # noqa: F811
) -> None:
    big = status_request("big", padding=MAX_BODY + 1)
    await raw.send_bytes(big)
    answer = await raw.reply("big")
    assert answer["error"]["code"] == -32600, answer
    await alive(raw, "after-big")


@pytest.mark.parametrize("length", [b"-12", b"twelve", b""])
async def test_bad_lengths_are_answered(raw: RawClient, length: bytes) -> None:  # noqa: F811
    await write(raw, b"Content-Length: " + length + b"\r\n\r\n" + status_request("bad"))
    answer = await raw.reply("bad")
    assert answer["error"]["code"] == -32600, answer
    await alive(raw, "after-bad")


async def test_a_missing_header_is_answered(raw: RawClient) -> None:  # noqa: F811
    await write(raw, b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + status_request("m"))
    assert (await raw.reply("m"))["error"]["code"] == -32600
    await write(raw, status_request("bare"))  # no headers at all
    assert (await raw.reply("bare"))["error"]["code"] == -32600
    await alive(raw, "after-missing")


async def test_deeply_nested_json_gets_an_error_reply(raw: RawClient) -> None:  # noqa: F811
    await raw.send_bytes(b"[" * 200_000 + b"]" * 200_000)
    await alive(raw, "after-nested-array")
    deep = (
        status_request("deep")
        .replace(b'["', b"[" * 50_000 + b'["')
        .replace(b'"]', b'"]' + b"]" * 50_000)
    )
    await raw.send_bytes(deep)
    await alive(raw, "after-nested-request")
    errors = [m["error"]["code"] for m in raw.received if "error" in m and m.get("id") is None]
    assert errors == [-32700, -32700]
    assert raw.process.returncode is None
