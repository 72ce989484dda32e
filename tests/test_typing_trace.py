"""The typing-trace benchmark: its keystroke generator, its statistics, and one short real run."""

from __future__ import annotations

import ast
import itertools
import json
import statistics
from pathlib import Path

import pytest

from bench.traces.keystrokes import Keystroke, agrees, body_ranges, build_trace, utf16_len
from bench.typing_trace import DEFAULT_TRACE, Pause, Sent, main, percentile, summarise

NESTED = '''"""A module."""


def outer(values: list[int]) -> int:
    """Sum the doubled values."""

    def double(value: int) -> int:
        """Twice the value."""
        return value * 2

    return sum(double(v) for v in values)


def greet(name: str) -> str:
    """A greeting with a non-ASCII flourish."""
    return f"héllo {name} 👋"


def bare(x):
    return x
'''


def apply(text: str, key: Keystroke) -> str:
    """The document after one keystroke, found the way a server would: by UTF-16 position."""
    rows = text.split("\n")
    line = rows[key.line]
    index = units = 0
    while units < key.character:
        units += utf16_len(line[index])
        index += 1
    offset = sum(len(row) + 1 for row in rows[: key.line]) + index
    return text[:offset] + key.text + text[offset:]


def replay(text: str, keys: list[Keystroke]) -> str:
    for key in keys:
        text = apply(text, key)
    return text


@pytest.mark.parametrize("source", [DEFAULT_TRACE.read_text(), NESTED])
def test_keystrokes_type_the_stubbed_file_back_into_the_original(source: str) -> None:
    trace = build_trace(source)
    assert trace.initial != source
    ast.parse(trace.initial)  # the stubbed file still parses: signatures and docstrings stay
    assert replay(trace.initial, trace.keystrokes) == source


def test_only_documented_bodies_are_removed_and_nested_ones_go_with_their_parent() -> None:
    trace = build_trace(NESTED)
    assert body_ranges(NESTED) == [(5, 11), (15, 16)]
    assert "def double" not in trace.initial
    assert "def bare(x):\n    return x" in trace.initial


def test_each_keystroke_lands_at_the_cursor_the_previous_one_left() -> None:
    trace = build_trace(DEFAULT_TRACE.read_text())
    keys = trace.keystrokes
    text = trace.initial
    for before, key in itertools.pairwise(keys):
        text = apply(text, before)
        line, character = before.cursor
        rows = text.split("\n")
        assert utf16_len(rows[line]) == character  # the typist is always at the end of a line
        if not key.text.startswith("\n"):
            assert (key.line, key.character) == (line, character)
        assert text[: before.target_offset] == trace.target[: before.target_offset]


def test_enter_carries_the_indentation_and_pauses_come_at_line_ends() -> None:
    trace = build_trace(DEFAULT_TRACE.read_text())
    keys = trace.keystrokes
    enters = [key for key in keys if key.text.startswith("\n")]
    assert enters and all(key.text.strip(" ") == "\n" for key in enters)
    assert any(len(key.text) > 1 for key in enters)
    for key, after in itertools.pairwise(keys):
        if after.text.startswith("\n") and not key.text.startswith("\n"):
            assert key.pause, "the typist stops at the end of every line"
    assert keys[-1].pause


def test_the_rhythm_is_seeded_and_pauses_are_long() -> None:
    source = DEFAULT_TRACE.read_text()
    first = build_trace(source, seed=3, cps=8.0)
    assert first == build_trace(source, seed=3, cps=8.0)
    assert [k.wait_s for k in first.keystrokes] != [
        k.wait_s for k in build_trace(source, seed=4).keystrokes
    ]
    typing = [k.wait_s for k in first.keystrokes if not k.pause]
    pauses = [k.wait_s for k in first.keystrokes if k.pause]
    assert min(pauses) >= 1.5 and max(pauses) <= 2.0
    assert max(typing) < 1.5 / 8 + 1e-9
    assert statistics.mean(typing) == pytest.approx(1 / 8, rel=0.1)
    natural = [k for k in first.keystrokes if k.text in ("(", ".")]
    assert natural and all(k.pause for k in natural)


def test_a_limited_trace_ends_on_a_pause() -> None:
    trace = build_trace(DEFAULT_TRACE.read_text(), limit=7)
    assert len(trace.keystrokes) == 7
    assert trace.keystrokes[-1].pause


@pytest.mark.parametrize(
    ("suggestion", "rest", "expected"),
    [
        ("rd.sku)", "rd.sku)\n    return x", True),
        ("rd.name)", "rd.sku)\n    return x", False),
        ("\n    return total", "\n    return total\n", True),
        ("\n    return total", "x\n    return total\n", False),
        ("\n\n", "\n    return total\n", False),
        ("", "anything", False),
    ],
)
def test_agrees(suggestion: str, rest: str, expected: bool) -> None:
    assert agrees(suggestion, rest) is expected


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([], 50) is None


def test_summarise_counts_pauses_requests_and_prefix_reuse() -> None:
    sent = [
        Sent(0, 1, sent_at=0.0, answered_at=0.05, outcome="cancelled", cancel_sent=True),
        Sent(1, 2, sent_at=1.0, answered_at=1.2, outcome="items", text="x"),
        Sent(2, 3, sent_at=3.0, answered_at=3.4, outcome="empty"),
        Sent(3, 4, sent_at=5.0, outcome="pending"),
    ]
    pauses = [
        Pause(1, "suggestion", 200.0, agrees=True),
        Pause(2, "empty", 400.0),
        Pause(3, "late", None),
    ]
    before = {"tokens": {"prompt": 100, "evaluated": 100}, "requests": {"total": 2}}
    after = {
        "tokens": {"prompt": 1100, "evaluated": 350},
        "requests": {"total": 6, "cancelled": 1},
    }
    report = summarise(sent, pauses, before, after)
    assert report["pauses"] == 3
    assert report["pauses_seen"] == {
        "suggestion": 1,
        "empty": 1,
        "late": 1,
        "cancelled": 0,
        "error": 0,
    }
    assert report["suggestion_ms"] == {"p50": 200.0, "p95": 200.0, "p99": 200.0}
    assert report["acceptance_ready"] == pytest.approx(1 / 3, abs=1e-3)
    assert report["first_line_right"] == 1.0
    assert report["answers"] == {"items": 1, "empty": 1, "cancelled": 1, "error": 0}
    assert report["answer_ms"]["p95"] == pytest.approx(400.0)
    assert report["cancelled_fraction"] == 0.25
    assert report["tokens"] == {"prompt": 1000, "evaluated": 250}
    assert report["prefix_reuse_ratio"] == 0.25
    assert report["server_requests"]["total"] == 4
    assert report["server_requests"]["superseded"] == 0


def test_a_short_real_run_reports_every_figure(
    gemma_path: Path, lsp_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--keystrokes", "20", "--json", "--model", str(gemma_path), "--no-embeddings"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests"] == 20
    assert sum(report["answers"].values()) == 20, "every request, cancelled or not, is answered"
    assert report["pauses"] >= 1
    assert sum(report["pauses_seen"].values()) == report["pauses"]
    assert set(report["suggestion_ms"]) == {"p50", "p95", "p99"}
    assert 0 <= report["cancelled_fraction"] <= 1
    assert report["tokens"]["prompt"] > 0
    assert report["prefix_reuse_ratio"] is not None
    assert report["server_requests"]["total"] >= 1
    first = report["first_suggestion"]
    assert first["ms"] > 0 and isinstance(first["shown"], bool)
    typed = report["first_typed_suggestion_ms"]
    assert typed is None or typed > 0
