"""A branch switch under a running server: the server asks the client to watch files, the
client reports the changes, and no chunk of a deleted file reaches a prompt afterwards."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from tests.e2e.test_protocol import RawClient, alive
from tests.test_watching import MAIN, two_branches

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

CONTEXT_LINE = re.compile(r"context for main\.py: (\[.*\])")


async def wait_for(client: RawClient, what: str, check: object) -> dict[str, object]:
    for attempt in range(1200):
        status = await alive(client, f"{what}-{attempt}")
        if check(status):  # type: ignore[operator]
            return status
        await asyncio.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


async def answer_registrations(client: RawClient) -> list[dict[str, object]]:
    """Reply to the server's client/registerCapability requests; return their registrations."""
    found: list[dict[str, object]] = []
    for message in client.received:
        if message.get("method") == "client/registerCapability" and "id" in message:
            await client.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            found.extend(message["params"]["registrations"])
    return found


async def complete(client: RawClient, msg_id: str, uri: str, character: int) -> None:
    await client.call(
        msg_id,
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 2, "character": character},
            "context": {"triggerKind": 1},
        },
    )


async def test_a_deleted_file_never_reaches_the_context(tmp_path: Path, gemma_path: object) -> None:
    root = two_branches(tmp_path / "repo")
    log = tmp_path / "server.log"
    client = await RawClient.start(log)
    try:
        await client.call(
            "init",
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {
                    "workspace": {"didChangeWatchedFiles": {"dynamicRegistration": True}}
                },
                "initializationOptions": {
                    "index": {"location": str(tmp_path / "index"), "embeddings": False},
                    "logLevel": "debug",
                    "completion": {"timeBudgetMs": 0, "candidates": 1, "maxTokens": 4},
                },
            },
        )
        await client.notify("initialized", {})
        await wait_for(
            client,
            "ready",
            lambda s: s["model"]["state"] == "ready" and s["index"]["state"] == "ready",
        )
        registrations = await answer_registrations(client)
        assert [r["method"] for r in registrations] == ["workspace/didChangeWatchedFiles"]

        uri = (root / "main.py").as_uri()
        await client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": MAIN}},
        )
        line = MAIN.split("\n")[2]
        await complete(client, "before", uri, len(line))
        before = CONTEXT_LINE.findall(log.read_text(encoding="utf-8"))
        assert before and "billing.py" in before[-1], before

        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(root), "checkout", "-q", "slim"
        )
        assert await proc.wait() == 0
        assert not (root / "billing.py").exists()
        await client.notify(
            "workspace/didChangeWatchedFiles",
            {"changes": [{"uri": (root / "billing.py").as_uri(), "type": 3}]},
        )
        await wait_for(client, "rescanned", lambda s: s["index"].get("files") == 1)
        # Reopened: the type-ahead cache of the first answer is gone, the model is asked again.
        await client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        await client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 2, "text": MAIN}},
        )
        await complete(client, "after", uri, len(line))
        after = CONTEXT_LINE.findall(log.read_text(encoding="utf-8"))
        assert len(after) > len(before), "the second completion looked up context again"
        assert "billing.py" not in after[-1], after[-1]
    finally:
        await client.close()
