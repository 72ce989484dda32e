"""The workspace index behind the server: ``$/progress`` while building, reindex, saves."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session, capabilities

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

NEW_FILE = "shop/shipping.py"
NEW_TEXT = (
    '"""Shipping costs by parcel weight."""\n'
    "\n"
    "\n"
    "def shipping_cost(weight_kg: float) -> float:\n"
    '    """Flat fee plus a rate per kilogram."""\n'
    "    return 4.5 + 1.2 * weight_kg\n"
    "\n"
    "\n"
    "class ParcelRate:\n"
    '    """A carrier\'s rate card."""\n'
    "\n"
    "    per_kg: float = 1.2\n"
)


async def test_indexing_reports_progress(session: Session) -> None:
    await session.initialize(caps=capabilities(progress=True))

    def ended() -> bool:
        return any(
            isinstance(report, types.WorkDoneProgressEnd)
            for reports in session.client.progress_reports.values()
            for report in reports
        )

    await session.wait_until(ended, "the end of the indexing progress")

    # pytest-lsp records a token when the server asks window/workDoneProgress/create.
    assert len(session.client.progress_reports) == 1
    [(token, reports)] = session.client.progress_reports.items()
    assert token
    begin, *middle, end = reports
    assert isinstance(begin, types.WorkDoneProgressBegin)
    assert "index" in begin.title.lower()
    assert isinstance(end, types.WorkDoneProgressEnd)
    assert middle, "no progress report between begin and end"
    assert all(isinstance(report, types.WorkDoneProgressReport) for report in middle)
    percentages = [report.percentage for report in middle]
    assert all(isinstance(p, int) and 0 <= p <= 100 for p in percentages), percentages
    assert percentages == sorted(percentages)
    assert percentages[-1] == 100

    status = await session.wait_status(lambda s: s["index"]["state"] == "ready", "the index")
    assert status["index"]["files"] >= 4


async def test_no_progress_for_clients_without_it(session: Session) -> None:
    await session.initialize(caps=capabilities(progress=False))
    await session.wait_status(lambda s: s["index"]["state"] == "ready", "the index")
    assert session.client.progress_reports == {}


def counts(status: dict[str, Any]) -> tuple[int, int, int]:
    index = status["index"]
    return index["files"], index["chunks"], index["symbols"]


async def test_reindex_answers_the_index_status(session: Session) -> None:
    await session.initialize()
    before = await session.wait_status(lambda s: s["index"]["state"] == "ready", "the index")

    answer = await session.command("apprentice.reindex")

    assert isinstance(answer, dict), answer
    assert answer["state"] == "ready"
    assert (answer["files"], answer["chunks"], answer["symbols"]) == counts(before)
    # A file written behind the server's back is found by the next reindex.
    (session.workspace / NEW_FILE).write_text(NEW_TEXT, encoding="utf-8")
    again = await session.command("apprentice.reindex")
    assert again["files"] == answer["files"] + 1
    assert again["symbols"] > answer["symbols"]


async def test_saved_file_is_indexed(session: Session) -> None:
    await session.initialize()
    before = counts(await session.wait_status(lambda s: s["index"]["state"] == "ready", "index"))

    uri = session.open(NEW_FILE, NEW_TEXT)
    session.client.text_document_did_save(
        types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri), text=NEW_TEXT
        )
    )

    status = await session.wait_status(
        lambda s: counts(s) != before, "the saved file in the index", timeout=60
    )
    files, chunks, symbols = counts(status)
    assert files == before[0] + 1
    assert chunks > before[1]
    assert symbols >= before[2] + 2  # shipping_cost and ParcelRate at least
