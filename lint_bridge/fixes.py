"""Fixes for ruff diagnostics: the statement a fix may rewrite, and whether a fix really fixes."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from tree_sitter import Node, Point

from indexer.parsing import ParseFallback, has_grammar, parse_bytes
from lint_bridge.api import Document, LintBridgeError, Splice
from lint_bridge.ruff import RuffDiagnostic
from lint_bridge.verify import Verifier

logger = logging.getLogger(__name__)

_PARSE_TIMEOUT_S = 1.0
_MAX_BYTES = 8 << 20
# "Redefinition of unused `f` from line 9": the number moves with any edit above line 9.
_LINE_NUMBER = re.compile(r"\bline \d+\b")
# Node types that are statements in the grammars we parse (Python's all end in one of these;
# C's plain ``declaration`` and Rust's ``function_item`` are covered too).
_STATEMENT_SUFFIXES = ("statement", "declaration", "definition", "_item")
# Parts of a compound statement that read as a block of their own: a header and its body.
_CLAUSES = frozenset(
    {
        "elif_clause",
        "else_clause",
        "except_clause",
        "except_group_clause",
        "finally_clause",
        "case_clause",
        "decorator",
    }
)


@dataclass
class FixVerdict:
    """Whether a fix may be offered; ``reasons`` say why not (empty when ``ok``)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def statement_span(text: str, language: str, line: int) -> tuple[int, int]:
    """Offsets of the smallest whole statement holding 0-based ``line``, as whole lines.

    The span runs from the start of the statement's first line to the end of its last line
    (before its line break). A compound statement's header line gives the whole statement,
    body included. A blank or comment-only line, a language without a grammar, or a buffer
    that cannot be parsed gives the line itself.
    """
    rows = _statement_rows(text, language, line, narrow=False)
    return _row_offsets(text, *(rows or (line, line)))


def replacement_span(text: str, language: str, line: int) -> tuple[int, int]:
    """Like ``statement_span``, narrowed to what a model can rewrite as one piece.

    A header line of a compound statement gives its own block only: ``if`` with its body
    but not its ``elif``/``else`` clauses, an ``else:`` with its body, a ``case`` clause;
    a decorator line gives the decorator. A rewrite that stops at the end of its block then
    cannot drop the clauses that follow it.
    """
    rows = _statement_rows(text, language, line, narrow=True)
    return _row_offsets(text, *(rows or (line, line)))


def _statement_rows(text: str, language: str, line: int, *, narrow: bool) -> tuple[int, int] | None:
    """First and last row of the statement holding ``line``; None to use the line alone."""
    lines = text.split("\n")
    if not has_grammar(language) or not 0 <= line < len(lines) or not lines[line].strip():
        return None
    data = text.encode("utf-8", "surrogatepass")
    try:
        tree = parse_bytes(data, language, timeout_s=_PARSE_TIMEOUT_S, max_bytes=_MAX_BYTES)
    except ParseFallback as fallback:
        logger.debug("statement of line %d not found: parse %s", line, fallback.reason)
        return None
    text_line = lines[line]
    # The first visible character of the line decides which statement the line belongs to.
    column = len(text_line[: len(text_line) - len(text_line.lstrip())].encode("utf-8"))
    point = Point(line, column)
    node = tree.root_node.named_descendant_for_point_range(point, point)
    if node is None or node.type == "comment":
        return None
    clause: Node | None = None
    current: Node | None = node
    while current is not None and not _is_statement(current):
        if current.type in _CLAUSES and clause is None:
            clause = current
        current = current.parent
    if current is None:
        return None
    if not narrow:
        return _rows(current)
    if clause is not None:
        return _rows(clause)
    return _header_block_rows(current)


def _is_statement(node: Node) -> bool:
    if not node.is_named or not node.type.endswith(_STATEMENT_SUFFIXES):
        return False
    # C's and Go's parameter_declaration sit inside a signature, not in a block.
    parent_type = node.parent.type if node.parent is not None else ""
    return "parameter" not in node.type and "parameter" not in parent_type


def _header_block_rows(statement: Node) -> tuple[int, int]:
    """A compound statement up to (not into) its first ``elif``/``else``/``except`` clause."""
    children = statement.children
    first = next((i for i, child in enumerate(children) if child.type in _CLAUSES), None)
    if first is None or first == 0:
        return _rows(statement)
    return statement.start_point.row, _rows(children[first - 1])[1]


def _rows(node: Node) -> tuple[int, int]:
    """A node's first and last row (a node ending at column 0 ends on the row before)."""
    start, end = node.start_point, node.end_point
    last = end.row - 1 if end.column == 0 and end.row > start.row else end.row
    return start.row, last


def _row_offsets(text: str, first: int, last: int) -> tuple[int, int]:
    """From the start of row ``first`` to the end of row ``last``, its line break left out."""
    starts = [0, *(match.end() for match in re.finditer("\n", text))]
    first = min(max(first, 0), len(starts) - 1)
    last = min(max(last, first), len(starts) - 1)
    end = starts[last + 1] - 1 if last + 1 < len(starts) else len(text)
    if end > starts[last] and text[end - 1] == "\r":
        end -= 1
    return starts[first], max(end, starts[first])


def _key(diagnostic: RuffDiagnostic) -> tuple[str, str]:
    return diagnostic.code, _LINE_NUMBER.sub("line N", diagnostic.message)


def _label(diagnostic: RuffDiagnostic) -> str:
    return f"ruff:{diagnostic.code} {diagnostic.message} (line {diagnostic.line + 1})"


def _same_place(a: RuffDiagnostic, b: RuffDiagnostic) -> bool:
    return (a.code, a.line, a.column) == (b.code, b.line, b.column)


async def verify_fix(
    verifier: Verifier, doc: Document, splice: Splice, target: RuffDiagnostic
) -> FixVerdict:
    """Whether ``splice`` fixes ``target`` in ``doc``: it parses, ``target`` is gone, nothing new.

    Ruff's diagnostics in the replaced region are compared before and after as a multiset
    (code and message): the target's count must drop and nothing may appear that was not
    there, unused names and unfinished imports included (a fix is finished code). Outside
    the region, the Verifier's own checks say no new diagnostic, parse error or unknown
    symbol appeared. Any check that cannot run makes the fix not ok: a fix is never offered
    unverified.
    """
    if doc.language != "python":
        return FixVerdict(False, [f"ruff does not check {doc.language} files"], ["ruff"])
    try:
        after = splice.apply(doc.text)
    except LintBridgeError as error:
        return FixVerdict(False, [str(error)])
    old, new = await asyncio.gather(
        verifier.ruff.diagnostics(doc.text, doc.path),
        verifier.ruff.diagnostics(after, doc.path),
    )
    if old is None or new is None:
        return FixVerdict(False, ["ruff could not run"], ["ruff"])
    reasons = _region_reasons(doc.text, after, old, new, splice, target)
    if reasons:
        return FixVerdict(False, reasons)
    # The ruff runs above are cached: the Verifier's own ruff check reuses them.
    verdict = await verifier.check(doc, splice)
    reasons = [f"{reason.label}: {reason.message}" for reason in verdict.reasons]
    if verdict.verdict != "accept":
        return FixVerdict(False, reasons or [f"verifier said {verdict.verdict}"], verdict.unchecked)
    return FixVerdict(True, [], verdict.unchecked)


def _region_reasons(
    before: str,
    after: str,
    old: list[RuffDiagnostic],
    new: list[RuffDiagnostic],
    splice: Splice,
    target: RuffDiagnostic,
) -> list[str]:
    """Why the edit does not remove ``target`` or adds a diagnostic where it rewrote the text."""
    found = next((d for d in old if _same_place(d, target)), None)
    if found is None:
        return [f"{_label(target)} is not reported in this text"]
    target_key = _key(found)
    target_at = found.offsets(before)[0]
    inside = splice.start <= target_at <= splice.end
    region: Counter[tuple[str, str]] = Counter()
    for diagnostic in old:
        if splice.start <= diagnostic.offsets(before)[0] <= splice.end:
            region[_key(diagnostic)] += 1
    reasons: list[str] = []
    if inside:
        region[target_key] -= 1
    else:
        # The edit lies elsewhere (an import added above a use): the target moved with the text.
        moved = target_at + splice.delta if target_at > splice.end else target_at
        for diagnostic in new:
            if _key(diagnostic) == target_key and diagnostic.offsets(after)[0] == moved:
                reasons.append(f"{_label(diagnostic)} is still reported")
    for diagnostic in new:
        if not splice.start <= diagnostic.offsets(after)[0] <= splice.new_end:
            continue
        key = _key(diagnostic)
        if region[key] > 0:
            region[key] -= 1
        elif key == target_key:
            reasons.append(f"{_label(diagnostic)} is still reported")
        else:
            reasons.append(f"{_label(diagnostic)} is new")
    return reasons
