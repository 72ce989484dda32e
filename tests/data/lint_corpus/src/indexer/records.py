"""The indexer's plain records: files, chunks, symbols and imports, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class IndexerError(Exception):
    """Base of the indexer's errors; the message is one clear line."""


class IndexBusyError(IndexerError):
    """Another process holds the index lock."""


class IndexUnavailableError(IndexerError):
    """The index cannot be opened or written (read-only cache directory, disk full)."""


@dataclass(frozen=True)
class SourceFile:
    """A file the walk decided to index. ``path`` is repository-relative, POSIX separators."""

    path: str
    abs_path: Path
    size: int
    mtime_ns: int
    language: str


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a file. Lines are 1-based and inclusive, as editors show them.

    ``kind`` is ``function``, ``method``, ``class``, ``module`` (top-level statements),
    ``block`` (part of an oversized node) or ``window`` (line-window fallback);
    ``symbol`` is the qualified name the chunk defines ("" for none) and ``scope``
    the qualified name of what encloses it.
    """

    path: str
    start_line: int
    end_line: int
    language: str
    kind: str
    text: str
    symbol: str = ""
    scope: str = ""


@dataclass(frozen=True)
class Symbol:
    """One definition. ``qualname`` is module-qualified for Python (``shop.cart.Cart.add``)."""

    name: str
    qualname: str
    kind: str  # function method class variable constant attribute module type interface enum
    path: str
    line: int
    language: str
    signature: str = ""
    doc: str = ""
    exported: bool = True


@dataclass(frozen=True)
class ImportRecord:
    """One imported name of a Python module: ``from module import name as alias``.

    ``name`` is None for ``import module [as alias]``; ``level`` counts the dots of
    a relative import (``module`` is then resolved against the importing package).
    """

    path: str
    module: str
    name: str | None
    alias: str | None
    line: int
    level: int = 0


@dataclass
class ParsedFile:
    """What chunking and symbol extraction produced for one file."""

    chunks: list[Chunk] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    imports: list[ImportRecord] = field(default_factory=list)
    module: str | None = None
    exports: list[str] = field(default_factory=list)
    fallback_reason: str | None = None
