"""Completions from the real model over LSP: inline and fallback items, cancellation, staleness."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled

from tests.e2e.conftest import Session, apply_edits, end_of, items_of

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

CONFIG = "shop/config.py"  # its last line: "    with open(path) as f:"


def open_config(session: Session) -> tuple[str, str, types.Position]:
    """Open the sample's config module; its URI, text and the position after its last line."""
    text = (session.workspace / CONFIG).read_text(encoding="utf-8")
    assert text.endswith("    with open(path) as f:\n")
    return session.open(CONFIG), text, end_of(text)


async def test_inline_completion_is_verified_model_text(
    session: Session, gemma_path: object
) -> None:
    await session.initialize()
    await session.wait_ready()
    uri, text, position = open_config(session)

    items = await session.inline(uri, position)

    assert len(items) == 1, items
    item = items[0]
    assert isinstance(item.insert_text, str)
    assert "json.load" in item.insert_text
    assert item.range == types.Range(start=position, end=position)
    completed = apply_edits(text, [types.TextEdit(range=item.range, new_text=item.insert_text)])
    compile(completed, CONFIG, "exec")  # what the server verified is what the editor gets

    status = await session.status()
    assert status["requests"]["shown"] == 1
    assert status["latency"]["count"] == 1
    assert status["tokens"]["prompt"] > 0


async def test_completion_item_fallback(session: Session, gemma_path: object) -> None:
    await session.initialize()
    await session.wait_ready()
    uri, text, position = open_config(session)

    answer = await session.client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )

    items = answer.items if isinstance(answer, types.CompletionList) else list(answer or [])
    assert len(items) == 1, items
    item = items[0]
    edit = item.text_edit
    assert isinstance(edit, types.TextEdit)
    assert edit.range.start == position
    assert edit.range.end.line == position.line
    assert "json.load" in edit.new_text
    compile(apply_edits(text, [edit]), CONFIG, "exec")
    # Sorts after any item a language server would offer (labels start with letters or _).
    assert item.sort_text is not None
    assert item.sort_text > "zzzzzzzz"
    assert item.sort_text > item.label
    ai_marks = [item.detail or ""]
    if item.label_details is not None:
        ai_marks += [item.label_details.description or "", item.label_details.detail or ""]
    assert any("AI" in mark for mark in ai_marks), item


INVOICE = "shop/invoice.py"
# After this signature the model writes a long body (hundreds of tokens, seconds of work).
INVOICE_TEXT = (
    '"""Printable invoices: header, one line per item, taxes, totals and footer."""\n'
    "\n"
    "from shop.cart import Cart\n"
    "\n"
    "\n"
    "def render_invoice(cart: Cart, customer: str, address: str, tax_rate: float) -> str:\n"
)


async def test_cancelled_request_frees_the_model(session: Session, gemma_path: object) -> None:
    # No time budget and long multi-line generations: the request is still running when
    # the cancellation arrives.
    await session.initialize({"completion": {"maxTokensMultiline": 256, "timeBudgetMs": 0}})
    await session.wait_ready()
    invoice = session.open(INVOICE, INVOICE_TEXT)
    config, _, position = open_config(session)
    # A first request waits for the prompt-cache warm-ups of both files: afterwards the
    # model is idle, so the cancelled request below is generating when it is cancelled.
    assert await session.inline(config, position)

    params = session.inline_params(invoice, end_of(INVOICE_TEXT))
    # pygls's client does not send $/cancelRequest when a request's future is cancelled,
    # so the request goes out with a known id and the cancellation is sent by hand.
    pending = asyncio.create_task(
        session.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="cancel-me"
        )
    )
    await session.wait_status(lambda s: s["requests"]["total"] >= 2, "the request to start", 60)
    assert not pending.done(), "the request ended before it could be cancelled"
    session.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))

    with pytest.raises(JsonRpcException) as caught:
        await pending
    assert isinstance(caught.value, JsonRpcRequestCancelled)
    assert caught.value.code == types.LSPErrorCodes.RequestCancelled == -32800

    # Closing the file drops its type-ahead cache: the next answer must come from the model.
    session.client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=config))
    )
    config, _, position = open_config(session)
    items = await session.inline(config, position)
    assert items, "after a cancellation the model serves the next request"
    assert "json.load" in str(items[0].insert_text)

    requests = (await session.status())["requests"]
    assert requests["cancelled"] == 1
    assert requests["total"] == 3
    assert requests["shown"] == 2
    assert requests["cache_hits"] == 0


async def test_reply_for_an_outdated_version_is_empty(session: Session, gemma_path: object) -> None:
    await session.initialize()
    await session.wait_ready()
    uri, _, position = open_config(session)

    pending = asyncio.create_task(
        session.client.text_document_inline_completion_async(session.inline_params(uri, position))
    )
    await session.wait_status(lambda s: s["requests"]["total"] >= 1, "the request to start", 60)
    assert not pending.done(), "the request ended before the edit"
    # The user types elsewhere in the file while the model works.
    session.insert(uri, types.Position(line=0, character=0), "# edited\n")

    assert items_of(await pending) == []

    requests = (await session.status())["requests"]
    assert requests["stale"] + requests["superseded"] == 1
    assert requests["shown"] == 0


async def test_newer_request_supersedes_older(session: Session, gemma_path: object) -> None:
    await session.initialize()
    await session.wait_ready()
    uri, _, position = open_config(session)

    # As typed: an automatic (debounced) request, then an explicit one before it is done.
    older = asyncio.create_task(session.inline(uri, position, invoked=False))
    await session.wait_status(lambda s: s["requests"]["total"] >= 1, "the first request", 60)
    newer = await session.inline(uri, position)

    assert await older == []
    assert newer, "the newer request is answered"
    assert "json.load" in str(newer[0].insert_text)
    requests = (await session.status())["requests"]
    assert requests["superseded"] == 1
    assert requests["shown"] == 1


async def test_typing_along_a_suggestion_replays_it(session: Session, gemma_path: object) -> None:
    await session.initialize()
    await session.wait_ready()
    uri, text, position = open_config(session)
    [item] = await session.inline(uri, position)
    suggestion = str(item.insert_text)
    assert len(suggestion.strip()) > 4

    # The user types the suggestion's first characters (incremental didChange).
    typed = suggestion[: len(suggestion) - len(suggestion.lstrip()) + 3]
    session.insert(uri, position, typed)
    text = apply_edits(text, [types.TextEdit(types.Range(position, position), typed)])
    now = end_of(text)

    items = await session.inline(uri, now)

    assert [i.insert_text for i in items] == [suggestion[len(typed) :]]
    assert items[0].range == types.Range(start=now, end=now)
    requests = (await session.status())["requests"]
    assert requests["cache_hits"] == 1
    assert requests["shown"] == 2
