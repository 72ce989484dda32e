"""Retrieval for the completion pipeline and symbol lookups for the lint bridge.

``context_for`` returns (a) the definitions of the symbols used near the cursor,
resolved through the file's imports into the symbol table, then (b) the chunks
of other files most similar to the text before the cursor; de-duplicated, a few
per file, inside a character budget, in a stable order (so the prompt's
repository part, which comes first, stays a reusable KV-cache prefix).
``lookup`` answers whether ``module.attr``, ``Class.method`` or ``name`` exists.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass

from indexer.chunking import parse_file
from indexer.index import RepositoryIndex
from indexer.records import Chunk, ImportRecord, Symbol
from indexer.symbols import python_module_names
from indexer.untrusted import strip_invisible

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WINDOW_LINES_BEFORE = 40
_WINDOW_LINES_AFTER = 5
_QUERY_LINES = 12
_TOO_SIMILAR = 0.5


@dataclass(frozen=True)
class ContextSnippet:
    """A piece of repository code chosen for a prompt, and why."""

    path: str
    start_line: int
    end_line: int
    text: str
    reason: str  # "definition" | "similar"
    symbol: str = ""


@dataclass(frozen=True)
class SymbolMatch:
    """The outcome of a lookup: what was found, if anything."""

    found: bool
    kind: str = ""  # symbol | module | import | member
    symbol: Symbol | None = None


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", text))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _absolute_module(record: ImportRecord, own_module: str | None) -> str:
    """The absolute module name of a (possibly relative) import."""
    if record.level == 0 or own_module is None:
        return record.module
    parts = own_module.split(".")
    base = parts[: max(0, len(parts) - record.level)]
    return ".".join([*base, record.module] if record.module else base)


class Retriever:
    """Context and symbol queries over one RepositoryIndex."""

    def __init__(self, index: RepositoryIndex) -> None:
        self.index = index
        self.store = index.store

    # -- (a) definitions through imports -------------------------------------------

    def _module_of(self, path: str) -> str | None:
        if not path.endswith((".py", ".pyi")):
            return None
        known = self.store.module_of(path)
        if known is not None:
            return known
        return python_module_names([*self.store.file_states(), path]).get(path)

    def _bindings(self, path: str, text: str) -> dict[str, str]:
        """Local name -> qualified name bound by the buffer's imports (saved or not)."""
        own = self._module_of(path)
        names: dict[str, str] = {}
        for record in _buffer_imports(path, text, own):
            module = _absolute_module(record, own)
            if record.name is None:
                local = record.alias or module.split(".")[0]
                names[local] = module if record.alias else local
            elif record.name != "*":
                names[record.alias or record.name] = f"{module}.{record.name}"
        return names

    def unused_imports(self, path: str, text: str) -> list[str]:
        """Local names the buffer's imports bind that appear nowhere else in it."""
        words = Counter(_WORD.findall(text))
        return [name for name in self._bindings(path, text) if words[name] <= 1]

    def definitions_near(self, path: str, text: str, window: str) -> list[tuple[int, Chunk]]:
        """Chunks defining the imported or repository symbols referenced in ``window``."""
        bindings = self._bindings(path, text)
        own = self._module_of(path)
        wanted: dict[str, None] = {}
        for dotted in _IDENTIFIER.findall(window):
            head, _, rest = dotted.partition(".")
            if head in bindings:
                target = bindings[head]
                # `cart.Cart` through `from shop import cart`: try the longest chain first.
                for candidate in (f"{target}.{rest}" if rest else "", target):
                    if candidate:
                        wanted.setdefault(candidate)
            elif own is not None and not rest:
                wanted.setdefault(f"{own}.{head}")
        found: dict[int, Chunk] = {}
        for qualname in wanted:
            for symbol in self.store.symbols_by_qualname(qualname):
                if symbol.path == path:
                    continue
                for chunk_id, chunk in self.store.chunks_of(symbol.path):
                    if chunk.start_line <= symbol.line <= chunk.end_line:
                        found.setdefault(chunk_id, chunk)
                        break
                break
        return list(found.items())

    # -- (b) similar chunks ----------------------------------------------------------

    def context_for(
        self,
        path: str,
        text: str,
        offset: int,
        *,
        budget_chars: int = 3000,
        max_per_file: int = 2,
        semantic: bool = True,
        unused_imports: bool = True,
    ) -> list[ContextSnippet]:
        """Definitions then similar chunks of other files, within ``budget_chars``.

        With ``unused_imports``, names the buffer imports but does not use yet come first:
        whoever imported them is about to use them, most likely right at the cursor.
        """
        before_lines = text[:offset].split("\n")
        window = "\n".join(
            before_lines[-_WINDOW_LINES_BEFORE:] + text[offset:].split("\n")[:_WINDOW_LINES_AFTER]
        )
        if unused_imports:
            window = " ".join(self.unused_imports(path, text)) + "\n" + window
        query = "\n".join(before_lines[-_QUERY_LINES:])
        near = _tokens(window)
        chosen: list[ContextSnippet] = []
        per_file: dict[str, int] = {}
        used = 0
        seen: set[int] = set()

        def take(chunk_id: int, chunk: Chunk, reason: str) -> None:
            nonlocal used
            if chunk_id in seen or per_file.get(chunk.path, 0) >= max_per_file:
                return
            if used + len(chunk.text) > budget_chars:
                return
            if reason == "similar" and _jaccard(_tokens(chunk.text), near) > _TOO_SIMILAR:
                return  # it would make the model repeat what is already on screen
            seen.add(chunk_id)
            per_file[chunk.path] = per_file.get(chunk.path, 0) + 1
            used += len(chunk.text)
            # What reaches the prompt is what a reader of the code sees (indexer.untrusted).
            text, where = strip_invisible(chunk.text), strip_invisible(chunk.path)
            chosen.append(
                ContextSnippet(where, chunk.start_line, chunk.end_line, text, reason, chunk.symbol)
            )

        for chunk_id, chunk in self.definitions_near(path, text, window):
            take(chunk_id, chunk, "definition")
        if query.strip():
            for hit in self.index.search(query, 8, exclude_path=path, semantic=semantic):
                take(hit.chunk_id, hit.chunk, "similar")
        # Stable order: definitions, then similar chunks, each by path and line.
        chosen.sort(key=lambda s: (s.reason != "definition", s.path, s.start_line))
        logger.debug("context for %s: %s", path, [(s.path, s.start_line) for s in chosen])
        return chosen

    # -- known symbols -----------------------------------------------------------------

    def lookup(self, dotted: str) -> SymbolMatch:
        """Does ``module.attr`` / ``Class.method`` / ``name`` exist in the repository?"""
        exact = self.store.symbols_by_qualname(dotted)
        if exact:
            return SymbolMatch(True, "symbol", exact[0])
        if self.store.module_file(dotted) is not None:
            return SymbolMatch(True, "module")
        head, _, attr = dotted.rpartition(".")
        if not head:
            named = self.store.symbols_named(dotted)
            return SymbolMatch(bool(named), "symbol" if named else "", named[0] if named else None)
        module_path = self.store.module_file(head)
        if module_path is not None:
            # A name the module imports is an attribute of it too (re-exports).
            for record in self.store.imports_of(module_path):
                if (record.alias or record.name or record.module.split(".")[0]) == attr:
                    return SymbolMatch(True, "import")
            return SymbolMatch(False)
        return self._member(head.rpartition(".")[2], attr, set())

    def _member(self, class_name: str, attr: str, visited: set[str]) -> SymbolMatch:
        """``Class.attr`` for a class known only by its short name, following its bases."""
        if class_name in visited:
            return SymbolMatch(False)
        visited.add(class_name)
        classes = [s for s in self.store.symbols_named(class_name) if s.kind == "class"]
        for cls in classes:
            members = self.store.symbols_by_qualname(f"{cls.qualname}.{attr}")
            if members:
                return SymbolMatch(True, "member", members[0])
        for cls in classes:
            for base in _bases(cls.signature):
                match = self._member(base, attr, visited)
                if match.found:
                    return match
        return SymbolMatch(False)


@functools.lru_cache(maxsize=32)
def _buffer_imports(path: str, text: str, module: str | None) -> tuple[ImportRecord, ...]:
    """The imports of a Python buffer, parsed error-tolerantly (it is often mid-edit)."""
    if not path.endswith((".py", ".pyi")):
        return ()
    return tuple(parse_file(path, text, "python", module=module).imports)


def _bases(signature: str) -> list[str]:
    """Base class short names from a Python class signature ``class A(B, mod.C):``."""
    inside = signature.partition("(")[2].rpartition(")")[0]
    names = []
    for part in inside.split(","):
        part = part.strip()
        if part and "=" not in part:
            names.append(part.rpartition(".")[2].partition("[")[0])
    return names
