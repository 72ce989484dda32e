"""Files whose path has a space or a non-ASCII character are served like any other.

Editors percent-encode such URIs (``my%20dir/caf%C3%A9.py``); pygls stores documents under
the decoded URI. The model here is a stub OpenAI-compatible server on 127.0.0.1, so these
tests exercise the language server's document handling, not a real model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session
from tests.openai_stub import CompletionStub, running_stub

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

ODD = "my dir/café config.py"
TEXT = (
    '"""Loading settings."""\n'
    "\n"
    "import json\n"
    "import os\n"
    "\n"
    "\n"
    "def load(path: str) -> dict:\n"
    "    with open(path) as f:\n"
    "        return "
)
IMPORT_OS_LINE = 3


@pytest.fixture
def stub() -> Iterator[CompletionStub]:
    with running_stub("json.load(f)\n") as server:
        yield server


async def start(session: Session, stub: CompletionStub) -> str:
    """Write the odd file, start the server on the stub model, open the file; its URI."""
    path = session.workspace / ODD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEXT, encoding="utf-8")
    await session.initialize({"model": {"remoteUrl": stub.url}})
    await session.wait_ready()
    uri = session.open(ODD)
    assert "%20" in uri and "%C3%A9" in uri  # what editors send
    return uri


async def test_completion_in_a_file_with_a_space_and_an_accent(
    session: Session, stub: CompletionStub
) -> None:
    uri = await start(session, stub)
    end = types.Position(line=8, character=len("        return "))
    items = await session.inline(uri, end)
    assert [item.insert_text for item in items] == ["json.load(f)"]
    assert "café config.py" in stub.prompts[-1]  # the decoded path names the file


async def test_code_actions_in_a_file_with_a_space_and_an_accent(
    session: Session, stub: CompletionStub
) -> None:
    uri = await start(session, stub)
    line = types.Range(
        start=types.Position(line=IMPORT_OS_LINE, character=0),
        end=types.Position(line=IMPORT_OS_LINE, character=len("import os")),
    )
    actions = await session.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=line,
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    titles = [a.title for a in actions or [] if isinstance(a, types.CodeAction)]
    assert any("F401" in title or "import" in title.lower() for title in titles), titles


async def test_saving_keeps_the_file_in_the_index(session: Session, stub: CompletionStub) -> None:
    uri = await start(session, stub)
    before = (await session.status())["index"]["files"]
    # didSave without text (the common registration): the server must not read it as deleted.
    session.client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    # A second save of a new file queues behind the first on the index thread: once it is
    # counted, the first save has been handled too.
    marker = session.workspace / "shop" / "marker.py"
    marker.write_text("MARK = 1\n", encoding="utf-8")
    session.client.text_document_did_save(
        types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=marker.as_uri()), text="MARK = 1\n"
        )
    )
    status = await session.wait_status(
        lambda s: s["index"]["files"] != before, "the saves to reach the index", timeout=60
    )
    assert status["index"]["files"] == before + 1
