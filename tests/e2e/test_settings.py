"""Bad settings: one clear message naming them, defaults in their place, the rest kept."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

# Wrong types, unknown keys and out-of-range values, next to good values that must stay.
BAD = {
    "completion": {
        "debounceMs": "fast",  # wrong type
        "candidates": 0,  # out of range
        "maxTokens": 7,  # good
        "temperatureish": 1,  # unknown
    },
    "verify": {"syntax": "yes", "ruff": False},  # wrong type; good
    "index": {"enabled": 1},  # an int is not a bool
    "logLevel": "loud",  # not a level
    "colour": "blue",  # unknown section
}
BAD_KEYS = (
    "completion.debounceMs",
    "completion.candidates",
    "completion.temperatureish",
    "verify.syntax",
    "index.enabled",
    "logLevel",
    "colour",
)


def check_defaults(settings: dict[str, Any], session: Session) -> None:
    """Every bad key holds its default; every good key holds what was sent."""
    assert settings["completion"]["debounceMs"] == 25
    assert settings["completion"]["candidates"] == 2
    assert "temperatureish" not in settings["completion"]
    assert settings["verify"]["syntax"] is True
    assert settings["index"]["enabled"] is True
    assert settings["logLevel"] == "info"
    assert "colour" not in settings
    # The good ones, including the index location every test relies on.
    assert settings["completion"]["maxTokens"] == 7
    assert settings["verify"]["ruff"] is False
    assert settings["index"]["location"] == str(session.index_dir)
    assert settings["index"]["embeddings"] is False


async def test_bad_initialization_options(session: Session) -> None:
    await session.initialize(BAD)
    # The warning comes while the server handles initialize, before its reply; a status
    # round trip later, nothing else can be on its way for the settings.
    status = await session.status()

    messages = list(session.client.messages)
    assert len(messages) == 1, [m.message for m in messages]
    [message] = messages
    assert message.type == types.MessageType.Warning
    for key in BAD_KEYS:
        assert key in message.message, (key, message.message)
    for good in ("maxTokens", "verify.ruff", "index.location"):
        assert good not in message.message
    check_defaults(status["settings"], session)


async def test_bad_configuration_change(session: Session) -> None:
    await session.initialize()
    status = await session.status()
    assert session.client.messages == []
    assert status["settings"]["completion"]["candidates"] == 2

    # VS Code's shape: the whole section under its name.
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"apprentice": session.options(BAD)})
    )
    await session.wait_until(lambda: bool(session.client.messages), "the settings warning")
    status = await session.status()

    assert len(session.client.messages) == 1, [m.message for m in session.client.messages]
    [message] = session.client.messages
    assert message.type == types.MessageType.Warning
    for key in BAD_KEYS:
        assert key in message.message, (key, message.message)
    check_defaults(status["settings"], session)

    # Good settings afterwards: taken silently.
    good = session.options({"completion": {"candidates": 3}})
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"apprentice": good})
    )
    status = await session.wait_status(
        lambda s: s["settings"]["completion"]["candidates"] == 3, "the new settings", 60
    )
    assert status["settings"]["completion"]["debounceMs"] == 25
    assert len(session.client.messages) == 1
