"""Failures at the edges: a missing model, a dead remote server, a corrupt index.

Each is told to the user once, costs only the suggestions it must, and never the server.
"""

from __future__ import annotations

import socket

import pytest
from lsprotocol import types

from indexer.index import IndexSettings, RepositoryIndex, index_dir_for
from tests.e2e.conftest import Session, end_of

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

CONFIG = "shop/config.py"


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def ask(session: Session) -> list[types.InlineCompletionItem]:
    """An explicit inline completion at the end of the config module."""
    text = (session.workspace / CONFIG).read_text(encoding="utf-8")
    uri = session.uri(CONFIG)
    if uri not in session.versions:
        session.open(CONFIG)
    return await session.inline(uri, end_of(text))


def errors(session: Session) -> list[str]:
    return [m.message for m in session.client.messages if m.type == types.MessageType.Error]


async def test_missing_model(session: Session) -> None:
    await session.initialize({"model": {"path": "/nonexistent.gguf"}})
    status = await session.wait_status(
        lambda s: s["model"]["state"] == "error", "the model to fail"
    )
    assert status["model"]["error"]
    await session.wait_until(lambda: bool(session.client.messages), "the error message")

    assert await ask(session) == []
    assert await ask(session) == []
    status = await session.status()  # alive, and every message has arrived

    assert len(session.client.messages) == 1, [m.message for m in session.client.messages]
    [message] = errors(session)
    assert "/nonexistent.gguf" in message
    assert "apprentice.model.path" in message  # the setting to fix
    assert status["requests"]["shown"] == 0
    # The rest of the server goes on: the workspace is indexed all the same.
    await session.wait_status(lambda s: s["index"]["state"] == "ready", "the index")


async def test_dead_remote_backend(session: Session) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    await session.initialize({"model": {"remoteUrl": url}})
    await session.wait_status(lambda s: s["model"]["state"] != "loading", "the backend")

    assert await ask(session) == []
    await session.wait_until(lambda: bool(session.client.messages), "the error message")
    assert await ask(session) == []
    status = await session.status()

    assert len(session.client.messages) == 1, [m.message for m in session.client.messages]
    [message] = errors(session)
    assert url in message
    assert "remoteUrl" in message
    assert status["backend"] == f"remote {url}"
    assert status["requests"]["shown"] == 0


async def test_corrupt_index(session: Session, gemma_path: object) -> None:
    # A real index first (so its meta.json is right), then its database overwritten.
    index = RepositoryIndex(session.workspace, IndexSettings(location=session.index_dir))
    index.update()
    index.close()
    database = index_dir_for(session.workspace, session.index_dir) / "index.sqlite"
    assert database.is_file()
    for leftover in database.parent.glob("index.sqlite-*"):  # WAL and shared memory
        leftover.unlink()
    database.write_bytes(b"this is not a database\x00" * 200)

    await session.initialize()
    status = await session.wait_ready()

    index = status["index"]
    if index["state"] == "ready":  # rebuilt: the whole workspace is back
        assert index["files"] >= 4
        assert index["symbols"] > 0
        assert session.client.messages == []
    else:  # given up: told once
        assert index["state"] == "error"
        assert len(errors(session)) == 1
    items = await ask(session)
    assert items, "completions go on whatever became of the index"
    assert "json.load" in str(items[0].insert_text)
