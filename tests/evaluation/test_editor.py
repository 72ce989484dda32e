"""``apprentice eval --trigger automatic|typed``: a real ``apprentice serve``, freshly opened
files, automatic requests, typing with cancel-previous, and what was shown scored; and which
trigger a command line gets (automatic by default, invoked for the invoked-only options).

The server runs as a subprocess; its model is the OpenAI-compatible stub of
tests/openai_stub.py (``model.remoteUrl``), answering each HumanEval hole from its prompt,
so these tests check the driver, not a model. One short run with the real model at the end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsp.evaluation import humaneval
from lsp.evaluation.driver import parse_model
from lsp.evaluation.editor import EditorOptions, jobs_for, run_editor, server_options
from lsp.evaluation.editor_session import Keystroke, typing_keystrokes
from lsp.evaluation.metrics import Score
from lsp.evaluation.report import NO_SANDBOX, EditorRow, editor_table
from lsp.evaluation.shown import ShownResult, summarize_shown
from model.training.holes import HoleTask
from model.training.sandbox import sandbox_available, sandbox_unavailable_reason
from tests.openai_stub import CompletionStub, running_stub

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS = humaneval.load("humaneval-single", limit=3, seed=0)
WRONG = TASKS[2].task_id  # the stub answers this one wrongly
needs_sandbox = pytest.mark.skipif(
    not sandbox_available(), reason=f"pass@1 needs the sandbox: {sandbox_unavailable_reason()}"
)


def test_typing_fixes_the_indentation_as_keys_do_then_types_each_character() -> None:
    assert typing_keystrokes(10, "    ", "    x = ") == [
        Keystroke(14, 14, "x"),
        Keystroke(15, 15, " "),
        Keystroke(16, 16, "="),
        Keystroke(17, 17, " "),
    ]
    # Backspace in leading whitespace deletes a level; Tab adds one.
    assert typing_keystrokes(0, "        ", "    y")[0] == Keystroke(4, 8, "")
    assert typing_keystrokes(0, "    ", "        y")[:2] == [
        Keystroke(4, 4, "    "),
        Keystroke(8, 8, "y"),
    ]
    # Anything else is one edit of the whole indentation.
    assert typing_keystrokes(0, "    ", "  z")[0] == Keystroke(0, 4, "  ")
    assert typing_keystrokes(0, "    ", "    ") == []


def test_server_options_name_the_model_as_the_server_reads_it(tmp_path: Path) -> None:
    index = tmp_path / "index"
    default = server_options(
        parse_model("default", n_threads=2),
        index_dir=index,
        index=False,
        embed=True,
        n_threads=None,
    )
    assert default == {"index": {"location": str(index), "enabled": False}}
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    local = server_options(
        parse_model(f"{gguf}+lora.gguf", n_threads=None),
        index_dir=index,
        index=True,
        embed=False,
        n_threads=3,
    )
    assert local["model"] == {"path": str(gguf), "lora": "lora.gguf", "threads": 3}
    assert local["index"] == {"location": str(index), "embeddings": False}
    remote = server_options(
        parse_model("t=http://127.0.0.1:9/v1#big", n_threads=None),
        index_dir=index,
        index=True,
        embed=True,
        n_threads=None,
    )
    assert remote["model"] == {"remoteUrl": "http://127.0.0.1:9/v1", "remoteModel": "big"}
    named = server_options(
        parse_model("student", n_threads=None),
        index_dir=index,
        index=False,
        embed=True,
        n_threads=None,
    )
    assert named["model"] == {"path": "student"}
    assert "completion" not in named  # the server's own minConfidence unless one is asked
    held = server_options(
        parse_model("default", n_threads=None),
        index_dir=index,
        index=False,
        embed=True,
        n_threads=None,
        min_confidence=0.3,
    )
    assert held["completion"] == {"minConfidence": 0.3}


def test_jobs_typed_takes_whole_line_holes_and_automatic_the_asked_placements() -> None:
    inside = HoleTask("t", "a.py", "x = f(1)\n", start=6, end=7, kind="call")
    line = TASKS[0]
    assert jobs_for([inside, line], "typed", ["empty"]) == {"typed": [line]}
    assert jobs_for([inside, line], "automatic", ["empty", "indent"]) == {
        "cursor": [inside],
        "empty": [line],
        "indent": [line],
    }


def _result(outcome: str, passed: bool, ms: float | None) -> ShownResult:
    similarity = 1.0 if passed else 0.5
    score = Score(passed, similarity, 1.0, empty=outcome != "items", passed=passed)
    return ShownResult("t", "humaneval-single", "empty", outcome, "x", 0, score, ms)


def test_summary_and_table_count_shown_right_when_shown_and_time_to_show() -> None:
    results = [
        _result("items", True, 100.0),
        _result("items", False, 300.0),
        _result("empty", False, 50.0),
        _result("timeout", False, None),
    ]
    s = summarize_shown(results)
    assert (s.tasks, s.shown, s.pass_at_1, s.right_when_shown) == (4, 0.5, 0.25, 0.5)
    assert (s.show_p50_ms, s.show_p95_ms) == (100.0, 300.0)  # over shown answers only
    assert (s.empty, s.timeouts, s.errors) == (1, 1, 0)
    table = editor_table([EditorRow("m", "automatic", "empty", 3.0, s)])
    head = table.splitlines()[0]
    for column in ("shown", "right when shown", "show p50 ms", "show p95 ms", "timeouts"):
        assert f"| {column} |" in head
    assert (
        "| m | automatic | empty | 3 | 4 | 0.50 | 0.25 | 0.25 | 0.62 | 0.50 | 100 | 300 |" in table
    )
    assert NO_SANDBOX not in table
    # No sandbox to run the tests: pass@1 reads n/a, and a line under the table says why.
    unmeasured = editor_table([EditorRow("m", "automatic", "empty", 3.0, s, no_sandbox=True)])
    assert "| m | automatic | empty | 3 | 4 | 0.50 | n/a | 0.25 |" in unmeasured
    assert unmeasured.endswith("\n" + NO_SANDBOX)


def test_the_callee_counts_over_cross_file_holes_and_only_what_was_shown() -> None:
    def hole(outcome: str, named: bool | None, cross_file: bool) -> ShownResult:
        score = Score(False, 0.5, 0.5, empty=outcome != "items", callee_named=named)
        return ShownResult(
            "t", "call", "cursor", outcome, "x", 0, score, 1.0, cross_file=cross_file
        )

    results = [
        hole("items", True, True),
        hole("items", False, True),
        hole("empty", True, True),  # the right callee, but nothing was shown
        hole("items", True, False),  # the callee is in the hole's own file
        hole("items", None, False),
    ]
    s = summarize_shown(results)
    assert s.callee_named == pytest.approx(1 / 3)
    assert editor_table([EditorRow("m", "automatic", "cursor", 0.0, s)]).endswith("| 0.33 |")
    assert summarize_shown(results[3:]).callee_named is None


def _answer_for(prompt: str) -> str:
    """The hole's line (the rest of it after what is typed), or a wrong line for WRONG."""
    for task in TASKS:
        if task.original[: task.start][-150:] in prompt:
            answer = task.answer.rstrip("\n")
            if task.task_id == WRONG:
                answer = answer[: len(answer) - len(answer.lstrip())] + "return None"
            typed = prompt.rsplit("\n", 1)[-1]
            return answer[len(typed) :] if answer.startswith(typed) else answer
    return "pass"


@pytest.fixture
def stub() -> Iterator[CompletionStub]:
    with running_stub() as server:
        server.answer_for = _answer_for
        yield server


def _trigger(*argv: str) -> str:
    """The trigger ``apprentice eval ARGV`` runs with (nothing is run)."""
    from lsp.cli import build_parser
    from lsp.cli.evaluate import choose_trigger

    return choose_trigger(build_parser().parse_args(["eval", *argv]))


def test_no_trigger_is_automatic_unless_an_invoked_only_option_asks_for_the_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _trigger() == "automatic"
    assert _trigger("--placement", "indent", "--delay", "0", "--suite", "repo") == "automatic"
    assert capsys.readouterr().err == ""
    invoked_only = {
        "--ablations": [],
        "--with-lever": ["suffix_names"],
        "--without-lever": ["line_start"],
        "--as-typed": [],
        "--candidates": ["2"],  # the default value, given: still the invoked path's option
        "--verification": ["0"],
    }
    for flag, values in invoked_only.items():
        assert _trigger(flag, *values) == "invoked", flag
        said = capsys.readouterr().err
        assert said == f"{flag} measures the pipeline directly: --trigger invoked\n"
    # An explicit trigger is taken as it is, and says nothing.
    assert _trigger("--trigger", "invoked", "--ablations") == "invoked"
    assert _trigger("--trigger", "typed") == "typed"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("trigger", ["automatic", "typed"])
def test_an_editor_trigger_with_an_invoked_only_option_is_refused_in_one_line(
    trigger: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsp.cli import main

    assert main(["eval", "--trigger", trigger, "--ablations", "--limit", "1"]) == 1
    err = capsys.readouterr().err
    assert err == "apprentice: --ablations applies to --trigger invoked only\n"
    assert main(["eval", "--trigger", trigger, "--candidates", "2"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "apprentice: --candidates applies to --trigger invoked only"
    ]


def test_min_confidence_is_an_editor_option_between_0_and_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lsp.cli import main

    # An explicit request shows its best candidate whatever its confidence: the invoked
    # run's operating points come from --confidence-curve instead.
    assert main(["eval", "--trigger", "invoked", "--min-confidence", "0.3"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "--min-confidence applies to --trigger automatic or typed" in line
    assert "--confidence-curve" in line
    with pytest.raises(SystemExit):
        main(["eval", "--min-confidence", "1.5"])
    assert "1.5 is outside 0..1" in capsys.readouterr().err


def test_the_typed_placement_without_a_trigger_names_both_runs_that_have_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lsp.cli import main

    # Invoked places the characters in the buffer; the typed trigger types them: the
    # default (automatic) has neither, and guessing which one was meant would surprise.
    assert main(["eval", "--placement", "typed"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "--trigger typed" in line and "--trigger invoked" in line


@pytest.mark.timeout(300)
@needs_sandbox
def test_automatic_through_the_cli_opens_fresh_files_and_scores_what_is_shown(
    stub: CompletionStub, lsp_server: object
) -> None:
    # No --trigger: automatic is the default.
    command = [sys.executable, "-m", "lsp.cli", "eval", "--json"]
    options = ["--limit", "3", "--model", f"stub={stub.url}", "--delay", "0", "--delay", "0.5"]
    options += ["--placement", "empty", "--placement", "indent"]
    done = subprocess.run(
        [*command, *options], capture_output=True, text=True, timeout=240, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["trigger"] == "automatic" and data["tasks"] == 3
    rows = {(r["placement"], r["delay_s"]): r for r in data["rows"]}
    assert set(rows) == {("empty", 0.0), ("empty", 0.5), ("indent", 0.0), ("indent", 0.5)}
    for row in rows.values():
        assert row["trigger"] == "automatic" and row["tasks"] == 3
        assert row["shown"] == 1.0 and row["timeouts"] == 0 and row["errors"] == 0
        assert row["pass_at_1"] == pytest.approx(2 / 3, abs=1e-3)
        assert row["right_when_shown"] == pytest.approx(2 / 3, abs=1e-3)
        assert row["show_p50_ms"] > 0
    results = data["results"]
    assert len({r["path"] for r in results}) == len(results) == 12  # a new file every time
    assert all(r["passed"] == (r["task_id"] != WRONG) for r in results)
    # After auto-indent a dedented line is suggested from the line's start: the item's
    # range covers the indentation before the cursor, and the applied line passes.
    assert any(r["placement"] == "indent" and r["replaced"] > 0 and r["passed"] for r in results)
    # Automatic requests: the stub saw one request per task, nothing invoked twice.
    assert len(stub.prompts) >= 12


@pytest.mark.timeout(300)
def test_an_invoked_only_option_runs_the_pipeline_directly_and_says_so(
    stub: CompletionStub,
) -> None:
    command = [sys.executable, "-m", "lsp.cli", "eval", "--candidates", "1", "--json"]
    options = ["--limit", "2", "--placement", "empty", "--model", f"stub={stub.url}"]
    done = subprocess.run(
        [*command, *options], capture_output=True, text=True, timeout=240, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "--candidates measures the pipeline directly: --trigger invoked\n" in done.stderr
    data = json.loads(done.stdout)
    assert data["trigger"] == "invoked" and data["tasks"] == 2
    (row,) = data["rows"]
    assert (row["variant"], row["placement"], row["tasks"]) == ("default pipeline", "empty", 2)
    assert "delay_s" not in row and "latency_p50_ms" in row  # the invoked table, not shown rates


@pytest.mark.timeout(300)
def test_each_min_confidence_is_a_server_run_and_a_row_on_the_same_tasks(
    stub: CompletionStub, lsp_server: object
) -> None:
    options = EditorOptions(
        models=[parse_model(f"stub={stub.url}", n_threads=None)],
        limit=2,
        delays=(0.0,),
        min_confidences=(0.0, 1.0),
    )
    run = run_editor(options)
    rows = {row.model: row for row in run.rows}
    assert set(rows) == {"stub · minConfidence 0", "stub · minConfidence 1"}
    # The stub, like any remote server, reports no token log-probabilities: its
    # suggestions are never held, whatever the threshold (lsp.core.choose).
    assert rows["stub · minConfidence 0"].summary.shown == 1.0
    assert rows["stub · minConfidence 1"].summary.shown == 1.0


@pytest.mark.timeout(300)
@needs_sandbox
def test_typed_sends_a_keystroke_at_a_time_cancels_the_previous_request_and_scores_the_pause(
    stub: CompletionStub, lsp_server: object
) -> None:
    stub.delay_s = 0.3  # slower than a keystroke: each request is pending at the next one
    options = EditorOptions(
        trigger="typed",
        models=[parse_model(f"stub={stub.url}", n_threads=None)],
        limit=2,
        delays=(0.0,),
    )
    run = run_editor(options)
    (results,) = run.results.values()
    assert [r.task_id for r in results] == [t.task_id for t in TASKS[:2]]
    for result, task in zip(results, TASKS, strict=False):
        line = task.answer.split("\n")[0].rstrip()
        assert result.requests >= 2, "one request per keystroke"
        # Each request takes 0.3 s, a keystroke comes every 0.125 s: the earlier ones were
        # still pending (a busy machine may delay a keystroke past an answer now and then).
        assert 1 <= result.cancels_sent <= result.requests - 1
        assert result.shown and result.score.passed
        # The suggestion is the rest of the line after what was typed.
        assert line.endswith(result.suggestion or "-")
        assert result.time_to_show_ms is not None and result.time_to_show_ms >= 300
    (row,) = run.rows
    assert (row.trigger, row.placement, row.delay_s) == ("typed", "typed", 0.0)
    assert row.summary.cancels_sent == sum(r.cancels_sent for r in results)
    assert "| stub | typed | typed | 0 | 2 | 1.00 | 1.00 |" in editor_table(run.rows)


@pytest.mark.timeout(300)
def test_a_server_that_cannot_load_its_model_fails_the_run_with_its_log(
    tmp_path: Path, lsp_server: object
) -> None:
    missing = tmp_path / "missing.gguf"
    command = [sys.executable, "-m", "lsp.cli", "eval", "--trigger", "automatic", "--limit", "1"]
    done = subprocess.run(
        [*command, "--model", str(missing), "--delay", "0"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 2
    assert "server log:" in done.stderr and "server stderr" in done.stderr


@pytest.mark.timeout(300)
def test_automatic_with_the_real_model(gemma_path: Path, lsp_server: object) -> None:
    command = [sys.executable, "-m", "lsp.cli", "eval", "--trigger", "automatic", "--json"]
    done = subprocess.run(
        [*command, "--limit", "2", "--delay", "0"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (row,) = data["rows"]
    assert row["tasks"] == 2 and row["errors"] == 0 and row["delay_s"] == 0.0
    assert row["empty"] + row["timeouts"] + round(row["shown"] * 2) == 2


def _children(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[1] == str(parent):
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(300)
def test_ctrl_c_shuts_the_server_down(stub: CompletionStub, lsp_server: object) -> None:
    command = [sys.executable, "-m", "lsp.cli", "eval", "--trigger", "automatic", "--limit", "3"]
    run = subprocess.Popen(
        [*command, "--delay", "5", "--model", stub.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 120
    while not stub.prompts and time.monotonic() < deadline:  # the server is up: it warms
        time.sleep(0.05)
    server = _children(run.pid)
    assert server, "the server is a child of the run"
    everything = server + [pid for parent in server for pid in _children(parent)]
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1 and "interrupted" in err
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in everything if _running(pid)], "the server and its workers exit"
