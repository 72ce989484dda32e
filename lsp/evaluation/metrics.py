"""Scores of one suggestion against the answer it replaces."""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords and ``self`` carry no information about which names a suggestion uses.
_KEYWORDS = frozenset(keyword.kwlist) | {"self"}


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / the longer length (1.0 for two empty strings)."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def identifiers(code: str) -> list[str]:
    """The identifiers of ``code`` in order, keywords left out."""
    return [word for word in _IDENT.findall(code) if word not in _KEYWORDS]


def identifier_f1(expected: str, got: str) -> float:
    """F1 of the identifier sets (1.0 when neither has any)."""
    want, have = set(identifiers(expected)), set(identifiers(got))
    if not want and not have:
        return 1.0
    common = len(want & have)
    if common == 0:
        return 0.0
    precision, recall = common / len(have), common / len(want)
    return 2 * precision * recall / (precision + recall)


def names_callee(got: str, callee: str) -> bool:
    """Whether ``got`` calls ``callee`` (as ``callee(`` or ``.callee(``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(callee)}\s*\(", got) is not None


@dataclass(frozen=True)
class Score:
    """One task's scores; ``passed`` is None where the task has no test."""

    exact: bool
    edit_similarity: float
    identifier_f1: float
    empty: bool
    passed: bool | None = None
    callee_named: bool | None = None
    unknown_symbols: bool | None = None


def score(expected: str, got: str, *, empty: bool, callee: str | None = None) -> Score:
    """Compare the answer's region with the suggestion's (both normalised by the caller)."""
    return Score(
        exact=expected == got,
        edit_similarity=edit_similarity(expected, got),
        identifier_f1=identifier_f1(expected, got),
        empty=empty,
        callee_named=names_callee(got, callee) if callee else None,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]
