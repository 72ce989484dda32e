"""Scores: edit similarity, identifiers, the callee."""

from __future__ import annotations

import pytest

from lsp.evaluation.metrics import (
    edit_similarity,
    identifier_f1,
    identifiers,
    names_callee,
    score,
)


def test_edit_similarity() -> None:
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abc", "") == 0.0
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_identifiers_leave_keywords_and_self_out() -> None:
    assert identifiers("return self.total + len(xs)") == ["total", "len", "xs"]
    assert identifier_f1("x = foo(a, b)", "x = foo(a, b)") == 1.0
    assert identifier_f1("x = foo(a)", "y = bar(c)") == 0.0
    assert identifier_f1("x = foo(a)", "x = foo(b)") == pytest.approx(2 / 3)
    assert identifier_f1("pass", "return") == 1.0


def test_callee_is_named_only_as_a_call() -> None:
    assert names_callee("repo.get_object(sha)", "get_object")
    assert names_callee("get_object (sha)", "get_object")
    assert not names_callee("my_get_object(sha)", "get_object")
    assert not names_callee("get_object", "get_object")


def test_score() -> None:
    result = score("    x = f(1)", "    x = f(1)", empty=False, callee="f")
    assert result.exact and result.callee_named and result.edit_similarity == 1.0
    assert score("a", "", empty=True).empty
