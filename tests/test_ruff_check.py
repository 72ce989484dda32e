"""Ruff check of candidate edits against the real ruff: only new diagnostics the edit causes."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lint_bridge import ruff
from lint_bridge.api import LintBridgeError, Reason, Splice
from lint_bridge.ruff import RuffDiagnostic, RuffRunner

CURSOR = "<|>"
pytestmark = pytest.mark.skipif(ruff.find_ruff() is None, reason="ruff is not installed")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with its own, fixed ruff configuration (ruff's defaults change by version)."""
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["E", "F", "W"]\n')
    (tmp_path / "pkg").mkdir()
    return tmp_path


def check(
    runner: RuffRunner,
    path: Path,
    template: str,
    text: str,
    *,
    replace: int = 0,
    module_exists: Callable[[str], bool | None] | None = None,
) -> list[Reason] | None:
    """Insert ``text`` at the cursor mark of ``template`` and return the new ruff reasons."""
    start = template.index(CURSOR)
    before = template.replace(CURSOR, "")
    splice = Splice(start, start + replace, text)
    return runner.new_diagnostics_sync(
        before, splice.apply(before), splice, path, module_exists=module_exists
    )


def codes(reasons: list[Reason] | None) -> list[str]:
    assert reasons is not None
    return [reason.code for reason in reasons]


MODULE = """\
import os


def total(items):
    count = len(items) + undefined_before
    <|>
    return count


def other():
    return os.getcwd()
"""


def test_undefined_name_in_inserted_text_is_flagged(project: Path) -> None:
    reasons = check(RuffRunner(), project / "pkg" / "m.py", MODULE, "count += no_such_name(count)")
    assert reasons == [
        Reason(
            kind="ruff",
            code="F821",
            message="Undefined name `no_such_name`",
            line=5,
            column=len("    count += "),
        )
    ]


def test_existing_diagnostics_are_not_blamed_on_the_candidate(project: Path) -> None:
    runner = RuffRunner()
    path = project / "pkg" / "m.py"
    assert check(runner, path, MODULE, "count += 1") == []
    # Lines inserted above move the existing F821 (and an F811 naming its line) down.
    template = "<|>def f():\n    pass\n\n\ndef f():\n    return undefined_before\n"
    assert check(runner, path, template, "x = 1\n") == []
    assert check(runner, path, template, "import os\n\nos.getcwd()\n\n\n") == []


def test_same_name_used_again_by_the_candidate_is_new(project: Path) -> None:
    reasons = check(RuffRunner(), project / "pkg" / "m.py", MODULE, "count += undefined_before")
    assert codes(reasons) == ["F821"]


def test_unused_variable_bound_by_the_candidate_is_unfinished_work(project: Path) -> None:
    assert check(RuffRunner(), project / "pkg" / "m.py", MODULE, "doubled = count * 2") == []


def test_unused_variable_the_edit_causes_elsewhere_is_flagged(project: Path) -> None:
    # Replacing the only use of ``count`` leaves the user's own assignment unused.
    template = "def f(items):\n    count = len(items)\n    return <|>count\n"
    reasons = check(RuffRunner(), project / "pkg" / "m.py", template, "0", replace=5)
    assert codes(reasons) == ["F841"]


@pytest.mark.parametrize(
    ("text", "exists", "expected"),
    [
        ("import json", lambda name: name == "json", []),
        ("import json", None, []),
        ("import json", lambda name: None, []),
        ("import jsonx", lambda name: False, ["F401"]),
        ("from json import loads_file", lambda name: name != "json.loads_file", ["F401"]),
    ],
)
def test_unused_import_bound_by_the_candidate(
    project: Path,
    text: str,
    exists: Callable[[str], bool | None] | None,
    expected: list[str],
) -> None:
    template = "import os\n<|>\n\n\ndef other():\n    return os.getcwd()\n"
    reasons = check(RuffRunner(), project / "m.py", template, text, module_exists=exists)
    assert codes(reasons) == expected


def test_module_exists_gets_the_dotted_name(project: Path) -> None:
    asked: list[str] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return True

    template = "import os\n<|>\n\nos.getcwd()\n"
    check(RuffRunner(), project / "m.py", template, "from json import loads", module_exists=exists)
    assert asked == ["json.loads"]


def test_syntax_error_introduced_anywhere_is_flagged(project: Path) -> None:
    reasons = check(RuffRunner(), project / "m.py", MODULE, "count = compute(count")
    assert reasons
    assert set(codes(reasons)) == {"invalid-syntax"}


BROKEN_ELSEWHERE = """\
def broken(:
    pass


def total(items):
    count = len(items)
    <|>
    return count
"""


def test_buffer_broken_elsewhere(project: Path) -> None:
    runner = RuffRunner()
    path = project / "m.py"
    assert check(runner, path, BROKEN_ELSEWHERE, "count += 1") == []
    assert set(codes(check(runner, path, BROKEN_ELSEWHERE, "count += (1"))) == {"invalid-syntax"}


def test_candidate_that_finishes_a_broken_line(project: Path) -> None:
    # Broken at the cursor, ruff reports syntax only; fixed, every diagnostic in the file appears:
    # only those in the inserted text are the candidate's.
    template = "import os\n\n\ndef f(items):\n    x = undefined_elsewhere\n    y = len(<|>\n"
    runner = RuffRunner()
    assert check(runner, project / "m.py", template, "items)") == []
    assert codes(check(runner, project / "m.py", template, "itemz)")) == ["F821"]


def test_project_config_ignoring_a_rule_is_respected(tmp_path: Path) -> None:
    runner = RuffRunner()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["F"]\n')
    (tmp_path / "ignoring").mkdir()
    (tmp_path / "ignoring" / "pyproject.toml").write_text(
        '[tool.ruff.lint]\nselect = ["F"]\nignore = ["F821"]\n'
    )
    text = "count += no_such_name"
    assert codes(check(runner, tmp_path / "plain" / "m.py", MODULE, text)) == ["F821"]
    assert check(runner, tmp_path / "ignoring" / "m.py", MODULE, text) == []


def test_project_config_selecting_rules_is_respected(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.ruff]\nline-length = 40\n"
        '[tool.ruff.lint]\nselect = ["F"]\nextend-select = ["T20", "E501"]\n'
    )
    runner = RuffRunner()
    path = tmp_path / "src" / "app" / "m.py"  # the folders need not exist
    assert codes(check(runner, path, MODULE, "print(count)")) == ["T201"]
    long_line = "count += len('a fairly long string literal here')"
    assert codes(check(runner, path, MODULE, long_line)) == ["E501"]


def test_ruff_toml_in_a_subdirectory_applies_below_it(project: Path) -> None:
    (project / "pkg" / "ruff.toml").write_text('[lint]\nselect = ["F", "T20"]\n')
    runner = RuffRunner()
    assert codes(check(runner, project / "pkg" / "m.py", MODULE, "print(count)")) == ["T201"]
    assert check(runner, project / "m.py", MODULE, "print(count)") == []


def test_file_excluded_by_the_config_is_not_linted(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.ruff]\nextend-exclude = ["generated"]\n[tool.ruff.lint]\nselect = ["F"]\n'
    )
    path = project / "generated" / "m.py"
    assert check(RuffRunner(), path, MODULE, "count += no_such_name") == []


def test_whitespace_where_the_user_goes_on_typing_is_not_blamed(project: Path) -> None:
    template = "def f(items):\n    count = len(items)\n    return count\n\n\nx = f([])\n<|>"
    runner = RuffRunner()
    # No final newline yet (W292), the next line's indentation (W293): the user types there.
    assert check(runner, project / "m.py", template, "y = x") == []
    assert check(runner, project / "m.py", template, "if x:\n    y = x\n    ") == []
    # Trailing whitespace inside the candidate is its own.
    assert codes(check(runner, project / "m.py", template, "y = x   \nz = y\n")) == ["W291"]


def test_columns_are_code_points(project: Path) -> None:
    found = asyncio.run(RuffRunner().diagnostics("s = '€😀é'; z = nope\n", project / "m.py"))
    assert [diagnostic for diagnostic in found or [] if diagnostic.code == "F821"] == [
        RuffDiagnostic(
            code="F821",
            message="Undefined name `nope`",
            line=0,
            column=len("s = '€😀é'; z = "),
            end_line=0,
            end_column=len("s = '€😀é'; z = nope"),
        )
    ]
    reasons = check(RuffRunner(), project / "m.py", "s = '€😀é'\n<|>\n", "z = nope")
    assert [(reason.line, reason.column) for reason in reasons or []] == [(1, 4)]


def counting_command(tmp_path: Path) -> tuple[list[str], Path]:
    """A command that runs the real ruff and appends one line to a file per run."""
    runs = tmp_path / "runs.txt"
    binary = ruff.find_ruff()
    assert binary is not None
    script = f'echo run >> "{runs}"; exec "{binary}" "$@"'
    return ["sh", "-c", script, "ruff"], runs


def test_before_buffer_is_linted_once_for_many_candidates(project: Path) -> None:
    command, runs = counting_command(project)
    runner = RuffRunner(command=command)
    start = MODULE.index(CURSOR)
    before = MODULE.replace(CURSOR, "")
    path = project / "m.py"

    async def three_candidates() -> list[list[Reason] | None]:
        jobs = []
        for text in ("count += 1", "count += 2", "count += nope"):
            splice = Splice(start, start, text)
            jobs.append(runner.new_diagnostics(before, splice.apply(before), splice, path))
        return await asyncio.gather(*jobs)

    results = asyncio.run(three_candidates())
    assert [codes(result) for result in results] == [[], [], ["F821"]]
    assert runs.read_text().count("run") == 4  # the buffer once, each candidate once
    check(runner, path, MODULE, "count += 1")
    assert runs.read_text().count("run") == 4  # cached in a later event loop too


def test_sync_wrapper_works_in_a_thread_without_a_loop(project: Path) -> None:
    results: list[list[Reason] | None] = []
    worker = threading.Thread(
        target=lambda: results.append(check(RuffRunner(), project / "m.py", MODULE, "nope()"))
    )
    worker.start()
    worker.join()
    assert codes(results[0]) == ["F821"]


def test_sync_wrapper_refuses_a_running_loop(project: Path) -> None:
    async def inside_a_loop() -> None:
        check(RuffRunner(), project / "m.py", MODULE, "nope()")

    with pytest.raises(LintBridgeError, match="event loop"):
        asyncio.run(inside_a_loop())


@pytest.mark.parametrize(
    ("command", "cause"),
    [
        (["sh", "-c", "sleep 5", "ruff"], "took over"),
        (["/nonexistent/bin/ruff"], "could not start"),
        (["sh", "-c", "echo this is not json", "ruff"], "no JSON report"),
        (["sh", "-c", "echo '[{\"code\": 1}]'", "ruff"], "no JSON report"),
        (["sh", "-c", "echo 'ruff: bad config' >&2; exit 2", "ruff"], "bad config"),
    ],
)
def test_failing_ruff_is_unchecked_and_warned_once(
    project: Path, caplog: pytest.LogCaptureFixture, command: list[str], cause: str
) -> None:
    runner = RuffRunner(timeout_s=0.3, command=command)
    with caplog.at_level(logging.DEBUG, logger="lint_bridge.ruff"):
        assert check(runner, project / "m.py", MODULE, "count += 1") is None
        assert check(runner, project / "m.py", MODULE, "count += 2") is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert cause in warnings[0].getMessage()


def test_missing_ruff_binary_is_unchecked(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ruff, "find_ruff", lambda: None)
    with caplog.at_level(logging.WARNING, logger="lint_bridge.ruff"):
        assert check(RuffRunner(), project / "m.py", MODULE, "count += 1") is None
    assert "not installed" in caplog.text


def test_empty_report_means_no_diagnostics(project: Path) -> None:
    runner = RuffRunner(command=["sh", "-c", "cat > /dev/null", "ruff"])
    assert check(runner, project / "m.py", MODULE, "count += nope") == []
