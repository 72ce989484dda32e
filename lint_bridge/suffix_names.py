"""What the code below the cursor asks of the missing line (Python, read with ``ast``).

A model without fill-in-the-middle never sees the code after the cursor. When that code
reads ``ret`` and nothing assigns it, the missing line most likely does; when the buffer
does not parse only because something is missing at the cursor (a block body below with
no opener above it), the missing line most likely repairs it. The pipeline prefers a
candidate that does what is asked. Nothing is executed.
"""

from __future__ import annotations

import ast
import builtins
import logging

logger = logging.getLogger(__name__)

_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__builtins__"}


def unbound_below(text: str, offset: int) -> frozenset[str]:
    """Names read after ``offset`` that the buffer binds nowhere (builtins aside).

    The cursor sits at the start of a line or in its leading whitespace; a ``pass`` put
    there lets a buffer with an empty block parse. Empty when the buffer still does not
    parse, or when code precedes the cursor on its line.
    """
    line_start = text.rfind("\n", 0, offset) + 1
    if text[line_start:offset].strip():
        return frozenset()
    tree = None
    for indent in _indents(text, line_start, offset):
        try:
            tree = ast.parse(text[:line_start] + indent + "pass" + text[offset:])
            break
        except (SyntaxError, ValueError):
            continue
    if tree is None:
        return frozenset()
    cursor_line = text.count("\n", 0, offset) + 1
    bound = _bound(tree)
    below = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name)
        and isinstance(node.ctx, ast.Load)
        and node.lineno > cursor_line
    }
    return frozenset(below - bound - _BUILTINS)


def _indents(text: str, line_start: int, offset: int) -> list[str]:
    """Indentations to try for the filler: the typed one, then those of the lines around."""
    out = [text[line_start:offset]]
    above = text[:line_start].rstrip("\n").rsplit("\n", 1)[-1]
    end = text.find("\n", offset)
    below = next((ln for ln in text[offset:].split("\n")[1:] if ln.strip()), "") if end >= 0 else ""
    for line, deeper in ((above, above.rstrip().endswith(":")), (below, False)):
        lead = line[: len(line) - len(line.lstrip())]
        out.append(lead + "    " if deeper else lead)
    return list(dict.fromkeys(out))


def defines_any(text: str, offset: int, candidate: str, names: frozenset[str]) -> bool:
    """Whether inserting ``candidate`` at ``offset`` binds one of ``names``."""
    if not names:
        return True
    edited = text[:offset] + candidate + text[offset:]
    try:
        tree = ast.parse(edited)
    except (SyntaxError, ValueError):
        return False
    return bool(_bound(tree) & names)


def _bound(tree: ast.AST) -> set[str]:
    """Every name the module binds anywhere (any scope: a loose but safe over-approximation)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            bound.update(node.names)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound


def parses(text: str) -> bool:
    """Whether ``text`` is valid Python."""
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


# Stand-ins for a missing line: a simple statement, or a block opener for a body below.
_FILLERS = ("pass", "if True:")


def broken_at_cursor(text: str, offset: int) -> bool:
    """True when the buffer does not parse but would with a line put at the cursor: what
    breaks it is the missing line (so a candidate that makes it parse is the one wanted)."""
    line_start = text.rfind("\n", 0, offset) + 1
    if text[line_start:offset].strip() or parses(text):
        return False
    return any(
        parses(text[:line_start] + indent + filler + text[offset:])
        for indent in _indents(text, line_start, offset)
        for filler in _FILLERS
    )
