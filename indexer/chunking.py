"""Cut a file into retrievable chunks along its definitions (tree-sitter), or into line windows."""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

from tree_sitter import Node

from indexer.langspec import file_scope
from indexer.outline import MAX_NESTING, Item, build_outline, outline_symbols
from indexer.parsing import ParseFallback, has_grammar, line_span, parse_bytes
from indexer.records import Chunk, ParsedFile
from indexer.symbols import python_module_names, python_symbols

logger = logging.getLogger(__name__)

# Files without a grammar (and files that fall back) are cut into windows of 40 lines that
# overlap by 10: a window is about one screen, and the overlap keeps a paragraph or a
# config block that straddles a boundary whole in at least one window.
WINDOW_LINES = 40
WINDOW_OVERLAP = 10
# Lines after a body's last item (closing braces) that may push a chunk past max lines.
_CLOSING_LINES = 2


def parse_file(
    path: str,
    text: str,
    language: str,
    *,
    module: str | None = None,
    max_chunk_lines: int = 60,
    min_chunk_lines: int = 4,
    max_parse_bytes: int = 1_000_000,
    parse_timeout_s: float = 2.0,
) -> ParsedFile:
    """Chunks, symbols and (for Python) imports and exports of one file; never raises on content.

    ``module`` is the Python file's dotted name (see ``python_module_names``); without it the
    name is derived from ``path`` alone. Files in a language without a grammar are cut into
    line windows (``fallback_reason`` stays None); a file too big, too slow or too deeply
    nested to parse is cut into windows with ``fallback_reason`` set to ``size``,
    ``timeout`` or ``nesting``. A chunk has at most ``max_chunk_lines`` lines, plus up to
    two closing lines (``}``) of the body it ends.
    """
    if language == "python" and module is None:
        module = python_module_names([path]).get(path)
    if not has_grammar(language):
        return ParsedFile(chunks=line_windows(path, text, language), module=module)
    lines = text.split("\n")
    try:
        if len(text) > max_parse_bytes:  # UTF-8 has at least a byte per character
            raise ParseFallback("size")
        data = text.encode("utf-8", "replace")
        tree = parse_bytes(data, language, timeout_s=parse_timeout_s, max_bytes=max_parse_bytes)
        root = tree.root_node
        scope = file_scope(root, data, language, module)
        outline = build_outline(root, data, language, scope)
        chunker = _Chunker(lines, max(1, max_chunk_lines), min_chunk_lines, language, path)
        chunks = chunker.run(outline.items, scope)
        if language == "python":
            symbols, imports, exports = python_symbols(path, data, root, module or "")
            return ParsedFile(chunks, symbols, imports, module, exports)
        return ParsedFile(chunks, outline_symbols(path, data, outline, language))
    except (ParseFallback, RecursionError) as exc:
        # Every walk is bounded by MAX_NESTING; RecursionError is the net under that rule.
        reason = exc.reason if isinstance(exc, ParseFallback) else "nesting"
        logger.info("%s: cut into line windows (%s)", path, reason)
        return ParsedFile(
            chunks=line_windows(path, text, language), module=module, fallback_reason=reason
        )


def line_windows(
    path: str,
    text: str,
    language: str,
    *,
    size: int = WINDOW_LINES,
    overlap: int = WINDOW_OVERLAP,
) -> list[Chunk]:
    """Overlapping windows of ``size`` lines (kind ``window``), trimmed of blank edge lines."""
    lines = text.split("\n")
    step = max(1, size - max(0, overlap))
    content = [i for i, line in enumerate(lines, 1) if line.strip()]
    if not content:
        return []
    first, last = content[0], content[-1]
    chunks: list[Chunk] = []
    start = first
    while True:
        end = min(start + size - 1, last)
        s, e = _trim(lines, start, end)
        if s <= e:
            window = "\n".join(lines[s - 1 : e])
            chunks.append(Chunk(path, s, e, language, "window", window))
        if end >= last:
            return chunks
        start += step


def _trim(lines: list[str], start: int, end: int) -> tuple[int, int]:
    while start <= end and not lines[start - 1].strip():
        start += 1
    while end >= start and not lines[end - 1].strip():
        end -= 1
    return start, end


@dataclass
class _Draft:
    start: int
    end: int
    kind: str
    symbol: str
    scope: str
    is_def: bool  # a definition's own chunk: it names the chunk when tiny chunks merge
    group: int  # only drafts of one group (one body) merge


@dataclass(frozen=True)
class _Identity:
    kind: str
    symbol: str
    scope: str
    is_def: bool


_Unit = tuple[int, int, Node | None]


def _rank(draft: _Draft) -> int:
    """Which draft names a merge: a definition with a symbol, then any definition, then a run."""
    return 2 if draft.is_def and draft.symbol else int(draft.is_def)


def _chunk_kind(kind: str) -> str:
    if kind in ("function", "method", "module"):
        return kind
    return "class"


class _Chunker:
    def __init__(
        self, lines: list[str], max_lines: int, min_lines: int, language: str, path: str
    ) -> None:
        self.lines = lines
        self.max = max_lines
        self.min = min(min_lines, max_lines)
        self.language = language
        self.path = path
        self.drafts: list[_Draft] = []
        self.groups = itertools.count()

    def run(self, items: list[Item], scope: str) -> list[Chunk]:
        last = len(self.lines)
        run_identity = _Identity("module", "", scope, False)
        self.body(items, 1, last, None, run_identity)
        merged = self.merge(self.drafts)
        merged = self.fill_gaps(merged, scope)
        return [
            Chunk(
                self.path,
                d.start,
                d.end,
                self.language,
                d.kind,
                "\n".join(self.lines[d.start - 1 : d.end]),
                d.symbol,
                d.scope,
            )
            for d in merged
        ]

    def body(
        self,
        items: list[Item],
        lo: int,
        hi: int,
        header: _Identity | None,
        run_identity: _Identity,
    ) -> None:
        """Drafts tiling lines lo..hi of one body: runs of statements and its definitions."""
        group = next(self.groups)
        first_draft = len(self.drafts)
        cursor = lo
        run: list[Item] = []
        for item in items:
            if item.definition is None:
                run.append(item)
                continue
            if run:
                identity = header if header is not None and cursor == lo else run_identity
                cursor = self.run_drafts(run, cursor, identity, run_identity, group)
                run = []
            elif header is not None and cursor == lo and item.start > lo:
                # The definition line(s) of a class whose body starts with a method.
                self.add(lo, item.start - 1, header, group)
                cursor = item.start
            cursor = self.definition(item, cursor, group)
        if run:
            identity = header if header is not None and cursor == lo else run_identity
            cursor = self.run_drafts(run, cursor, identity, run_identity, group)
        if header is not None and cursor == lo:
            self.add(lo, hi, header, group)
        elif len(self.drafts) > first_draft and hi >= cursor:
            # The closing brace(s) after the last item join it, even a line or two past max
            # lines: a chunk of a lone `}` helps no one. More is left to fill_gaps (an
            # unterminated string can leave the rest of a file outside any node).
            last = self.drafts[-1]
            end = self.last_content(hi)
            if end - last.start < self.max + _CLOSING_LINES:
                last.end = max(last.end, end)

    def skip_blank(self, start: int, limit: int) -> int:
        """The first line from ``start`` on that is not blank, at most ``limit``."""
        lines = self.lines
        while start < limit and not lines[start - 1].strip():
            start += 1
        return start

    def last_content(self, hi: int) -> int:
        """The last line at or before ``hi`` that is not blank."""
        while hi > 0 and not self.lines[hi - 1].strip():
            hi -= 1
        return hi

    def run_drafts(
        self,
        run: list[Item],
        start: int,
        identity: _Identity,
        rest: _Identity,
        group: int,
    ) -> int:
        end = run[-1].end
        start = self.skip_blank(start, run[0].start)
        pieces = self.split(start, end, [(it.start, it.end, it.node) for it in run], 0)
        for i, (s, e) in enumerate(pieces):
            self.add(s, e, identity if i == 0 else rest, group)
        return end + 1

    def definition(self, item: Item, start: int, group: int) -> int:
        d = item.definition
        assert d is not None
        start = self.skip_blank(start, item.start)
        identity = _Identity(_chunk_kind(d.kind), d.qualname if d.kind else "", d.scope, True)
        members = d.members or []
        has_defs = any(m.definition is not None for m in members)
        if has_defs and all(m.start > d.line for m in members):  # not a one-line class
            run_kind = "module" if d.kind == "module" else "class"
            self.body(
                members, start, item.end, identity, _Identity(run_kind, "", d.qualname, False)
            )
            return item.end + 1
        if item.end - start + 1 <= self.max:
            self.add(start, item.end, identity, group)
            return item.end + 1
        body = d.node.child_by_field_name("body")
        units = self.units(body if body is not None else d.node, item.start, item.end)
        pieces = self.split(start, item.end, units, 0)
        if len(pieces) > 1:
            group = next(self.groups)
        rest = _Identity("block", "", d.qualname, False)
        for i, (s, e) in enumerate(pieces):
            self.add(s, e, identity if i == 0 else rest, group)
        return item.end + 1

    def add(self, start: int, end: int, identity: _Identity, group: int) -> None:
        s, e = _trim(self.lines, start, end)
        if s <= e:
            self.drafts.append(
                _Draft(s, e, identity.kind, identity.symbol, identity.scope, identity.is_def, group)
            )

    def units(self, node: Node, lo: int, hi: int) -> list[_Unit]:
        """Line spans of a node's named children; children sharing a line become one unit."""
        units: list[_Unit] = []
        for child in node.named_children:
            s, e = line_span(child)
            s, e = max(s, lo), min(e, hi)
            if s > e:
                continue
            if units and s <= units[-1][1]:
                ps, pe, pnode = units[-1]
                keep = child if (e - s) > (pe - ps) else pnode
                units[-1] = (ps, max(pe, e), keep)
            else:
                units.append((s, e, child))
        return units

    def split(self, lo: int, hi: int, units: list[_Unit], depth: int) -> list[tuple[int, int]]:
        """Cut lines lo..hi into pieces of at most max lines at unit boundaries, evenly sized."""
        total = hi - lo + 1
        if total <= self.max:
            return [(lo, hi)]
        if depth > MAX_NESTING:
            raise ParseFallback("nesting")
        if not units:
            return self.windows(lo, hi)
        target = math.ceil(total / math.ceil(total / self.max))
        pieces: list[tuple[int, int]] = []
        cur_s, cur_e = lo, lo - 1
        for _, e, node in units:
            size = e - cur_s + 1
            if size <= target or (size <= self.max and cur_e - cur_s + 1 < self.min):
                cur_e = e
                continue
            if cur_e >= cur_s:
                pieces.append((cur_s, cur_e))
                cur_s = cur_e + 1
            if e - cur_s + 1 <= self.max:
                cur_e = e
                continue
            inner = self.units(node, cur_s, e) if node is not None else []
            sub = self.split(cur_s, e, inner, depth + 1)
            pieces.extend(sub[:-1])
            cur_s, cur_e = sub[-1]
        if hi - cur_s + 1 > self.max and cur_e >= cur_s:
            pieces.append((cur_s, cur_e))
            cur_s = cur_e + 1
        if hi - cur_s + 1 > self.max:
            pieces.extend(self.windows(cur_s, hi))
        else:
            pieces.append((cur_s, hi))
        if len(pieces) > 1:
            (ps, _), (_, le) = pieces[-2], pieces[-1]
            if pieces[-1][1] - pieces[-1][0] + 1 < self.min and le - ps + 1 <= self.max:
                pieces[-2:] = [(ps, le)]
        return pieces

    def windows(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Even, non-overlapping line pieces of at most max lines (for unsplittable nodes)."""
        total = hi - lo + 1
        count = math.ceil(total / self.max)
        size = math.ceil(total / count)
        return [(s, min(s + size - 1, hi)) for s in range(lo, hi + 1, size)]

    def merge(self, drafts: list[_Draft]) -> list[_Draft]:
        """Merge tiny drafts into their neighbours of the same body while within max lines."""
        out: list[_Draft] = []
        for draft in drafts:
            if out:
                prev = out[-1]
                tiny = min(prev.end - prev.start, draft.end - draft.start) + 1 < self.min
                if tiny and prev.group == draft.group and draft.end - prev.start < self.max:
                    named = prev if _rank(prev) >= _rank(draft) else draft
                    out[-1] = _Draft(
                        prev.start,
                        draft.end,
                        named.kind,
                        named.symbol,
                        named.scope,
                        prev.is_def or draft.is_def,
                        prev.group,
                    )
                    continue
            out.append(draft)
        return out

    def fill_gaps(self, drafts: list[_Draft], scope: str) -> list[_Draft]:
        """Give any non-blank line no draft covers to a chunk (stray tokens of broken code)."""
        out: list[_Draft] = []
        covered = 0
        for draft in sorted(drafts, key=lambda d: d.start):
            if draft.start > covered + 1:
                self.gap(out, covered + 1, draft.start - 1, scope)
            if draft.end <= covered:
                continue  # nested inside an earlier draft: cannot happen, but never duplicate
            draft.start = max(draft.start, covered + 1)
            out.append(draft)
            covered = draft.end
        self.gap(out, covered + 1, len(self.lines), scope)
        return out

    def gap(self, out: list[_Draft], lo: int, hi: int, scope: str) -> None:
        s, e = _trim(self.lines, lo, hi)
        if s > e:
            return
        if out and e - out[-1].start + 1 <= self.max:
            out[-1].end = e
            return
        for ws, we in self.windows(s, e):
            out.append(_Draft(ws, we, "module", "", scope, False, -1))
