"""The one place that turns Apprentice's plain data into ``lsprotocol`` types and back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeGuard

from lsprotocol import types
from pygls.workspace import TextDocument

from indexer.languages import language_for
from lsp.core.pipeline import Cursor
from lsp.server import uris

logger = logging.getLogger(__name__)

# Sorts after every other completion item: an AI guess never outranks the language server.
AI_SORT_TEXT = "\uffff"
AI_DETAIL = "Apprentice (AI, verified)"


class PositionError(ValueError):
    """A position outside the document."""


def document_path(doc: TextDocument) -> Path | None:
    """The file system path of a document, or None for an unsaved/virtual one."""
    return uris.path_of(doc.uri)


# Editors' language ids that differ from Apprentice's (which follow the grammars).
_CLIENT_LANGUAGE_IDS = {"typescriptreact": "tsx", "javascriptreact": "javascript"}


def document_language(doc: TextDocument) -> str:
    """The language id: the client's when it sent one, else from the file name."""
    if doc.language_id:
        language = doc.language_id.lower()
        return _CLIENT_LANGUAGE_IDS.get(language, language)
    return language_for(uris.document_key(doc.uri))


def offset_of(doc: TextDocument, position: types.Position) -> int:
    """The code point offset of a client position, in the negotiated encoding."""
    lines = doc.lines
    if position.line < 0 or position.character < 0 or position.line > len(lines):
        raise PositionError(f"line {position.line} is outside the document")
    if position.line == len(lines) and position.character > 0:
        raise PositionError(f"line {position.line} is outside the document")
    return doc.offset_at_position(position)


def cursor_at(doc: TextDocument, position: types.Position, root: Path | None) -> Cursor:
    """The plain-data cursor the pipeline takes."""
    path = document_path(doc)
    rel = uris.document_key(doc.uri)
    if path is not None:
        inside = uris.relative_path(doc.uri, root) if root is not None else None
        rel = inside if inside is not None else (path.as_posix() if root else path.name)
    return Cursor(
        path=rel,
        language=document_language(doc),
        text=doc.source,
        offset=offset_of(doc, position),
        repo_name=root.name if root is not None else "",
        abs_path=path,
    )


def _range_before(position: types.Position, replaced: int) -> types.Range:
    """From ``replaced`` characters before the cursor (whitespace: one unit each) to it."""
    start = types.Position(position.line, max(0, position.character - replaced))
    return types.Range(start=start, end=position)


def inline_items(
    text: str, position: types.Position, replaced: int = 0
) -> types.InlineCompletionList:
    """One inline suggestion: inserted at the cursor, or replacing the ``replaced``
    whitespace characters before it (a dedent after auto-indent, a line above)."""
    item = types.InlineCompletionItem(insert_text=text, range=_range_before(position, replaced))
    return types.InlineCompletionList(items=[item])


def completion_items(
    text: str, position: types.Position, label_prefix: str, replaced: int = 0
) -> types.CompletionList:
    """The suggestion as one completion item for clients without inline completion.

    The label is what the user typed on the line plus the suggestion's first line, so
    clients that filter by the word at the cursor keep the item; the edit inserts at the
    cursor only.
    """
    first_line = text.split("\n", 1)[0]
    label = (label_prefix + first_line).strip() or text.strip()
    item = types.CompletionItem(
        label=label,
        kind=types.CompletionItemKind.Snippet,
        detail=AI_DETAIL,
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```\n{text}\n```"
        ),
        sort_text=AI_SORT_TEXT,
        filter_text=label_prefix + first_line,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=_range_before(position, replaced), new_text=text),
        label_details=types.CompletionItemLabelDetails(description="AI"),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def word_before(doc: TextDocument, offset: int) -> str:
    """The identifier characters just before ``offset`` (what clients filter items by)."""
    text = doc.source
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return text[start:offset]


def range_of(doc: TextDocument, start: int, end: int) -> types.Range:
    """A client range for code point offsets."""
    return types.Range(
        start=doc.client_position_at_offset(start), end=doc.client_position_at_offset(end)
    )


def cursor_notification(params: Any) -> tuple[str, types.Position] | None:
    """(uri, position) of an ``apprentice/cursor`` notification; None when malformed."""
    data = json_object(plain(params))
    document, position = json_object(data.get("textDocument")), json_object(data.get("position"))
    uri, line, character = document.get("uri"), position.get("line"), position.get("character")
    if not isinstance(uri, str) or not _position_number(line) or not _position_number(character):
        logger.debug("ignoring a malformed %s notification", "apprentice/cursor")
        return None
    return uri, types.Position(line=line, character=character)


def _position_number(value: object) -> TypeGuard[int]:
    """A line or character an LSP position can hold (a uinteger)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def plain(value: Any) -> Any:
    """A custom message's params as JSON data: pygls hands them over as named tuples."""
    as_dict = getattr(value, "_asdict", None)
    if isinstance(value, tuple) and callable(as_dict):
        return {key: plain(item) for key, item in as_dict().items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def json_object(value: Any) -> dict[str, Any]:
    """A JSON-able dict from an LSP ``data`` field (anything else becomes empty)."""
    return value if isinstance(value, dict) else {}
