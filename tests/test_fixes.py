"""Fixes for ruff diagnostics: ruff's own fixes, statement spans, fix verification, model fixes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lint_bridge import ruff
from lint_bridge.api import Document, LintBridgeError, Splice
from lint_bridge.fixes import FixVerdict, replacement_span, statement_span, verify_fix
from lint_bridge.ruff import RuffDiagnostic, RuffEdit, RuffFix, RuffRunner, _parse_output
from lint_bridge.verify import Verifier
from lsp.core.fixing import (
    FixPipeline,
    FixSettings,
    ProposedFix,
    find_target,
    fix_offers,
    ruff_fix_title,
)
from model.runtime.api import CancelToken, ModelInfo, SpecialToken, render_prompt
from model.runtime.fake import FakeBackend

needs_ruff = pytest.mark.skipif(ruff.find_ruff() is None, reason="ruff is not installed")

NESTED = """\
import os


def load(path, strict):
    data = read(
        path,
        strict,
    )
    if data == None:
        raise ValueError(path)
    else:
        return data

    # a comment
    return os.sep
"""

BARE_EXCEPT = """\
def load(path):
    try:
        return open(path).read()
    except:
        return None
    finally:
        pass
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with its own, fixed ruff configuration (ruff's defaults change by version)."""
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["E", "F", "W"]\n')
    return tmp_path


@pytest.fixture
def verifier(project: Path) -> Verifier:
    return Verifier(workspace_root=project)


def lint(runner: RuffRunner, text: str, path: Path) -> list[RuffDiagnostic]:
    found = asyncio.run(runner.diagnostics(text, path))
    assert found is not None
    return found


def only(diagnostics: list[RuffDiagnostic], code: str) -> RuffDiagnostic:
    matching = [d for d in diagnostics if d.code == code]
    assert len(matching) == 1, diagnostics
    return matching[0]


def span_text(text: str, span: tuple[int, int]) -> str:
    return text[span[0] : span[1]]


# --- ruff's own fixes ----------------------------------------------------------------------


@needs_ruff
def test_ruff_reports_its_fixes_with_their_applicability(project: Path) -> None:
    text = "import os\nimport sys\n\nif sys.argv == None:\n    l = 1\n"
    path = project / "m.py"
    path.write_text(text)
    found = lint(RuffRunner(), text, path)
    unused = only(found, "F401")
    assert unused.fix is not None and unused.fix.applicability == "safe"
    assert unused.fix.offered and not unused.fix.unsafe
    assert unused.fix.apply(text) == "import sys\n\nif sys.argv == None:\n    l = 1\n"
    none_test = only(found, "E711")
    assert none_test.fix is not None and none_test.fix.unsafe and none_test.fix.offered
    assert none_test.fix.apply(text).splitlines()[3] == "if sys.argv is None:"
    assert only(found, "E741").fix is None
    # Ruff lints stdin with --no-fix: the file on disk is never touched.
    assert path.read_text() == text


@needs_ruff
def test_fix_columns_are_code_points(project: Path) -> None:
    text = 'name = "ééé"\nif name == None:\n    pass\n'
    found = lint(RuffRunner(), text, project / "m.py")
    fix = only(found, "E711").fix
    assert fix is not None
    assert fix.apply(text) == 'name = "ééé"\nif name is None:\n    pass\n'
    assert only(found, "E711").offsets(text)[0] == text.index("None")


def test_a_fix_of_several_edits_becomes_one_splice() -> None:
    text = "a = 1\nb = 2\nc = 3\n"
    fix = RuffFix(
        message="rename",
        applicability="safe",
        edits=(RuffEdit(2, 0, 2, 1, "z"), RuffEdit(0, 0, 0, 1, "x")),
    )
    assert [s.start for s in fix.splices(text)] == [0, 12]
    merged = fix.as_splice(text)
    assert (merged.start, merged.end) == (0, 13)
    assert merged.apply(text) == fix.apply(text) == "x = 1\nb = 2\nz = 3\n"


def test_overlapping_edits_are_refused() -> None:
    fix = RuffFix("bad", "safe", (RuffEdit(0, 0, 0, 3, "x"), RuffEdit(0, 2, 0, 4, "y")))
    with pytest.raises(LintBridgeError):
        fix.apply("abcdef")


def test_fix_parsing_tolerates_old_and_odd_reports() -> None:
    location = {"row": 1, "column": 1}
    report = [
        {
            "code": "F401",
            "message": "`os` imported but unused",
            "location": location,
            "end_location": location,
            "fix": {
                "applicability": "Automatic",
                "message": None,
                "edits": [{"content": "", "location": location, "end_location": location}],
            },
        },
        {
            "code": "E501",
            "message": "Line too long",
            "location": location,
            "end_location": location,
            "fix": {"applicability": "display-only", "message": "m", "edits": "nonsense"},
        },
        {
            "code": "X1",
            "message": "shown only",
            "location": location,
            "end_location": location,
            "fix": {"applicability": "display-only", "message": "m", "edits": []},
        },
    ]
    parsed = _parse_output(json.dumps(report).encode())
    assert parsed is not None and len(parsed) == 3
    old, odd, shown = parsed
    assert old.fix is not None and old.fix.applicability == "safe" and old.fix.message
    assert odd.fix is None  # a fix we cannot read costs the fix, not the diagnostic
    assert shown.fix is not None and not shown.fix.offered


# --- statement spans -----------------------------------------------------------------------


def test_statement_inside_a_function_is_its_own_lines() -> None:
    line = NESTED.splitlines().index("        raise ValueError(path)")
    assert (
        span_text(NESTED, statement_span(NESTED, "python", line))
        == "        raise ValueError(path)"
    )


def test_any_line_of_a_multiline_call_gives_the_whole_statement() -> None:
    whole = "    data = read(\n        path,\n        strict,\n    )"
    for line in (4, 5, 7):
        assert span_text(NESTED, statement_span(NESTED, "python", line)) == whole


def test_if_header_gives_the_whole_block_and_replacement_its_own_clause() -> None:
    line = NESTED.splitlines().index("    if data == None:")
    whole = span_text(NESTED, statement_span(NESTED, "python", line))
    assert (
        whole
        == "    if data == None:\n        raise ValueError(path)\n    else:\n        return data"
    )
    clause = span_text(NESTED, replacement_span(NESTED, "python", line))
    assert clause == "    if data == None:\n        raise ValueError(path)"
    else_clause = span_text(NESTED, replacement_span(NESTED, "python", line + 2))
    assert else_clause == "    else:\n        return data"


def test_except_clause_and_decorator_are_replaced_alone() -> None:
    except_line = BARE_EXCEPT.splitlines().index("    except:")
    span = replacement_span(BARE_EXCEPT, "python", except_line)
    assert span_text(BARE_EXCEPT, span) == "    except:\n        return None"
    decorated = "@cache(\n    size=1,\n)\ndef f():\n    return 1\n"
    assert (
        span_text(decorated, replacement_span(decorated, "python", 1)) == "@cache(\n    size=1,\n)"
    )
    assert span_text(decorated, statement_span(decorated, "python", 1)) == decorated.rstrip("\n")


def test_blank_comment_and_unparsed_lines_fall_back_to_the_line() -> None:
    lines = NESTED.splitlines()
    comment = lines.index("    # a comment")
    assert span_text(NESTED, statement_span(NESTED, "python", comment)) == "    # a comment"
    assert statement_span(NESTED, "python", comment - 1) == (NESTED.index("\n\n    #") + 1,) * 2
    ruby = "def f\n  x = [\n    1]\nend\n"
    assert span_text(ruby, statement_span(ruby, "ruby", 1)) == "  x = ["


def test_other_grammars_and_line_endings() -> None:
    js = "function f(a) {\n  const x = g(\n    a);\n  return x;\n}\n"
    assert span_text(js, statement_span(js, "javascript", 2)) == "  const x = g(\n    a);"
    crlf = "a = 1\r\nb = f(\r\n    2)\r\n"
    assert span_text(crlf, statement_span(crlf, "python", 2)) == "b = f(\r\n    2)"


# --- verifying a fix -----------------------------------------------------------------------


def check(verifier: Verifier, doc: Document, splice: Splice, target: RuffDiagnostic) -> FixVerdict:
    return asyncio.run(verify_fix(verifier, doc, splice, target))


def bare_except(project: Path, verifier: Verifier) -> tuple[Document, RuffDiagnostic, Splice]:
    doc = Document(project / "m.py", BARE_EXCEPT, "python")
    target = only(lint(verifier.ruff, BARE_EXCEPT, doc.path), "E722")
    start = BARE_EXCEPT.index("    except:")
    return doc, target, Splice(start, start + len("    except:"), "")


@needs_ruff
def test_ruff_fix_verifies(project: Path, verifier: Verifier) -> None:
    text = "import os\nimport sys\n\nprint(sys.argv)\n"
    doc = Document(project / "m.py", text, "python")
    target = only(lint(verifier.ruff, text, doc.path), "F401")
    assert target.fix is not None
    assert check(verifier, doc, target.fix.as_splice(text), target).ok


@needs_ruff
def test_a_real_fix_is_accepted(project: Path, verifier: Verifier) -> None:
    doc, target, region = bare_except(project, verifier)
    verdict = check(verifier, doc, Splice(region.start, region.end, "    except OSError:"), target)
    assert verdict == FixVerdict(True, [], [])


@needs_ruff
def test_a_fix_that_leaves_the_diagnostic_is_rejected(project: Path, verifier: Verifier) -> None:
    doc, target, region = bare_except(project, verifier)
    verdict = check(verifier, doc, Splice(region.start, region.end, "    except :"), target)
    assert not verdict.ok
    assert any("E722" in reason and "still reported" in reason for reason in verdict.reasons)


@needs_ruff
def test_a_fix_that_adds_a_diagnostic_is_rejected(project: Path, verifier: Verifier) -> None:
    doc, target, region = bare_except(project, verifier)
    # An unused name is excused mid-edit for completions, never in a finished fix.
    splice = Splice(region.start, region.end, "    except Exception as error:")
    verdict = check(verifier, doc, splice, target)
    assert not verdict.ok and any("F841" in reason for reason in verdict.reasons)


@needs_ruff
def test_a_fix_that_breaks_the_syntax_or_names_is_rejected(
    project: Path, verifier: Verifier
) -> None:
    doc, target, region = bare_except(project, verifier)
    broken = check(verifier, doc, Splice(region.start, region.end, "    except OSError"), target)
    assert not broken.ok
    unknown = Splice(region.start, region.end, "    except NoSuchError:")
    assert not check(verifier, doc, unknown, target).ok


@needs_ruff
def test_an_edit_elsewhere_is_judged_where_the_target_moved(
    project: Path, verifier: Verifier
) -> None:
    text = "def dump(value):\n    return json.dumps(value)\n"
    doc = Document(project / "m.py", text, "python")
    target = only(lint(verifier.ruff, text, doc.path), "F821")
    assert check(verifier, doc, Splice(0, 0, "import json\n\n\n"), target).ok
    moved = check(verifier, doc, Splice(0, 0, "# json\n"), target)
    assert not moved.ok and "still reported" in moved.reasons[0]


@needs_ruff
def test_a_stale_target_is_rejected(project: Path, verifier: Verifier) -> None:
    doc, target, region = bare_except(project, verifier)
    elsewhere = RuffDiagnostic("E722", target.message, 0, 0, 0, 1)
    verdict = check(
        verifier, doc, Splice(region.start, region.end, "    except OSError:"), elsewhere
    )
    assert not verdict.ok and "not reported" in verdict.reasons[0]


# --- the model fix pipeline ----------------------------------------------------------------


def scripted(*answers: str, info: ModelInfo | None = None) -> FakeBackend:
    replies: Iterator[str] = iter(answers)
    backend = FakeBackend(respond=lambda prompt: next(replies, "pass"))
    if info is not None:
        backend.info_value = info
    return backend


def propose_bare_except(
    project: Path, verifier: Verifier, backend: FakeBackend, cancel: CancelToken | None = None
) -> tuple[Document, ProposedFix | None]:
    doc = Document(project / "m.py", BARE_EXCEPT, "python")
    target = only(lint(verifier.ruff, BARE_EXCEPT, doc.path), "E722")
    settings = FixSettings(candidates=3)
    return doc, FixPipeline(backend, verifier, settings).propose(doc, target, cancel)


@needs_ruff
def test_a_correct_answer_is_proposed(project: Path, verifier: Verifier) -> None:
    backend = scripted("except OSError:\n        return None\n    finally:\n        pass\n")
    doc, fix = propose_bare_except(project, verifier, backend)
    assert fix is not None and fix.verdict.ok and fix.candidates == 1
    assert fix.new_text == "    except OSError:\n        return None"
    assert fix.title.startswith("Apprentice: fix E722")
    fixed = fix.splice.apply(doc.text)
    assert "    except OSError:\n        return None\n    finally:" in fixed
    prompt = render_prompt(backend.requests[0].prompt)
    # The hint names the diagnostic, quotes the statement and ends where the fix goes.
    assert "E722" in prompt and "#     except:" in prompt
    assert prompt.endswith("\n    ")
    assert backend.requests[0].temperature == 0.0


@needs_ruff
def test_a_wrong_answer_then_a_correct_one_gives_the_second(
    project: Path, verifier: Verifier
) -> None:
    backend = scripted(
        "except:\n        return 0\n",
        # The model echoes the hint before the code: the hint never reaches the file.
        "# Ruff E722: Do not use bare `except`\n    except (OSError, ValueError):\n"
        "        return None\n",
    )
    _, fix = propose_bare_except(project, verifier, backend)
    assert fix is not None and fix.candidates == 2
    assert fix.new_text == "    except (OSError, ValueError):\n        return None"
    assert backend.requests[1].temperature > 0  # the second candidate is sampled


@needs_ruff
def test_only_wrong_answers_give_nothing(project: Path, verifier: Verifier) -> None:
    backend = scripted(
        "except:\n        return None\n",
        "except Exception as error:\n        return None\n",
        "except NoSuchError:\n        return None\n",
    )
    _, fix = propose_bare_except(project, verifier, backend)
    assert fix is None
    assert len(backend.requests) == 3


@needs_ruff
def test_cancelled_or_stale_requests_do_not_ask_the_model(
    project: Path, verifier: Verifier
) -> None:
    cancel = CancelToken()
    cancel.cancel()
    backend = scripted("except OSError:\n        return None\n")
    _, fix = propose_bare_except(project, verifier, backend, cancel=cancel)
    assert fix is None and not backend.requests
    doc = Document(project / "m.py", BARE_EXCEPT, "python")
    gone = RuffDiagnostic("E722", "Do not use bare `except`", 1, 4, 1, 10)
    assert FixPipeline(backend, verifier).propose(doc, gone) is None
    assert not backend.requests


@needs_ruff
def test_a_generation_cut_at_the_token_limit_is_not_offered(
    project: Path, verifier: Verifier
) -> None:
    # A body cut short still parses and lints clean: only the token limit tells it is cut.
    body = "".join(f"        print({i})\n" for i in range(50))
    backend = scripted("except OSError:\n" + body)
    settings = FixSettings(candidates=1, max_tokens=8, min_tokens=8)
    doc = Document(project / "m.py", BARE_EXCEPT, "python")
    target = only(lint(verifier.ruff, BARE_EXCEPT, doc.path), "E722")
    assert FixPipeline(backend, verifier, settings).propose(doc, target) is None
    assert backend.requests[0].max_tokens == 8
    whole = scripted("except OSError:\n" + "".join(f"        print({i})\n" for i in range(3)))
    assert FixPipeline(whole, verifier, settings).propose(doc, target) is not None


@needs_ruff
def test_fim_models_get_the_code_after_the_statement(project: Path, verifier: Verifier) -> None:
    qwen = frozenset({"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"})
    backend = scripted(
        "except OSError:\n        return None", info=ModelInfo(name="qwen", special_tokens=qwen)
    )
    _, fix = propose_bare_except(project, verifier, backend)
    assert fix is not None
    parts = backend.requests[0].prompt
    assert SpecialToken("<|fim_middle|>") in parts
    suffix = parts[parts.index(SpecialToken("<|fim_suffix|>")) + 1]
    assert isinstance(suffix, str) and suffix.startswith("\n    finally:")


# --- listing actions -----------------------------------------------------------------------


def test_offers_prefer_ruffs_fix_and_round_trip_their_data() -> None:
    safe = RuffFix("Remove unused import: `os`", "safe", (RuffEdit(0, 0, 1, 0, ""),))
    unsafe = RuffFix("Replace with `cond is None`", "unsafe", (RuffEdit(3, 3, 3, 10, "x"),))
    diagnostics = [
        RuffDiagnostic("F401", "`os` imported but unused", 0, 7, 0, 9, safe),
        RuffDiagnostic("E711", "Comparison to `None`", 3, 8, 3, 12, unsafe),
        RuffDiagnostic("E722", "Do not use bare `except`", 5, 4, 5, 10),
        RuffDiagnostic("E501", "Line too long", 9, 100, 9, 120),
    ]
    offers = fix_offers(diagnostics, 0, 5)
    assert [(o.kind, o.target.code) for o in offers] == [
        ("ruff", "F401"),
        ("ruff", "E711"),
        ("apprentice", "E722"),
    ]
    assert offers[0].title == "Ruff: Remove unused import: `os`"
    assert ruff_fix_title(unsafe) == "Ruff: Replace with `cond is None` (unsafe)"
    assert offers[2].title == "Apprentice: fix E722 (Do not use bare `except`)"
    data = json.loads(json.dumps(offers[2].data()))
    assert find_target(diagnostics, data) == diagnostics[2]
    assert find_target(diagnostics[:2], data) is None


# --- the real model ------------------------------------------------------------------------


@needs_ruff
def test_real_model_fix_is_none_or_verified(
    gemma_path: Path, project: Path, verifier: Verifier
) -> None:
    from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend

    backend = LlamaCppBackend(LlamaConfig(model_path=gemma_path, n_ctx=2048, n_threads=2))
    try:
        doc = Document(project / "m.py", BARE_EXCEPT, "python")
        target = only(lint(verifier.ruff, BARE_EXCEPT, doc.path), "E722")
        settings = FixSettings(candidates=2, timeout_s=60.0)
        fix = FixPipeline(backend, verifier, settings).propose(doc, target)
    finally:
        backend.close()
    if fix is not None:
        assert check(verifier, doc, fix.splice, target).ok
        fixed = lint(verifier.ruff, fix.splice.apply(doc.text), doc.path)
        assert not any(d.code == "E722" for d in fixed)
