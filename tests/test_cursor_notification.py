"""``apprentice/cursor``: the params a client sends, as pygls hands them to the handler."""

from __future__ import annotations

from typing import Any

import pytest

from lsp.server import convert
from lsp.server.language_server import CURSOR, build_server


def decoded(params: Any) -> Any:
    """The params as the server's protocol decodes them (named tuples for a custom method)."""
    message = {"jsonrpc": "2.0", "method": CURSOR, "params": params}
    return build_server().protocol.structure_message(message).params


def test_a_well_formed_notification_gives_the_uri_and_position() -> None:
    params = {"textDocument": {"uri": "file:///w/a.py"}, "position": {"line": 3, "character": 8}}
    where = convert.cursor_notification(decoded(params))
    assert where is not None
    uri, position = where
    assert uri == "file:///w/a.py" and (position.line, position.character) == (3, 8)


@pytest.mark.parametrize(
    "params",
    [
        None,
        [],
        "file:///w/a.py",
        {"textDocument": {"uri": "file:///w/a.py"}},
        {"textDocument": {"uri": 7}, "position": {"line": 0, "character": 0}},
        {"textDocument": {"uri": "file:///w/a.py"}, "position": {"line": -1, "character": 0}},
        {"textDocument": {"uri": "file:///w/a.py"}, "position": {"line": True, "character": 0}},
        {"textDocument": {"uri": "file:///w/a.py"}, "position": {"line": 2**40, "character": 0}},
    ],
)
def test_a_malformed_notification_is_ignored(params: Any) -> None:
    assert convert.cursor_notification(decoded(params)) is None
