"""Suggestions that start at the beginning of the cursor line.

An editor's auto-indent puts the cursor after whitespace that may be one level too deep
(``else:`` or ``return x`` belong a level up), and a cursor at the start of a line that
already holds code wants a new line above it, not text spliced into the existing one.
In both cases the model completes a virtual cursor at the line start, where it writes the
line's indentation itself; the suggestion then replaces the whitespace before the cursor
(an inline item whose range starts at the line start, which VS Code and Neovim accept).
The edited buffer is the same either way, so verification sees exactly what the user gets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lsp.core.pipeline_types import Cursor


@dataclass(frozen=True)
class LineStart:
    """The virtual cursor at the line start, and how to map its suggestion back."""

    cursor: Cursor  # what the model completes
    typed: str  # the whitespace before the real cursor on its line
    above: bool  # a new line above a line that holds code

    def mapped(self, text: str) -> tuple[str, int]:
        """(text to show, characters before the real cursor it replaces)."""
        if self.above:
            # The new line, then the line's own indentation back in place.
            return text + "\n" + self.typed, len(self.typed)
        first = text.split("\n", 1)[0]
        if first.startswith(self.typed):
            return text[len(self.typed) :], 0  # no dedent: an ordinary insertion
        return text, len(self.typed)


def line_start(cursor: Cursor) -> LineStart | None:
    """A virtual line-start cursor where the real one sits in leading whitespace, or None."""
    text, offset = cursor.text, cursor.offset
    start = text.rfind("\n", 0, offset) + 1
    typed = text[start:offset]
    if typed.strip():
        return None  # code before the cursor: complete where the user is
    end = text.find("\n", offset)
    rest = text[offset : len(text) if end < 0 else end]
    if rest.strip():
        # Code after the cursor (which is at, or in, the line's indentation): a new line
        # above it.
        virtual = text[:start] + "\n" + text[start:]
        return LineStart(replace(cursor, text=virtual, offset=start), typed, above=True)
    if not typed:
        return None  # an empty line at column 0 is already a line start
    virtual = text[:start] + text[offset:]
    return LineStart(replace(cursor, text=virtual, offset=start), typed, above=False)
