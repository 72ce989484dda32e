"""Task placement as an editor shows it, and comparing the hole's region."""

from __future__ import annotations

import pytest

from model.training.holes import (
    HoleTask,
    auto_indent,
    place,
    placements_for,
    region_lines,
    typed_start,
)

SOURCE = "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"


def line_task(line: str) -> HoleTask:
    start = SOURCE.index(line)
    return HoleTask("t", "a.py", SOURCE, start, start + len(line) + 1, "line")


def test_empty_placement_leaves_one_empty_line_with_the_cursor_at_column_0() -> None:
    task = line_task("        total += x")
    view = place(task, "empty")
    assert view.text == "def f(xs):\n    total = 0\n    for x in xs:\n\n    return total\n"
    assert view.text[view.offset - 1] == "\n" and view.text[view.offset] == "\n"


def test_indent_placement_types_the_editors_auto_indent() -> None:
    view = place(line_task("        total += x"), "indent")
    line = view.text.split("\n")[3]
    assert line == "        "  # one level deeper after "for x in xs:"
    assert view.text[: view.offset].endswith("\n        ")
    # After a line that does not open a block, the same indentation as that line.
    view = place(line_task("    return total"), "indent")
    assert view.text.split("\n")[4] == "        "


def test_typed_placement_stops_after_the_first_identifier() -> None:
    assert typed_start("    total = 0\n") == "    total "
    assert typed_start("    print(x)\n") == "    print("
    assert typed_start("    return total\n") == "    return "
    assert typed_start("    x=1\n") == "    x="
    assert typed_start("    pass\n") == "    pass"
    view = place(line_task("    total = 0"), "typed")
    assert view.text[: view.offset].endswith("\n    total ")
    assert view.text[view.offset] == "\n"


def test_auto_indent_without_code_above_is_empty() -> None:
    assert auto_indent("") == ""
    assert auto_indent("\n\n") == ""


def test_a_hole_inside_a_line_has_only_the_cursor_placement() -> None:
    start = SOURCE.index("0\n")
    task = HoleTask("t", "a.py", SOURCE, start, start + 1, "assign")
    assert placements_for(task) == ("cursor",)
    view = place(task, "cursor")
    assert view.text[: view.offset].endswith("total = ")
    with pytest.raises(ValueError):
        place(task, "empty")


@pytest.mark.parametrize("placement", ["empty", "indent", "typed"])
def test_the_right_answer_reconstructs_the_original(placement: str) -> None:
    task = line_task("        total += x")
    view = place(task, placement)  # type: ignore[arg-type]
    typed = view.text[view.text.rfind("\n", 0, view.offset) + 1 : view.offset]
    # Typing the rest of the answer gives back the file exactly.
    completed = view.apply(task.answer[len(typed) :].rstrip("\n"))
    assert completed == SOURCE
    expected, got = region_lines(task, completed)
    assert expected == got == "        total += x"


def test_a_suggestion_replacing_the_auto_indent_dedents_the_line() -> None:
    task = line_task("    return total")
    view = place(task, "indent")  # "        " typed: one level too deep
    completed = view.apply("    return total", replaced=8)
    assert completed == SOURCE


def test_region_of_a_wrong_or_missing_answer() -> None:
    task = line_task("        total += x")
    view = place(task, "empty")
    assert region_lines(task, view.apply("        total -= x")) == (
        "        total += x",
        "        total -= x",
    )
    assert region_lines(task, view.apply("")) == ("        total += x", "")
    # Two lines where one was expected: both are in the region.
    assert region_lines(task, view.apply("        y = 1\n        total += x"))[1] == (
        "        y = 1\n        total += x"
    )


def test_region_of_an_inline_hole_includes_the_rest_of_its_line() -> None:
    start = SOURCE.index("total\n")
    task = HoleTask("t", "a.py", SOURCE, start, start + len("total"), "return")
    view = place(task, "cursor")
    assert region_lines(task, view.apply("total")) == ("    return total",) * 2
    assert region_lines(task, view.apply("x"))[1] == "    return x"
