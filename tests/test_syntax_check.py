"""Syntax check of candidate edits: only the parse errors an edit introduces are reported."""

from __future__ import annotations

import pytest

from lint_bridge import syntax
from lint_bridge.api import LintBridgeError, Reason, Splice
from lint_bridge.syntax import has_syntax_check, syntax_errors

CURSOR = "<|>"


def check(template: str, text: str, language: str, replace: int = 0) -> list[Reason]:
    """Insert ``text`` at the cursor mark of ``template`` (replacing ``replace`` characters)."""
    start = template.index(CURSOR)
    before = template.replace(CURSOR, "")
    splice = Splice(start, start + replace, text)
    return syntax_errors(before, splice.apply(before), splice, language)


PYTHON = """\
import os


def total(items):
    count = len(items)
    <|>
    return count


def other():
    return os.getcwd()
"""


def test_valid_python_insertion_is_accepted() -> None:
    assert check(PYTHON, "doubled = [n * 2 for n in items]", "python") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("result = compute(items", "'(' was never closed"),
        ("names = [item.name for item in items", "'[' was never closed"),
        ("label = 'unfinished", "unterminated string literal"),
        ("if count >", "invalid syntax"),
    ],
)
def test_python_insertion_that_breaks_the_file_is_rejected(text: str, message: str) -> None:
    reasons = check(PYTHON, text, "python")
    assert len(reasons) == 1
    assert reasons[0].kind == "syntax"
    assert reasons[0].code == "syntax"
    assert message in reasons[0].message
    assert reasons[0].line == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("return 1", "'return' outside function"),
        ("await fetch()", "'await' outside function"),
        ("def helper(a, a):\n    return a", "duplicate argument 'a'"),
        ("def helper():\n    nonlocal missing", "no binding for nonlocal 'missing'"),
        ("from __future__ import annotations", "from __future__ imports must occur"),
    ],
)
def test_python_errors_only_the_compiler_sees(text: str, message: str) -> None:
    template = "import os\n\n<|>\n\n\ndef other():\n    return os.getcwd()\n"
    # tree-sitter parses all of these; CPython's compiler is the authority.
    assert check(template, "", "python") == []
    reasons = check(template, text, "python")
    assert [reason.kind for reason in reasons] == ["syntax"]
    assert message in reasons[0].message
    assert reasons[0].line in (2, 3)


def test_compiler_is_not_the_authority_when_the_buffer_did_not_compile() -> None:
    # The buffer already has a compile-only error, so only tree-sitter errors count.
    template = "return 0\n\n<|>\n"
    assert check(template, "value = 1", "python") == []
    assert check(template, "value = (1", "python") != []


BROKEN_PYTHON = """\
def broken(:
    pass


def total(items):
    count = len(items)
    <|>
    return count
"""


def test_valid_insertion_into_a_buffer_broken_elsewhere_is_accepted() -> None:
    assert check(BROKEN_PYTHON, "doubled = count * 2", "python") == []


def test_breaking_insertion_into_a_broken_buffer_is_blamed_at_the_insertion() -> None:
    reasons = check(BROKEN_PYTHON, "doubled = compute(count", "python")
    assert reasons
    assert {reason.line for reason in reasons} == {6}


def test_insertion_above_an_existing_error_is_accepted() -> None:
    template = "<|>\ndef broken(:\n    pass\n"
    assert check(template, "import os\nimport sys\n", "python") == []


@pytest.mark.parametrize("text", ["a, b)", "a, b"])
def test_unfinished_statement_at_the_cursor_is_not_blamed_on_the_candidate(text: str) -> None:
    # The user typed "compute(": the buffer is broken at the cursor before any candidate.
    template = "def f(a, b):\n    x = compute(<|>\n    return x\n"
    assert check(template, text, "python") == []


def test_replacement_splice() -> None:
    template = "def f(a):\n    x = <|>a + 1\n    return x\n"
    assert check(template, "a - 1", "python", replace=5) == []
    reasons = check(template, "a - (1", "python", replace=5)
    assert [reason.line for reason in reasons] == [1]


def test_columns_are_code_points_in_the_edited_buffer() -> None:
    # Compiler path: the buffer compiles before the edit.
    reasons = check("s = 'ééé😀'; <|>\n", "t = (1", "python")
    assert reasons[0].line == 0
    assert reasons[0].column == len("s = 'ééé😀'; t = ")
    # tree-sitter path: the buffer is broken elsewhere before the edit.
    reasons = check("def broken(:\n    pass\nx = 'ü'\n<|>\n", "ñ = [1,", "python")
    assert [(reason.line, reason.column) for reason in reasons] == [(3, 0)]


def test_crlf_line_numbers() -> None:
    template = "function f(a) {\r\n  const x = a;\r\n  <|>\r\n  return x;\r\n}\r\n"
    reasons = check(template, "const y = g(x;", "javascript")
    assert [(reason.line, reason.column) for reason in reasons] == [(2, 15)]


GOOD_AND_BAD = {
    "javascript": (
        "function f(a) {\n  const x = a + 1;\n  <|>\n  return x;\n}\n",
        "const y = x * 2;",
        "const y = foo(x;",
    ),
    "typescript": (
        "function f(a: number): number {\n  <|>\n  return a;\n}\n",
        "const y: number = a * 2;",
        "const y: number = [a, 2;",
    ),
    "tsx": (
        "export function View() {\n  <|>\n}\n",
        "return <div className='x'>{1}</div>;",
        "return <div>{1</div>;",
    ),
    "go": (
        "package main\n\nfunc f(a int) int {\n\tx := a + 1\n\t<|>\n\treturn x\n}\n",
        "y := x * 2\n\t_ = y",
        "y := foo(x",
    ),
    "rust": (
        "fn f(a: i32) -> i32 {\n    let x = a + 1;\n    <|>\n    x\n}\n",
        "let y = x * 2;",
        "let y = foo(x;",
    ),
    "java": (
        "class A {\n  int f(int a) {\n    <|>\n    return a;\n  }\n}\n",
        "int y = a * 2;",
        "int y = (a * 2;",
    ),
    "c": (
        "int f(int a) {\n    int x = a + 1;\n    <|>\n    return x;\n}\n",
        "int y = x * 2;",
        "if (x) {",
    ),
    "cpp": (
        "int f(int a) {\n    <|>\n    return a;\n}\n",
        "std::vector<int> v{1, 2};",
        "std::vector<int> v{1, 2;",
    ),
}


@pytest.mark.parametrize("language", sorted(GOOD_AND_BAD))
def test_other_languages(language: str) -> None:
    template, good, bad = GOOD_AND_BAD[language]
    assert check(template, good, language) == []
    reasons = check(template, bad, language)
    assert reasons
    assert all(reason.kind == "syntax" for reason in reasons)


@pytest.mark.parametrize(
    ("language", "template", "good", "bad"),
    [
        (
            "javascript",
            "function bad( {\n  return 1;\n}\n\nfunction f(a) {\n  <|>\n  return a;\n}\n",
            "const y = a * 2;",
            "const y = [a, 2;",
        ),
        (
            "go",
            "package main\n\nfunc bad( {\n}\n\nfunc f(a int) int {\n\t<|>\n\treturn a\n}\n",
            "y := a * 2\n\t_ = y",
            "y := foo(a",
        ),
        (
            "c",
            "int bad( {\n}\n\nint f(int a) {\n    <|>\n    return a;\n}\n",
            "int y = a * 2;",
            "int y = foo(a;",
        ),
    ],
)
def test_other_languages_with_a_buffer_broken_elsewhere(
    language: str, template: str, good: str, bad: str
) -> None:
    assert check(template, "", language) == []
    assert check(template, good, language) == []
    bad_line = template[: template.index(CURSOR)].count("\n")
    reasons = check(template, bad, language)
    assert reasons
    assert {reason.line for reason in reasons} == {bad_line}


def test_reason_names_the_missing_token() -> None:
    reasons = check(GOOD_AND_BAD["rust"][0], "let y = foo(x;", "rust")
    assert reasons == [
        Reason(kind="syntax", code="syntax", message="syntax error: missing ')'", line=2, column=17)
    ]


def test_languages_without_a_grammar_are_not_checked() -> None:
    assert has_syntax_check("python")
    assert has_syntax_check("tsx")
    assert not has_syntax_check("ruby")
    assert check("x = <|>", "(((", "ruby") == []


def test_before_analysis_is_cached_per_buffer() -> None:
    template = PYTHON.replace("count = len", "total_count = len")
    syntax._analyse_before.cache_clear()
    check(template, "a = 1", "python")
    check(template, "b = 2", "python")
    check(template, "c = (3", "python")
    info = syntax._analyse_before.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_buffer_over_the_parse_limit_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syntax, "_MAX_BYTES", 10)
    with pytest.raises(LintBridgeError, match="parse limit"):
        check("x = 1\ny = 2\n<|>", "z = 3", "javascript")
