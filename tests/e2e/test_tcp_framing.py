"""``apprentice serve --tcp``: the same framing limits over a socket (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SERVER_COMMAND, server_env

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def frame(message: dict[str, Any], length: bytes | None = None) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: " + (length or str(len(body)).encode()) + b"\r\n\r\n" + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(await reader.readexactly(length))  # type: ignore[no-any-return]


async def reply(reader: asyncio.StreamReader, msg_id: str) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(read_message(reader), 60)
        if message.get("id") == msg_id and "method" not in message:
            return message


async def test_tcp_serving_refuses_bad_frames_and_stays_in_sync(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *SERVER_COMMAND, "--tcp", f"127.0.0.1:{port}", stderr=log, env=server_env()
        )
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the server never listened")
        root = tmp_path / "workspace"
        root.mkdir()
        init = {
            "jsonrpc": "2.0",
            "id": "init",
            "method": "initialize",
            "params": {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": {"index": {"enabled": False}},
            },
        }
        writer.write(frame(init))
        assert "result" in await reply(reader, "init")
        status = {
            "jsonrpc": "2.0",
            "method": "workspace/executeCommand",
            "params": {"command": "apprentice.status", "arguments": []},
        }
        writer.write(frame({**status, "id": "bad"}, length=b"-3"))
        writer.write(frame({**status, "id": "good"}))
        await writer.drain()
        assert (await reply(reader, "bad"))["error"]["code"] == -32600
        assert "result" in await reply(reader, "good")
        writer.close()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
