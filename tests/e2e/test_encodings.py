"""Position encodings: the server negotiates the client's and reads columns in its units."""

from __future__ import annotations

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session, apply_edits, capabilities, units

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

CONFIG = "shop/config.py"
# The cursor sits mid-line after text whose length differs in every encoding (é, ö: two
# UTF-8 bytes; 🎉: four UTF-8 bytes, two UTF-16 units). A server counting columns in the
# wrong unit puts the cursor inside the comment, and "load(f)" would not be the answer.
BEFORE = '    greeting = "héllo wörld 🎉"; f = open(path); return json.'
AFTER = "  # fertig ✅"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
async def test_columns_in_the_negotiated_encoding(
    session: Session, gemma_path: object, encoding: str
) -> None:
    path = session.workspace / CONFIG
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    assert lines[-1] == "    with open(path) as f:"
    text = "\n".join([*lines[:-1], BEFORE + AFTER]) + "\n"
    position = types.Position(line=len(lines) - 1, character=units(BEFORE, encoding))
    assert units(BEFORE, encoding) != len(BEFORE)  # the test means something

    result = await session.initialize(caps=capabilities(encodings=[encoding]))
    assert result.capabilities.position_encoding == encoding
    await session.wait_ready()
    uri = session.open(CONFIG, text)

    items = await session.inline(uri, position)

    assert len(items) == 1, items
    item = items[0]
    assert item.range == types.Range(start=position, end=position)
    assert isinstance(item.insert_text, str)
    assert item.insert_text.startswith("load(")
    completed = apply_edits(text, [types.TextEdit(item.range, item.insert_text)], encoding)
    assert BEFORE + item.insert_text + AFTER in completed
    compile(completed, CONFIG, "exec")


async def test_first_supported_client_preference_wins(session: Session) -> None:
    result = await session.initialize(caps=capabilities(encodings=["utf-8", "utf-16"]))
    assert result.capabilities.position_encoding == "utf-8"
