"""Incremental document sync, checked: an edit that cannot be applied exactly marks the
document out of sync instead of silently producing text the editor does not have.

pygls applies an edit whatever its range says: a character offset inside a UTF-16 surrogate
pair rounds to a neighbour, one between ``\\r`` and ``\\n`` splits the line break, a
character past the end of the last line drops that line's last character, a line past the
end appends, and versions are never looked at. Each of these leaves the server's copy
different from the editor's, and every suggestion after that is computed from text the user
does not see. Here:

- a character past the end of its line means the end of the line (the LSP rule);
- a line past the end of the document, a start after the end, an offset inside a character
  (a surrogate pair in UTF-16, a multi-byte sequence in UTF-8) or inside a ``\\r\\n``, and a
  version not newer than the last one are *invalid*: the change is not applied and the
  document is marked out of sync until the editor sends its whole text again (a full
  change, or a close and reopen). No completion or code action is computed meanwhile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SyncError(ValueError):
    """An edit that cannot be applied to the text as the server has it."""


@dataclass(frozen=True)
class Edit:
    """One content change: ``text`` replaces the range (None: the whole document)."""

    text: str
    start: tuple[int, int] | None = None  # (line, character in the encoding's code units)
    end: tuple[int, int] | None = None


def _units(char: str, encoding: str) -> int:
    if encoding == "utf-16":
        return 2 if ord(char) > 0xFFFF else 1
    if encoding == "utf-8":
        return len(char.encode("utf-8", "surrogatepass"))
    return 1


def _line_starts(text: str) -> list[tuple[int, int]]:
    """(start, end without the line break) of every line; a final break opens an empty line."""
    spans = []
    start = 0
    for match in _LINE_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def offset_of(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """The code point offset of an LSP position; SyncError when it names no place in ``text``."""
    lines = _line_starts(text)
    if line < 0 or character < 0:
        raise SyncError(f"negative position ({line}, {character})")
    if line >= len(lines):
        raise SyncError(f"line {line} is past the end of the document ({len(lines)} lines)")
    start, end = lines[line]
    units = 0
    offset = start
    while offset < end and units < character:
        units += _units(text[offset], encoding)
        offset += 1
    if units > character:
        raise SyncError(f"character {character} of line {line} is inside a character")
    return offset  # past the end of the line: the end of the line


def apply_edit(text: str, edit: Edit, encoding: str = "utf-16") -> str:
    """``text`` with one change applied; SyncError when the change does not fit it."""
    if edit.start is None or edit.end is None:
        return edit.text
    start = offset_of(text, *edit.start, encoding)
    end = offset_of(text, *edit.end, encoding)
    if start > end:
        raise SyncError(f"the range starts after it ends ({edit.start} > {edit.end})")
    return text[:start] + edit.text + text[end:]


@dataclass
class SyncOutcome:
    """What a didChange did to a document: its new text, and the problem if it went wrong."""

    text: str
    problem: str | None = None


def apply_changes(
    text: str,
    version: int | None,
    new_version: int | None,
    edits: list[Edit],
    encoding: str = "utf-16",
) -> SyncOutcome:
    """Apply one didChange's edits in order; the first invalid one stops and reports.

    A whole-document change is always applied (it is how a document gets back in sync).
    """
    if (
        version is not None
        and new_version is not None
        and new_version <= version
        and not any(edit.start is None for edit in edits)
    ):
        return SyncOutcome(text, f"version {new_version} is not newer than {version}")
    for edit in edits:
        try:
            text = apply_edit(text, edit, encoding)
        except SyncError as error:
            return SyncOutcome(text, str(error))
    return SyncOutcome(text)
