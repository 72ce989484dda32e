"""The CLI's one progress reporter: redrawn on a terminal, a line now and then in a log."""

from __future__ import annotations

import io

from lsp.cli.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_the_start_each_tenth_and_the_end_once() -> None:
    log, clock = io.StringIO(), Clock()
    progress = ProgressBar(log, unit="tasks", clock=clock)
    for done in range(101):
        progress("humaneval", done, 100)
        progress("humaneval", done, 100)  # a repeated report adds nothing
        clock.now += 0.5
    progress.close()
    lines = log.getvalue().splitlines()
    assert lines[0] == "humaneval: 0/100 tasks"
    assert lines[1] == "humaneval: 10/100 tasks, 2.0 tasks/s, ETA 45 s"
    assert len(lines) == 11 and lines[-1] == "humaneval: 100/100 tasks in 50.0 s, 2.0 tasks/s"
    assert "\r" not in log.getvalue()


def test_a_log_of_a_quick_stage_says_its_start_and_end_only() -> None:
    log, clock = io.StringIO(), Clock()
    progress = ProgressBar(log, clock=clock)
    for done in range(1, 411):
        progress("files", done, 410)
        clock.now += 0.001
    assert log.getvalue().splitlines() == [
        "files: 1/410 files",
        "files: 410/410 files in 0.4 s, 1000.0 files/s",
    ]


def test_a_long_tenth_still_gets_a_line_every_minute() -> None:
    log, clock = io.StringIO(), Clock()
    progress = ProgressBar(log, unit="steps", clock=clock)
    for step in range(0, 50):
        progress.line("train", step, 1000, f"step {step}/1000")
        clock.now += 10
    assert log.getvalue().splitlines() == [
        "step 0/1000",
        "step 6/1000",
        "step 12/1000",
        *[f"step {n}/1000" for n in (18, 24, 30, 36, 42, 48)],
    ]


def test_a_terminal_redraws_one_line_per_stage() -> None:
    screen, clock = Terminal(), Clock()
    progress = ProgressBar(screen, clock=clock)
    progress("files", 0, 4)
    clock.now += 0.05
    progress("files", 1, 4)  # too soon after the last draw
    clock.now += 0.15
    progress("files", 2, 4)
    clock.now += 0.8
    progress("files", 4, 4)
    progress("embeddings", 8, 8)
    progress.close()
    lines = screen.getvalue().split("\n")
    assert lines[0].count("\r") == 3
    assert (
        lines[0].split("\r")[-1].rstrip()
        == "files      [" + "#" * 30 + "] 4/4 files    4.0/s ETA    0s"
    )
    assert lines[1].split("\r")[-1].startswith("embeddings [" + "#" * 30 + "] 8/8 chunks")
    assert lines[2] == ""


def test_bytes_are_shown_in_megabytes() -> None:
    screen, clock = Terminal(), Clock()
    progress = ProgressBar(screen, unit="MB", scale=1e6, clock=clock)
    progress("base.gguf", 0, 250_000_000)
    clock.now += 5
    progress("base.gguf", 100_000_000, 250_000_000)
    assert screen.getvalue().split("\r")[-1].rstrip().endswith("100.0/250.0 MB   20.0/s ETA    8s")
