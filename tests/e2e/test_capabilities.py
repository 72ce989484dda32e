"""What ``apprentice serve`` advertises in its ``initialize`` reply."""

from __future__ import annotations

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]


async def test_capabilities_advertised(session: Session) -> None:
    result = await session.initialize()
    caps = result.capabilities

    assert isinstance(caps.inline_completion_provider, types.InlineCompletionOptions)
    assert isinstance(caps.completion_provider, types.CompletionOptions)

    actions = caps.code_action_provider
    assert isinstance(actions, types.CodeActionOptions)
    assert actions.resolve_provider is True
    assert types.CodeActionKind.QuickFix in (actions.code_action_kinds or [])

    assert caps.execute_command_provider is not None
    assert {"apprentice.reindex", "apprentice.status"} <= set(
        caps.execute_command_provider.commands
    )

    sync = caps.text_document_sync
    assert isinstance(sync, types.TextDocumentSyncOptions)
    assert sync.open_close is True
    assert sync.change == types.TextDocumentSyncKind.Incremental
    assert sync.save not in (None, False)

    assert result.server_info is not None
    assert result.server_info.name == "apprentice"
