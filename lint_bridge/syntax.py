"""Parse errors a candidate edit introduces: tree-sitter error regions compared across the edit."""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections import Counter
from dataclasses import dataclass

from tree_sitter import Node, Point, Tree

from indexer.parsing import ParseFallback, has_grammar, parse_bytes
from lint_bridge.api import LintBridgeError, Reason, Splice

logger = logging.getLogger(__name__)

_PARSE_TIMEOUT_S = 1.0
_MAX_BYTES = 8 << 20
_MAX_REASONS = 10
_SNIPPET = 30

# warnings.catch_warnings swaps process-wide filters; overlapping uses from two threads could
# leave them swapped for good, so ours take turns.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Site:
    """One ERROR node (nested ones too) or one MISSING node, in byte offsets."""

    kind: str  # "ERROR", or the type of the missing node (")", "identifier", ...)
    start: int
    end: int


@dataclass(frozen=True)
class _Before:
    """What the checks need of the buffer before the edit; cached per buffer text."""

    data: bytes
    tree: Tree
    sites: tuple[_Site, ...]
    compiles: bool  # Python only: CPython compiles it, so the edited buffer must compile too


def has_syntax_check(language: str) -> bool:
    """Whether ``syntax_errors`` checks ``language`` (others are reported as unchecked)."""
    return has_grammar(language)


def syntax_errors(before: str, after: str, splice: Splice, language: str) -> list[Reason]:
    """The parse errors ``after`` (``splice`` applied to ``before``) has that ``before`` had not.

    Errors already in ``before`` (mid-edit buffers often are broken) are mapped through the
    edit and not blamed on it. Raises LintBridgeError when a buffer is too big or too slow to
    parse, so the caller can report the check as unchecked. At most 10 reasons.
    """
    if not has_grammar(language):
        return []
    state = _analyse_before(language, before)
    start_b = _byte_offset(before, splice.start)
    end_b = _byte_offset(before, splice.end)
    new_end_b = start_b + len(splice.text.encode("utf-8", "surrogatepass"))
    after_data = after.encode("utf-8", "surrogatepass")
    tree = _reparse(state, after_data, language, start_b, end_b, new_end_b)
    sites = _new_sites(state.sites, _error_sites(tree.root_node), start_b, end_b, new_end_b)
    if language == "python" and state.compiles:
        return _python_errors(after, after_data, tree, sites, start_b, new_end_b, splice.text)
    return [_site_reason(after, after_data, site) for site in _outermost(sites)][:_MAX_REASONS]


@functools.lru_cache(maxsize=8)
def _analyse_before(language: str, before: str) -> _Before:
    # Keyed by the text itself: the same buffer is checked against several candidates, and the
    # key compares equal only for the same text (no collisions), with the hash cached by str.
    data = before.encode("utf-8", "surrogatepass")
    tree = _parse(data, language, None)
    compiles = language == "python" and _compile_error(before) is None
    return _Before(data, tree, tuple(_error_sites(tree.root_node)), compiles)


def _parse(data: bytes, language: str, old_tree: Tree | None) -> Tree:
    try:
        return parse_bytes(
            data, language, timeout_s=_PARSE_TIMEOUT_S, max_bytes=_MAX_BYTES, old_tree=old_tree
        )
    except ParseFallback as fallback:
        if fallback.reason == "size":
            raise LintBridgeError(
                f"syntax check skipped: {len(data)} bytes is over the parse limit"
            ) from None
        raise LintBridgeError(
            f"syntax check skipped: parsing {len(data)} bytes took over {_PARSE_TIMEOUT_S}s"
        ) from None


def _reparse(
    state: _Before, after: bytes, language: str, start_b: int, end_b: int, new_end_b: int
) -> Tree:
    # Incremental: only the edited region is re-parsed (about 10x faster on a 1,000-line file).
    old = state.tree.copy()
    old.edit(
        start_byte=start_b,
        old_end_byte=end_b,
        new_end_byte=new_end_b,
        start_point=_point(state.data, start_b),
        old_end_point=_point(state.data, end_b),
        new_end_point=_point(after, new_end_b),
    )
    return _parse(after, language, old)


def _point(data: bytes, offset: int) -> Point:
    row = data.count(b"\n", 0, offset)
    return Point(row, offset - (data.rfind(b"\n", 0, offset) + 1))


def _byte_offset(text: str, offset: int) -> int:
    if text.isascii():
        return offset
    return len(text[:offset].encode("utf-8", "surrogatepass"))


def _error_sites(root: Node) -> list[_Site]:
    """ERROR and MISSING nodes, nested ones included, in document order."""
    sites: list[_Site] = []
    if not root.has_error:
        return sites
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            sites.append(_Site(node.type, node.start_byte, node.end_byte))
            continue
        if node.is_error:
            sites.append(_Site("ERROR", node.start_byte, node.end_byte))
        # Inside an ERROR too: a grammar may wrap the rest of the file in one after a break
        # far above, and the errors the candidate adds then sit nested in it.
        stack.extend(child for child in reversed(node.children) if child.has_error)
    return sites


def _new_sites(
    before: list[_Site] | tuple[_Site, ...],
    after: list[_Site],
    start_b: int,
    end_b: int,
    new_end_b: int,
) -> list[_Site]:
    """The ``after`` sites with no counterpart among the ``before`` sites mapped over the edit."""
    delta = new_end_b - end_b
    fixed: Counter[tuple[str, int]] = Counter()
    floating: Counter[str] = Counter()
    regions: list[tuple[int, int]] = []
    for site in before:
        if site.start < start_b:
            fixed[site.kind, site.start] += 1
        elif site.start > end_b:
            fixed[site.kind, site.start + delta] += 1
        else:
            # An error starting inside the replaced range (or at the cursor) may end up anywhere
            # in the inserted text: the missing ")" of "f(" moves to the end of "a, b".
            floating[site.kind] += 1
        if site.kind == "ERROR":
            regions.append(
                (
                    _map(site.start, start_b, end_b, new_end_b),
                    _map(site.end, start_b, end_b, new_end_b),
                )
            )
    unmatched = []
    for site in after:
        if fixed[site.kind, site.start] > 0:
            fixed[site.kind, site.start] -= 1
        else:
            unmatched.append(site)
    new = []
    for site in unmatched:
        if start_b <= site.start <= new_end_b and floating[site.kind] > 0:
            floating[site.kind] -= 1
            continue
        touches = site.start <= new_end_b and site.end >= start_b
        if (site.kind == "ERROR" or not touches) and any(
            site.start <= hi and site.end >= lo for lo, hi in regions
        ):
            # Around a region broken before the edit, error recovery reshuffles ERROR nodes
            # wherever the edit lands (3% false alarms on real files when counted); a token
            # missing where the candidate stands still counts.
            continue
        new.append(site)
    return new


def _outermost(sites: list[_Site]) -> list[_Site]:
    """The sites not inside an earlier ERROR site (one reason per broken region)."""
    kept: list[_Site] = []
    for site in sites:
        if not any(k.kind == "ERROR" and k.start <= site.start and site.end <= k.end for k in kept):
            kept.append(site)
    return kept


def _map(offset: int, start_b: int, end_b: int, new_end_b: int) -> int:
    """A ``before`` offset in ``after``; one inside the replaced range goes to the range's start."""
    if offset < start_b:
        return offset
    if offset >= end_b:
        return offset + new_end_b - end_b
    return start_b


def _site_reason(text: str, data: bytes, site: _Site) -> Reason:
    offset = _char_offset(text, data, site.start)
    line, column = _position(text, offset)
    if site.kind == "ERROR":
        snippet = data[site.start : site.end].decode("utf-8", "replace").strip().split("\n")[0]
        if len(snippet) > _SNIPPET:
            snippet = snippet[: _SNIPPET - 1] + "…"
        message = f"syntax error: unexpected {snippet!r}" if snippet else "syntax error"
    else:
        message = f"syntax error: missing {site.kind!r}"
    return Reason(kind="syntax", code="syntax", message=message, line=line, column=column)


def _char_offset(text: str, data: bytes, byte_offset: int) -> int:
    if len(data) == len(text):
        return byte_offset
    return len(data[:byte_offset].decode("utf-8", "replace"))


def _position(text: str, offset: int) -> tuple[int, int]:
    """0-based line and column (code points) of a string offset; \\r\\n, \\r and \\n end lines."""
    head = text[:offset]
    line = head.count("\n") + head.count("\r") - head.count("\r\n")
    line_start = max(head.rfind("\n"), head.rfind("\r")) + 1
    return line, offset - line_start


def _python_errors(
    after: str,
    data: bytes,
    tree: Tree,
    sites: list[_Site],
    start_b: int,
    new_end_b: int,
    inserted: str,
) -> list[Reason]:
    """Python whose buffer compiled before the edit: CPython's compiler has the last word.

    The compiler runs on the statements around the edit; the whole buffer is compiled only
    when that and tree-sitter disagree (a chunk can fail where the file does not, and
    tree-sitter lags new syntax).
    """
    chunk = None if "__future__" in inserted else _statements_around(data, tree, start_b, new_end_b)
    if chunk is not None:
        error = _compile_error(chunk)
        if error is None and not sites:
            return []
        if error is not None and sites:
            return [_compile_reason(error)]
    error = _compile_error(after)
    return [] if error is None else [_compile_reason(error)]


def _compile_reason(error: SyntaxError) -> Reason:
    line = max((error.lineno or 1) - 1, 0)
    column = max((error.offset or 1) - 1, 0)
    message = f"syntax error: {error.msg}"
    return Reason(kind="syntax", code="syntax", message=message, line=line, column=column)


def _statements_around(data: bytes, tree: Tree, start_b: int, new_end_b: int) -> str | None:
    """The top-level statements the edit touches, as whole lines at their own line numbers.

    Compiling these instead of the file is enough for every compile-time error (``return``
    outside a function, ``nonlocal`` without a binding, duplicate arguments) except a late
    ``from __future__`` import, which the caller handles.
    """
    touched = [
        child
        for child in tree.root_node.children
        if child.start_byte <= new_end_b and child.end_byte >= start_b
    ]
    if not touched:
        return None
    first = data.rfind(b"\n", 0, touched[0].start_byte) + 1
    last = data.find(b"\n", touched[-1].end_byte)
    chunk = data[first : len(data) if last < 0 else last].decode("utf-8", "surrogatepass")
    # Leading newlines keep CPython's line numbers those of the whole buffer.
    return "\n" * data.count(b"\n", 0, first) + chunk


def _compile_error(source: str) -> SyntaxError | None:
    """CPython's compile-time error of ``source``, or None; the code object is never run."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # "invalid escape sequence" and "is with a literal" are warnings, not errors.
        warnings.simplefilter("ignore")
        try:
            compile(source, "<candidate>", "exec", dont_inherit=True)
        except SyntaxError as error:
            return error
        except ValueError as error:
            # Python 3.11 rejects NUL characters with ValueError rather than SyntaxError.
            return SyntaxError(str(error))
        except (RecursionError, MemoryError) as error:
            return SyntaxError(f"too deeply nested to compile ({type(error).__name__})")
    return None
