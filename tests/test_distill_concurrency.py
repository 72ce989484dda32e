"""apprentice distill --concurrency: requests in flight at once, the same dataset whatever
the concurrency, the run-wide rate limit, stopping on Ctrl-C or a failing teacher, resume.

The teacher is the stub OpenAI server on 127.0.0.1 (tests/openai_stub.py); its answers go
through ``Gate``, which counts requests in flight and can hold them until a test says so,
so nothing here depends on timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model.checkpoints.spec import TEACHER, parse_model_spec
from model.runtime.api import ModelInfo
from model.runtime.fake import FakeBackend
from model.runtime.remote import RemoteBackend
from model.training.distill.checks import can_execute
from model.training.distill.dataset import CARD_JSON, HELDOUT_FILE, TRAIN_FILE
from model.training.distill.pool import TaskPool
from model.training.distill.progress import DistillProgress
from model.training.distill.run import PROGRESS_DIR, DistillSettings, distill
from model.training.distill.tasks import TaskLimits
from model.training.distill.teacher import RateLimiter, Teacher, TeacherSettings
from tests.openai_stub import CompletionStub, running_stub
from tests.test_distill import CALC, CALC_TEST, MIT, PRICES, STOCK, make_repo

ANSWERS = ("amount\n", "value * 2\n", "level\n", "round(total, 2)\n", "sku\n")
HOLD_S = 20.0  # how long a held request waits at most (a test that breaks fails, not hangs)


class Gate:
    """The stub's answer to each prompt: numbers and counts the requests in flight, and holds
    request number n while ``hold(gate, n)`` is true, or until one has waited ``HOLD_S``
    (then it holds nothing more: the test fails instead of hanging). Answers depend on the
    prompt only."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.in_flight = 0
        self.max_in_flight = 0
        self.count = 0
        self.timed_out = False
        self.hold: Callable[[Gate, int], bool] = lambda gate, number: False
        self.on_request: Callable[[Gate], None] = lambda gate: None

    def __call__(self, prompt: str) -> str:
        with self.cond:
            self.count += 1
            number = self.count
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.on_request(self)
            self.cond.notify_all()
            if not self.cond.wait_for(
                lambda: self.timed_out or not self.hold(self, number), timeout=HOLD_S
            ):
                self.timed_out = True
            self.in_flight -= 1
            self.cond.notify_all()
        digest = hashlib.sha256(prompt.encode()).digest()
        return ANSWERS[digest[0] % len(ANSWERS)]

    def release(self) -> None:
        """Hold nothing any more."""
        with self.cond:
            self.hold = lambda gate, number: False
            self.cond.notify_all()

    def changed(self) -> None:
        """Wake held requests to look at ``hold`` again."""
        with self.cond:
            self.cond.notify_all()


@pytest.fixture
def stub() -> Iterator[tuple[CompletionStub, Gate]]:
    gate = Gate()
    with running_stub() as server:
        server.answer_for = gate
        try:
            yield server, gate
        finally:
            gate.release()  # let held handlers end


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "shop",
        {"LICENSE": MIT, "shop/prices.py": PRICES, "shop/stock.py": STOCK},
    )


def settings(**overrides: Any) -> DistillSettings:
    values: dict[str, Any] = {"limits": TaskLimits(holes=4, fix=2), "run_tests": False}
    values.update(overrides)
    return DistillSettings(**values)


def remote_teacher(server: CompletionStub, k: int = 2) -> Teacher:
    backend = RemoteBackend(server.url, read_timeout=HOLD_S + 10, request_timeout=HOLD_S + 10)
    return Teacher(backend, "stub", TeacherSettings(k=k, timeout_s=HOLD_S + 10, backoff_s=0.0))


def dataset_files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in (TRAIN_FILE, HELDOUT_FILE, CARD_JSON)}


def saved_records(out: Path) -> list[dict[str, Any]]:
    lines = (out / PROGRESS_DIR / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def run(repo: Path, out: Path, teacher: Teacher, concurrency: int, **kwargs: Any) -> dict[str, Any]:
    try:
        return distill([repo], out, teacher, settings(), concurrency=concurrency, **kwargs)
    finally:
        teacher.backend.close()


# -- requests in flight -----------------------------------------------------------------------


def test_four_at_once_keeps_four_requests_in_flight_and_shows_them(
    repo: Path, stub: tuple[CompletionStub, Gate]
) -> None:
    server, gate = stub
    reports: list[DistillProgress] = []

    def progress(report: DistillProgress) -> None:
        reports.append(report)
        gate.changed()

    # The first requests wait until four are at the stub and the progress line has shown
    # four in flight; then nothing is held.
    opened = threading.Event()

    def hold(gate: Gate, number: int) -> bool:
        if not opened.is_set() and gate.in_flight >= 4 and any(r.in_flight == 4 for r in reports):
            opened.set()
        return not opened.is_set()

    gate.hold = hold
    card = run(repo, repo.parent / "ds", remote_teacher(server), 4, progress=progress)
    assert opened.is_set() and not gate.timed_out
    assert gate.max_in_flight == 4
    assert max(r.in_flight for r in reports) == 4
    last = reports[-1]
    assert last.tasks_done == card["counts"]["tasks"] and last.files_done == last.files_total == 2
    assert last.tasks_per_s > 0 and last.in_flight == 0


def test_one_at_a_time_never_overlaps(repo: Path, stub: tuple[CompletionStub, Gate]) -> None:
    server, gate = stub
    run(repo, repo.parent / "ds", remote_teacher(server), 1)
    assert gate.count > 4 and gate.max_in_flight == 1


# -- the same dataset -------------------------------------------------------------------------


def test_four_at_once_writes_the_dataset_one_at_a_time_writes(
    repo: Path, stub: tuple[CompletionStub, Gate]
) -> None:
    server, gate = stub
    one = run(repo, repo.parent / "one", remote_teacher(server), 1)
    first = gate.count + 1
    # This run's first request is held until every other task is written: the task asking
    # it (one of the first four) finishes last, so the results file is not in task order.
    reports: list[DistillProgress] = []

    def progress(report: DistillProgress) -> None:
        reports.append(report)
        gate.changed()

    def hold(gate: Gate, number: int) -> bool:
        others_done = any(r.tasks_done == one["counts"]["tasks"] - 1 for r in reports)
        return number == first and not others_done

    gate.hold = hold
    four = run(repo, repo.parent / "four", remote_teacher(server), 4, progress=progress)
    assert not gate.timed_out
    assert gate.count - first + 1 == first - 1  # as many requests as one at a time made
    assert dataset_files(repo.parent / "one") == dataset_files(repo.parent / "four")
    assert one == four
    places = [r["seq"] for r in saved_records(repo.parent / "four")]
    assert places != sorted(places)  # finished out of order, written in order all the same


def test_repository_tests_give_the_same_verdicts_run_four_at_once(tmp_path: Path) -> None:
    """Samples checked against the repository's tests in several copies at once."""
    root = make_repo(tmp_path / "calc", {"calc.py": CALC, "test_calc.py": CALC_TEST})

    def answer(prompt: str) -> str:
        # Some answers pass the repository's test, some parse but double wrongly.
        answers = ("value * 3\n", "value + value\n", "result\n", "value * 2\n")
        return answers[hashlib.sha256(prompt.encode()).digest()[0] % len(answers)]

    cards = []
    for concurrency in (1, 4):
        backend = FakeBackend(respond=answer, info_value=ModelInfo(name="t"))
        teacher = Teacher(backend, "t", TeacherSettings(k=1))
        out = tmp_path / f"ds{concurrency}"
        limits = TaskLimits(holes=8, fix=0)
        cards.append(
            distill(
                [root],
                out,
                teacher,
                settings(limits=limits, run_tests=True, heldout_ratio=0),
                concurrency=concurrency,
            )
        )
    assert cards[0] == cards[1]
    if can_execute():
        assert cards[0]["reject_reasons"].get("tests", 0) >= 1, cards[0]
    assert (tmp_path / "ds1" / TRAIN_FILE).read_bytes() == (
        tmp_path / "ds4" / TRAIN_FILE
    ).read_bytes()


# -- the rate limit ---------------------------------------------------------------------------


def test_the_rate_limit_spaces_the_whole_runs_requests(repo: Path) -> None:
    """With the clock stopped, each request's wait is its slot: one a second for the whole
    run, not one a second per thread."""
    slept: list[float] = []
    limiter = RateLimiter(1.0, clock=lambda: 0.0, sleep=slept.append)
    backend = FakeBackend(respond=lambda prompt: "amount\n", info_value=ModelInfo(name="t"))
    teacher = Teacher(backend, "t", TeacherSettings(k=2), limiter=limiter)
    distill([repo], repo.parent / "ds", teacher, settings(), concurrency=4)
    requests = len(backend.requests)
    assert requests > 4
    assert sorted(slept) == [float(slot) for slot in range(1, requests)]


# -- stopping and resuming --------------------------------------------------------------------


def test_ctrl_c_keeps_finished_tasks_and_the_resumed_run_writes_the_same_dataset(
    repo: Path, stub: tuple[CompletionStub, Gate]
) -> None:
    server, gate = stub
    whole = run(repo, repo.parent / "whole", remote_teacher(server, k=1), 1)
    asked = gate.count
    # Three requests are answered, the rest held; Ctrl-C comes once three tasks are done.
    gate.hold = lambda gate, number: number > asked + 3
    interrupted = False

    def ctrl_c(report: DistillProgress) -> None:
        nonlocal interrupted
        if report.tasks_done >= 3 and not interrupted:
            interrupted = True
            raise KeyboardInterrupt

    out = repo.parent / "ds"
    with pytest.raises(KeyboardInterrupt):
        run(repo, out, remote_teacher(server, k=1), 4, progress=ctrl_c)
    # The run did not wait for the held requests: it cancelled them.
    assert gate.in_flight > 0 and not gate.timed_out
    saved = saved_records(out)
    # The three finished tasks are kept; the held ones were cancelled, not saved half-done.
    assert len(saved) == 3 and all(r["teacher_samples"] == 1 for r in saved)
    assert not (out / TRAIN_FILE).exists()
    gate.release()
    before = gate.count
    card = run(repo, out, remote_teacher(server, k=1), 4)
    assert gate.count - before == whole["counts"]["tasks"] - 3  # only the tasks left
    for name in (TRAIN_FILE, HELDOUT_FILE):
        assert (out / name).read_bytes() == (repo.parent / "whole" / name).read_bytes()
    # The card counts this run's requests; all else is the uninterrupted run's.
    assert card["teacher"].pop("requests") == whole["teacher"].pop("requests") - 3
    assert card == whole


def test_a_failing_teacher_stops_a_concurrent_run_with_one_line(
    repo: Path, stub: tuple[CompletionStub, Gate], capsys: pytest.CaptureFixture[str]
) -> None:
    from lsp.cli import main

    server, gate = stub

    def fail_after_three(gate: Gate) -> None:
        if gate.count >= 3:
            server.fail = True  # later requests get HTTP 500 (some already past it answer)

    gate.on_request = fail_after_three
    out = repo.parent / "ds"
    args = ["distill", str(repo), "-o", str(out), "--teacher", server.url, "--no-tests"]
    code = main([*args, "--concurrency", "4", "-k", "1", "--retries", "1", "--per-file", "holes=4"])
    assert code == 1
    # Progress lines, then the error: one line, no traceback.
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if not line.startswith("distill ")]
    assert len(said) == 1 and "did not answer after 2 tries" in said[0], err
    assert said[0].startswith("apprentice: teacher ") and "Traceback" not in err
    # Only answered tasks were saved, each whole.
    saved = saved_records(out)
    assert len(saved) <= gate.count and all(r["teacher_samples"] == 1 for r in saved)
    assert not (out / TRAIN_FILE).exists()


def test_a_failing_job_stops_the_running_ones_and_its_error_comes_out() -> None:
    stops: list[bool] = []
    delivered: list[int] = []
    stopped = threading.Event()
    ended = threading.Event()

    def failing() -> int:
        raise RuntimeError("teacher down")

    def until_stopped() -> int:
        stopped.wait(HOLD_S)
        ended.set()
        return 1

    def stop() -> None:
        stops.append(True)
        stopped.set()

    with (
        pytest.raises(RuntimeError, match="teacher down"),
        TaskPool(2, delivered.append, stop=stop) as pool,
    ):
        pool.submit(until_stopped)
        pool.submit(failing)
        pool.drain()
    # The running job was stopped and joined; what it returned after the stop is dropped.
    assert stops == [True] and ended.is_set() and delivered == []


def test_ctrl_c_cancels_queued_jobs() -> None:
    ran: list[str] = []
    stopped = threading.Event()

    def running() -> str:
        stopped.wait(HOLD_S)
        ran.append("running")
        return "running"

    def queued() -> str:
        ran.append("queued")
        return "queued"

    with pytest.raises(KeyboardInterrupt), TaskPool(1, ran.append, stop=stopped.set) as pool:
        pool.submit(running)
        pool.submit(queued)  # waits behind the running job: one thread
        raise KeyboardInterrupt
    assert ran == ["running"]


# -- the command line -------------------------------------------------------------------------


def test_concurrency_is_checked_and_a_local_teacher_asks_one_at_a_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from lsp.cli import main
    from lsp.cli.train import _concurrency, _distill_line

    assert main(["distill", str(tmp_path), "-o", str(tmp_path / "ds"), "--concurrency", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--concurrency 0: expected 1 to 64" in err

    local = parse_model_spec("base", allow=TEACHER)
    assert _concurrency(argparse.Namespace(concurrency=4), local) == 1
    assert "answers one request at a time" in capsys.readouterr().err
    remote = parse_model_spec("http://127.0.0.1:9", allow=TEACHER)
    assert _concurrency(argparse.Namespace(concurrency=4), remote) == 4

    line = _distill_line(DistillProgress(3, 10, 24, 2.5, 4, 12.0))
    assert line == "distill 3/10 files 24 tasks 2.5 tasks/s 4 in flight ETA 12s"
