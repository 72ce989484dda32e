"""Literal strings a regular expression cannot match without: a cheap test of which lines
are worth showing to it.

``required_literals(re.compile(r"(ghp|gho)_[A-Za-z0-9]{36}"))`` is ``{"ghp_", "gho_"}``:
every match contains one of them, so a line holding neither cannot match, and ``str.find``
over a whole text finds the lines worth trying far faster than the pattern itself would.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

_MAX_LITERALS = 64  # literal strings one piece of a pattern may stand for
_MAX_CLASS = 16  # characters of a class read as alternatives


def required_literals(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Strings one of which every match of ``pattern`` contains (None: none known).

    Read from the parsed pattern (``re._parser``, the standard library's own parser): a
    literal run, the alternatives of a branch, an optional character (``api_?key`` gives
    ``apikey`` and ``api_key``); anything else ends a run. Any failure only costs speed.
    """
    try:
        parser = importlib.import_module("re._parser")
        parsed = parser.parse(pattern.pattern, pattern.flags)
        return _sequence(list(parsed))[1]
    except Exception:  # an unknown parser shape: screen by searching the pattern instead
        return None


_Literals = tuple[frozenset[str] | None, frozenset[str] | None]  # (exact, required)


def _better(current: frozenset[str] | None, other: frozenset[str] | None) -> frozenset[str] | None:
    """The more selective of two requirements: longest shortest string, then fewest strings."""
    if other is None or not other or "" in other:
        return current
    if current is None:
        return other
    rank = (min(map(len, other)), -len(other))
    return other if rank > (min(map(len, current)), -len(current)) else current


def _sequence(items: Sequence[tuple[Any, Any]]) -> _Literals:
    run: frozenset[str] = frozenset({""})
    best: frozenset[str] | None = None
    exact = True
    for op, arg in items:
        node_exact, node_required = _node(str(op), arg)
        if node_exact is not None and len(run) * len(node_exact) <= _MAX_LITERALS:
            run = frozenset(a + b for a in run for b in node_exact)
            continue
        exact = False
        best = _better(_better(best, run), node_required)
        run = node_exact if node_exact is not None else frozenset({""})
    best = _better(best, run)
    return (run if exact else None), best


def _node(op: str, arg: Any) -> _Literals:
    if op == "LITERAL":
        char = frozenset({chr(arg)})
        return char, char
    if op == "IN":  # a small class of plain characters: ``(ghp|gho)`` is parsed as ``gh[po]``
        chars: set[str] = set()
        for item_op, item in arg:
            if str(item_op) == "LITERAL":
                chars.add(chr(item))
            elif str(item_op) == "RANGE" and item[1] - item[0] < _MAX_CLASS:
                chars.update(map(chr, range(item[0], item[1] + 1)))
            else:
                return None, None
        small = frozenset(chars) if len(chars) <= _MAX_CLASS else None
        return small, small
    if op in ("AT", "ASSERT", "ASSERT_NOT"):
        return frozenset({""}), None  # zero-width: the characters around stay contiguous
    if op == "SUBPATTERN":
        return _sequence(arg[3])
    if op == "ATOMIC_GROUP":
        return _sequence(arg)
    if op == "BRANCH":
        alternatives = [_sequence(items) for items in arg[1]]
        exacts = [e for e, _ in alternatives if e is not None]
        exact: frozenset[str] | None = None
        if len(exacts) == len(alternatives) and sum(map(len, exacts)) <= _MAX_LITERALS:
            exact = frozenset().union(*exacts)
        needed = [_better(r, e) for e, r in alternatives]
        required = None
        if all(n is not None for n in needed):
            required = frozenset().union(*(n for n in needed if n is not None))
        return exact, required
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, items = arg
        inner_exact, inner_required = _sequence(items)
        if low == 0:
            optional = high == 1 and inner_exact is not None
            return (inner_exact | {""} if optional and inner_exact else None), None
        if low == high == 1:
            return inner_exact, inner_required
        return None, _better(inner_required, inner_exact)
    return None, None  # character classes, any character, back-references
