"""Tree-sitter grammars, per-thread parsers and a parse that gives up instead of hanging."""

from __future__ import annotations

import functools
import importlib
import logging
import re
import threading
import time

from tree_sitter import Language, Node, Parser, Query, Tree

logger = logging.getLogger(__name__)

# language id (as indexer.languages names it) -> (grammar package, function returning the grammar)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

GRAMMAR_LANGUAGES: frozenset[str] = frozenset(_GRAMMARS)

# Each slice handed to tree-sitter by the read callback; a memoryview slice copies nothing.
_READ_SLICE = 1 << 16

_local = threading.local()


class ParseFallback(Exception):
    """A file cannot be parsed within the caps; ``reason`` is one word such as ``timeout``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def has_grammar(language: str) -> bool:
    """Whether ``language`` is parsed with tree-sitter (otherwise it is chunked by line windows)."""
    return language in _GRAMMARS


@functools.cache
def grammar(language: str) -> Language:
    """The tree-sitter Language of a language id, loaded once from its grammar package."""
    package, function = _GRAMMARS[language]
    module = importlib.import_module(package)
    return Language(getattr(module, function)())


@functools.cache
def query(language: str, source: str) -> Query:
    """A compiled query, cached: queries are immutable and may be shared across threads."""
    return Query(grammar(language), source)


def _parser(language: str) -> Parser:
    # Parsers hold mutable state and are not thread-safe: one per thread and language.
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = {}
        _local.parsers = parsers
    parser = parsers.get(language)
    if parser is None:
        parser = Parser(grammar(language))
        parsers[language] = parser
    return parser


def parse_bytes(
    data: bytes,
    language: str,
    *,
    timeout_s: float,
    max_bytes: int,
    old_tree: Tree | None = None,
) -> Tree:
    """Parse UTF-8 source; raise ParseFallback when it is too big or takes longer than timeout_s.

    ``old_tree``, already ``edit()``-ed to match ``data``, makes the parse incremental.
    """
    if len(data) > max_bytes:
        raise ParseFallback("size")
    parser = _parser(language)
    view = memoryview(data)
    deadline = time.monotonic() + timeout_s

    def read(offset: int, _point: object) -> memoryview:
        return view[offset : offset + _READ_SLICE]

    def past_deadline(_offset: int, _has_error: bool) -> bool:
        return time.monotonic() > deadline

    try:
        if old_tree is None:
            return parser.parse(read, progress_callback=past_deadline)
        return parser.parse(read, old_tree=old_tree, progress_callback=past_deadline)
    except ValueError:
        # A halted parse is resumed by the next call unless the parser is reset.
        parser.reset()
        logger.debug("parse of %d bytes of %s passed %.2fs", len(data), language, timeout_s)
        raise ParseFallback("timeout") from None


def line_span(node: Node) -> tuple[int, int]:
    """A node's 1-based inclusive line range (a node ending at column 0 ends on the line before)."""
    start = node.start_point
    end = node.end_point
    last = end.row if end.column == 0 and end.row > start.row else end.row + 1
    return start.row + 1, last


def node_text(data: bytes, node: Node) -> str:
    """The source text of a node (nodes of a callback parse carry no text of their own)."""
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")


_SPACES = re.compile(r"\s+")
_OPEN_SPACE = re.compile(r"([(\[])\s+")
_CLOSE_SPACE = re.compile(r"\s+([)\]])|,\s*(?=[)\]])")


def normalize_signature(text: str, limit: int = 200) -> str:
    """One line: whitespace collapsed, and the padding and trailing commas of multi-line lists."""
    if "\n" in text:
        flat = _SPACES.sub(" ", text).strip()
        flat = _CLOSE_SPACE.sub(lambda m: m.group(1) or "", _OPEN_SPACE.sub(r"\1", flat))
    elif "  " in text or "\t" in text:
        flat = _SPACES.sub(" ", text).strip()
    else:
        flat = text.strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def first_doc_line(text: str) -> str:
    """The first non-blank line of a comment block, without its comment marks."""
    for raw in text.splitlines():
        line = raw.strip().lstrip("/*#!").strip()
        line = line.removesuffix("*/").strip()
        if line:
            return line
    return ""


def first_line_signature(data: bytes, node: Node) -> str:
    """The first line of a node's text, on one line, without a trailing ``{`` or ``;``."""
    end = data.find(b"\n", node.start_byte, node.end_byte)
    text = data[node.start_byte : end if end >= 0 else node.end_byte].decode("utf-8", "replace")
    return normalize_signature(text.rstrip().rstrip("{;").rstrip())
