"""Property test of document sync: random edits through the server's didChange handling always
leave the server's text equal to a reference model's, and an edit that does not fit marks the
document out of sync (no completions from it) until the editor sends the whole text.

The reference works on encoded bytes (UTF-16/UTF-8/UTF-32 code units, decoded strictly), the
server on code points: two different routes to the same answer.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from lsp.server.language_server import ApprenticeServer, build_server

URI = "file:///work/project/sync%20test.py"
PIECES = ["a", "z", " ", "\t", "\n", "\r\n", "\r", "é", "中", "文", "😀", "👍🏽", "𝄞", "\u200b"]
_CODECS = {"utf-16": ("utf-16-le", 2), "utf-8": ("utf-8", 1), "utf-32": ("utf-32-le", 4)}


class Invalid(Exception):
    """The reference model refuses the edit."""


def ref_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line's content, scanning character by character."""
    spans, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\r" and text[i + 1 : i + 2] == "\n":
            spans.append((start, i))
            i += 2
            start = i
        elif text[i] in "\r\n":
            spans.append((start, i))
            i += 1
            start = i
        else:
            i += 1
    spans.append((start, len(text)))
    return spans


def ref_offset(text: str, line: int, character: int, encoding: str) -> int:
    spans = ref_lines(text)
    if line >= len(spans):
        raise Invalid("line past the end")
    start, end = spans[line]
    codec, width = _CODECS[encoding]
    data = text[start:end].encode(codec, "surrogatepass")
    cut = min(character * width, len(data))
    try:
        prefix = data[:cut].decode(codec)  # strict: a cut inside a character fails
    except UnicodeDecodeError as error:
        raise Invalid("inside a character") from error
    return start + len(prefix)


def ref_apply(text: str, change: dict[str, Any], encoding: str) -> str:
    if "range" not in change:
        return str(change["text"])
    (sl, sc), (el, ec) = change["range"]
    start = ref_offset(text, sl, sc, encoding)
    end = ref_offset(text, el, ec, encoding)
    if start > end:
        raise Invalid("backwards range")
    return text[:start] + change["text"] + text[end:]


@dataclass
class Harness:
    """The real server's protocol, initialized, with one open document."""

    server: ApprenticeServer

    @classmethod
    def start(cls, encoding: str, text: str) -> Harness:
        server = build_server()
        protocol = server.protocol
        capabilities = types.ClientCapabilities(
            general=types.GeneralClientCapabilities(position_encodings=[encoding])
        )
        init = protocol.lsp_initialize(
            types.InitializeParams(capabilities=capabilities, root_uri="file:///work/project")
        )
        drive(init)
        item = types.TextDocumentItem(uri=URI, language_id="python", version=1, text=text)
        drive(protocol.lsp_text_document__did_open(types.DidOpenTextDocumentParams(item)))
        return cls(server)

    def change(self, version: int, changes: list[dict[str, Any]]) -> None:
        events: list[types.TextDocumentContentChangeEvent] = []
        for change in changes:
            if "range" in change:
                (sl, sc), (el, ec) = change["range"]
                rng = types.Range(types.Position(sl, sc), types.Position(el, ec))
                events.append(types.TextDocumentContentChangePartial(rng, change["text"]))
            else:
                events.append(types.TextDocumentContentChangeWholeDocument(change["text"]))
        params = types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(version=version, uri=URI), events
        )
        drive(self.server.protocol.lsp_text_document__did_change(params))

    @property
    def text(self) -> str:
        doc = self.server.workspace.text_documents.get(URI.replace("%20", " "))
        assert doc is not None
        return doc.source

    @property
    def usable(self) -> bool:
        return self.server.document(URI) is not None and not self.server.refused(URI)


def drive(generator: Generator[Any, Any, Any] | None) -> None:
    """Run one of pygls's built-in handlers (generators yielding user handlers) to the end."""
    if generator is None:
        return
    try:
        step = next(generator)
        while True:
            step = generator.send(None)
    except StopIteration:
        return
    del step


texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@st.composite
def change_for(draw: st.DrawFn, text: str, encoding: str) -> dict[str, Any]:
    """A change aimed at ``text``: mostly sensible ranges, some past the end or mid-character."""
    if draw(st.integers(0, 19)) == 0:
        return {"text": draw(texts)}
    lines = ref_lines(text)
    _, width = _CODECS[encoding]
    widest = max(len(text[s:e].encode(_CODECS[encoding][0], "surrogatepass")) for s, e in lines)
    units = widest // width
    line = st.integers(0, len(lines))  # len(lines): one past the end
    character = st.integers(0, units + 2)
    start = (draw(line), draw(character))
    end = start if draw(st.booleans()) else (draw(line), draw(character))
    if draw(st.integers(0, 9)) > 0 and end < start:
        start, end = end, start  # mostly forward ranges; some backwards ones stay
    return {"range": (start, end), "text": draw(texts)}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
@settings(  # examples: the profile's, 100 (make check: fewer, tests/conftest.py)
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), initial=texts)
def test_server_text_follows_the_reference(
    data: st.DataObject, initial: str, encoding: str
) -> None:
    harness = Harness.start(encoding, initial)
    reference, version = initial, 1
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        step = data.draw(st.integers(-2, 4), label="version step")  # gaps, repeats, going back
        new_version = version + step
        changes = [
            data.draw(change_for(reference, encoding), label="change")
            for _ in range(data.draw(st.integers(1, 3), label="changes"))
        ]
        expected, valid = reference, True
        whole = any("range" not in c for c in changes)
        if new_version <= version and not whole:
            valid = False
        else:
            for change in changes:
                try:
                    expected = ref_apply(expected, change, encoding)
                except Invalid:
                    valid = False
                    break
        harness.change(new_version, changes)
        if valid:
            assert harness.text == expected
            reference, version = expected, new_version
            if not harness.usable:
                # Out of sync from an earlier edit; only a whole text brings it back.
                assert not whole
            continue
        assert not harness.usable, "an edit that does not fit must mark the document"
        # The editor sends the whole text again: in sync, and served.
        version = max(version, new_version) + 1
        harness.change(version, [{"text": reference}])
        assert harness.usable and harness.text == reference


def test_known_traps() -> None:
    text = "a😀b\r\nc中\n"
    harness = Harness.start("utf-16", text)
    harness.change(2, [{"range": ((0, 2), (0, 2)), "text": "X"}])  # inside the surrogate pair
    assert not harness.usable and harness.text == text
    harness.change(3, [{"text": text}])
    assert harness.usable
    harness.change(4, [{"range": ((0, 99), (0, 99)), "text": "!"}])  # past the line: its end
    assert harness.usable and harness.text == "a😀b!\r\nc中\n"
    harness.change(5, [{"range": ((5, 0), (5, 0)), "text": "?"}])  # past the last line
    assert not harness.usable
    harness.change(6, [{"text": "fresh\n"}])
    harness.change(6, [{"range": ((0, 0), (0, 0)), "text": "old "}])  # not a newer version
    assert not harness.usable and harness.text == "fresh\n"
    harness.change(8, [{"text": "again"}])
    harness.change(11, [{"range": ((0, 5), (0, 5)), "text": "!"}])  # a gap forward is fine
    assert harness.usable and harness.text == "again!"


async def test_an_out_of_sync_document_is_saved_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving a document the server lost track of indexes the file on disk, not the stale copy."""
    root = tmp_path / "project"
    root.mkdir()
    path = root / "saved.py"
    path.write_text("def on_disk():\n    return 1\n")
    server = build_server()
    drive(
        server.protocol.lsp_initialize(
            types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=root.as_uri())
        )
    )
    server.root = root
    uri = path.as_uri()
    item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text="stale = 1\n")
    drive(server.protocol.lsp_text_document__did_open(types.DidOpenTextDocumentParams(item)))
    bad = types.Range(types.Position(9, 0), types.Position(9, 0))
    drive(
        server.protocol.lsp_text_document__did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=2, uri=uri),
                [types.TextDocumentContentChangePartial(bad, "x")],
            )
        )
    )
    saved: list[tuple[str, str | None]] = []

    class Index:
        async def update_file(self, rel: str, text: str | None) -> None:
            saved.append((rel, text))

    server.index = Index()  # type: ignore[assignment]
    handler = server.protocol.fm.features[types.TEXT_DOCUMENT_DID_SAVE]
    await handler(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=uri)))
    assert saved == [("saved.py", None)]  # None: the index reads the file from disk
