"""Parse an edited buffer that may be broken elsewhere: the edited region, and the rest apart.

Parsing a whole 1,000-line buffer for every candidate costs more than the rest of the
symbol check, so the top-level statements around the edit are parsed on their own and
the rest of the buffer (the same for every candidate at one cursor) is parsed once and
cached by the caller. If the region does not parse alone (the split fell inside a
string, say), the whole buffer is parsed instead.
"""

from __future__ import annotations

import ast
import bisect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_CONTINUATIONS = frozenset({"else", "elif", "except", "finally"})
_FIRST_WORD = re.compile(r"[^\W\d]\w*")
_CLASS = re.compile(r"class\s")
_IDENTIFIER = re.compile(r"(?<![\w.])[^\W\d]\w*")
_ON_LINE = re.compile(r"on line (\d+)")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


@dataclass
class ParsedEdit:
    """The statements around an edit (lines as in the buffer) and the rest of the buffer.

    ``outside`` is the text of every other top-level statement when the region was parsed
    on its own; ``body`` is the whole module when the buffer had to be parsed whole.
    ``shell`` is set when the region is members of a class: the class without them.
    """

    region: list[ast.stmt]
    outside: str | None = None
    seam: int = 0
    body: list[ast.stmt] | None = None
    dropped: set[str] = field(default_factory=set)
    shell: ast.ClassDef | None = None
    shell_text: str = ""


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split where Python's tokenizer splits them (not at form feeds)."""
    return _LINE.findall(text)


@dataclass
class Recovered:
    """A parsed module and the identifiers on the lines that had to be dropped to parse it."""

    tree: ast.Module
    dropped: set[str]


def parse_recovering(
    text: str, protected: range | None = None, *, attempts: int = 8
) -> Recovered | None:
    """Parse ``text``, turning broken lines into ``pass``; None if a protected line is broken."""
    lines: list[str] | None = None
    dropped: set[str] = set()
    for _ in range(attempts):
        try:
            tree = ast.parse(text if lines is None else "".join(lines))
        except SyntaxError as error:
            if lines is None:
                lines = split_lines(text)
            if not _neutralise(lines, error, protected, dropped):
                return None
        except (ValueError, RecursionError, MemoryError):
            return None
        else:
            return Recovered(tree, dropped)
    return None


def _neutralise(
    lines: list[str], error: SyntaxError, protected: range | None, dropped: set[str]
) -> bool:
    if not lines or error.lineno is None:
        return False
    index = min(max(error.lineno - 1, 0), len(lines) - 1)
    targets = [index]
    header = _ON_LINE.search(error.msg or "")
    if header and "indented block" in (error.msg or ""):
        targets = [min(int(header.group(1)) - 1, len(lines) - 1)]
    if protected is not None and any(target in protected for target in targets):
        return False
    for target in targets:
        line = lines[target]
        dropped.update(_IDENTIFIER.findall(line))
        ending = line[len(line.rstrip("\r\n")) :] or "\n"
        # A stray indent is fixed by an empty line; a `pass` would keep the wrong indent.
        stray = isinstance(error, IndentationError) and "indented block" not in (error.msg or "")
        if stray or line.strip() in {"pass", ""}:
            lines[target] = ending
        else:
            indent = line[: len(line) - len(line.lstrip())]
            lines[target] = f"{indent}pass{ending}"
    return True


def _is_boundary(line: str) -> bool:
    """Whether a line starts a top-level statement (judged by its first characters only)."""
    if not line or line[0] in " \t\r\n#\"')]}":
        return False
    if line[0] == "@":
        return True
    word = _FIRST_WORD.match(line)
    return word is not None and word.group(0) not in _CONTINUATIONS


def edited_region(lines: list[str], first: int, last: int) -> tuple[int, int]:
    """The line span ``[start, end)`` of the top-level statements around lines first..last."""
    start = min(first, len(lines) - 1) if lines else 0
    while start > 0 and not _is_boundary(lines[start]):
        start -= 1
    while start > 0 and lines[start - 1].startswith("@"):
        start -= 1
    end = last + 1
    while end < len(lines) and not _is_boundary(lines[end]):
        end += 1
    return start, end


def _statement_lines(statement: ast.stmt) -> tuple[int, int]:
    first = statement.lineno
    for decorator in getattr(statement, "decorator_list", ()):
        first = min(first, decorator.lineno)
    return first - 1, (statement.end_lineno or statement.lineno) - 1


def _parse_at(source: str, offset: int) -> ast.Module | None:
    """Parse ``source`` as if it started on line ``offset`` (0-based) of the buffer."""
    try:
        # Leading newlines cost the tokenizer next to nothing; shifting the tree afterwards
        # (ast.increment_lineno) costs more than the parse itself.
        return ast.parse("\n" * offset + source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def parse_shell(source: str, pass_line: int) -> ast.ClassDef | None:
    """Parse a class whose edited member was replaced by ``pass`` on line ``pass_line`` (1-based).

    None unless the ``pass`` is still a statement of the class body: otherwise the cut
    fell inside a string or brackets.
    """
    tree = _parse_at(source, 0)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.ClassDef):
        return None
    shell = tree.body[0]
    if not any(isinstance(s, ast.Pass) and s.lineno == pass_line for s in shell.body):
        return None
    return shell


def _member_boundary(line: str, indent: str) -> bool:
    return line.startswith(indent) and _is_boundary(line[len(indent) :])


def _member_span(
    lines: list[str], start: int, end: int, first: int, last: int
) -> tuple[int, int, str] | None:
    """Lines ``[begin, stop)`` of the class member holding the edit, and the body's indent."""
    header = start
    while header < end and lines[header].startswith("@"):
        header += 1
    if header >= end or not _CLASS.match(lines[header]) or first <= header:
        return None
    body = [line for line in lines[header + 1 : end] if line.strip() and line.strip()[0] != "#"]
    if not body:
        return None
    indent = min((line[: len(line) - len(line.lstrip())] for line in body), key=len)
    if not indent or not all(line.startswith(indent) for line in body):
        return None
    begin = first
    while begin > header and not _member_boundary(lines[begin], indent):
        begin -= 1
    while begin - 1 > header and lines[begin - 1].startswith(indent + "@"):
        begin -= 1
    stop = last + 1
    while stop < end and not _member_boundary(lines[stop], indent):
        stop += 1
    return (begin, stop, indent) if begin > header else None


ShellParser = Callable[[str, int], "ast.ClassDef | None"]


def parse_edit(
    text: str, first: int, last: int, *, shell_parser: ShellParser = parse_shell
) -> ParsedEdit | None:
    """Parse the statements around lines ``first..last`` (0-based) of ``text``.

    An edit inside a class is narrowed to the class member holding it; the rest of the
    class is parsed apart (``shell_parser`` may cache that: it is the same for every
    candidate at one cursor). None when the edited lines themselves do not parse.
    """
    lines = split_lines(text)
    if text.endswith(("\n", "\r")) or not lines:
        lines.append("")
    start, end = edited_region(lines, first, last)
    outside = "".join(lines[:start] + lines[end:])
    protected = range(first, last + 1)
    span = _member_span(lines, start, end, first, last)
    if span is not None:
        begin, stop, indent = span
        source = "\n" * (begin - 1) + "class _:\n" + "".join(lines[begin:stop])
        member = parse_recovering(source, protected, attempts=4)
        wrapper = member.tree.body[0] if member and len(member.tree.body) == 1 else None
        if member is not None and isinstance(wrapper, ast.ClassDef):
            shell_text = "".join([*lines[start:begin], f"{indent}pass\n", *lines[stop:end]])
            shell = shell_parser(shell_text, begin - start + 1)
            if shell is not None:
                return ParsedEdit(
                    wrapper.body,
                    outside,
                    seam=start,
                    dropped=member.dropped,
                    shell=shell,
                    shell_text=shell_text,
                )
    region = parse_recovering("\n" * start + "".join(lines[start:end]), protected, attempts=4)
    if region is None:
        # The edit itself may be broken, or the region was cut badly: the whole buffer decides.
        return parse_whole(text, first, last)
    return ParsedEdit(region.tree.body, outside, seam=start, dropped=region.dropped)


def parse_whole(text: str, first: int, last: int) -> ParsedEdit | None:
    """Parse the whole buffer (repairing lines outside the edit) and pick the edited statements."""
    recovered = parse_recovering(text, range(first, last + 1), attempts=5)
    if recovered is None:
        return None
    region = []
    for statement in recovered.tree.body:
        low, high = _statement_lines(statement)
        if low <= last and high >= first:
            region.append(statement)
    return ParsedEdit(region, body=recovered.tree.body, dropped=recovered.dropped)


class Positions:
    """Offsets in the buffer <-> ast's 1-based lines and UTF-8 byte columns."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = split_lines(text)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def line_of(self, offset: int) -> int:
        """The 0-based line holding an offset."""
        return max(bisect.bisect_right(self.starts, offset) - 1, 0)

    def offset(self, lineno: int, byte_column: int) -> int:
        """The buffer offset of an ast position (1-based line, UTF-8 byte column)."""
        index = lineno - 1
        if not 0 <= index < len(self.lines):
            return self.starts[-1]
        line = self.lines[index]
        if line.isascii():
            column = byte_column
        else:
            column = len(line.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))
        return self.starts[index] + column

    def column(self, lineno: int, byte_column: int) -> int:
        """The character column of an ast position."""
        return self.offset(lineno, byte_column) - self.starts[min(lineno - 1, len(self.lines))]
