"""What a person gets at a pause, over LSP with the real model: the prompt warmed where the
cursor rests, and an automatic request that takes longer than the old give-up answered."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session, end_of

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

CONFIG = "shop/config.py"  # its last line: "    with open(path) as f:"


def _warm_runs(status: dict[str, Any]) -> int:
    return int(status.get("warmups", {}).get("runs", 0))


async def test_the_prompt_where_the_cursor_rests_is_warmed(
    session: Session, gemma_path: object
) -> None:
    # No index: its context would change the prompt between the warm-up and the request.
    await session.initialize({"index": {"enabled": False}})
    await session.wait_ready(index=False)
    text = (session.workspace / CONFIG).read_text(encoding="utf-8")
    uri = session.open(CONFIG)
    await session.wait_status(lambda s: _warm_runs(s) >= 1, "the warm-up on opening")
    # The cursor comes to rest on the first line: a place the warm-up on opening (the end
    # of the file) did not cover... then on the last line, where the person will type.
    before = await session.status()
    session.client.protocol.notify(
        "apprentice/cursor",
        {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
    )
    position = end_of(text)
    session.client.protocol.notify(
        "apprentice/cursor",
        {
            "textDocument": {"uri": uri},
            "position": {"line": position.line, "character": position.character},
        },
    )
    warmed = await session.wait_status(
        lambda s: _warm_runs(s) > _warm_runs(before), "a warm-up where the cursor rests"
    )
    evaluated = warmed["tokens"]["evaluated"]
    items = await session.inline(uri, position, invoked=False)
    assert items and "json" in str(items[0].insert_text)
    after = await session.status()
    # The request found its prompt evaluated: only a few tokens were new to the model.
    assert after["tokens"]["evaluated"] - evaluated < 16, (warmed, after)


async def test_a_malformed_cursor_notification_is_ignored(
    session: Session, gemma_path: object
) -> None:
    await session.initialize({"index": {"enabled": False}})
    await session.wait_ready(index=False)
    uri = session.open(CONFIG)
    for params in (None, [], {"textDocument": {"uri": uri}}, {"position": {"line": -1}}):
        session.client.protocol.notify("apprentice/cursor", params)
    session.client.protocol.notify(
        "apprentice/cursor",
        {"textDocument": {"uri": uri + "-never-opened"}, "position": {"line": 0, "character": 0}},
    )
    status = await session.status()  # the server still answers
    assert status["model"]["state"] == "ready"


async def test_an_automatic_request_slower_than_the_old_give_up_is_answered(
    session: Session, gemma_path: object
) -> None:
    # The answer is made late on purpose (the debounce), as a cold prompt makes it late on a
    # slow machine: the server used to give up on automatic requests after 700 ms.
    await session.initialize({"index": {"enabled": False}, "completion": {"debounceMs": 1500}})
    await session.wait_ready(index=False)
    text = (session.workspace / CONFIG).read_text(encoding="utf-8")
    uri = session.open(CONFIG)
    items = await session.inline(uri, end_of(text), invoked=False)
    assert items, "nothing was shown for a request answered after the old give-up"
    status = await session.status()
    assert status["latency"]["last_ms"] > 1500
    item = items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.strip()
    assert item.range == types.Range(start=end_of(text), end=end_of(text))
