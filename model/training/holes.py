"""Masked-span tasks: a hole cut from real code, and the buffer an editor shows around it.

Evaluation (``apprentice eval``) and distillation (``apprentice distill``) both build their
tasks here, so a model is trained on the same kind of hole it is measured on. A task is
the original file and the hole's character span; a placement turns it into what an
editor would hold at that moment (the text and the cursor offset):

- ``empty``: the hole's lines replaced by one empty line, cursor at column 0;
- ``indent``: that line holding the editor's auto-indent (the previous code line's
  indentation, one level deeper after a line ending in ``:``), cursor after it;
- ``typed``: the first characters of the answer already typed (up to the first ``(``,
  ``=`` or space after its first identifier), cursor after them;
- ``cursor``: a hole inside a line, the cursor where the hole starts; a call's closing
  bracket stays after the cursor, as an editor's bracket auto-closing leaves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Placement = Literal["empty", "indent", "typed", "cursor"]
LINE_PLACEMENTS: tuple[Placement, ...] = ("empty", "indent", "typed")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class HoleTask:
    """One hole: ``original[start:end]`` is the answer; the rest is what the user has."""

    task_id: str
    path: str  # repository-relative (or a made-up file name)
    original: str
    start: int
    end: int
    kind: str  # humaneval-single, assign, return, call, line, block, body, ...
    cross_file: bool = False
    # The function or class the answer calls first, when it calls one.
    callee: str | None = None
    # Appended to the completed file to test it (HumanEval); None: no execution.
    test: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        return self.original[self.start : self.end]

    @property
    def line_hole(self) -> bool:
        """Whether the hole is whole lines (it starts a line and ends one)."""
        starts_line = self.start == 0 or self.original[self.start - 1] == "\n"
        return starts_line and self.answer.endswith("\n")


@dataclass(frozen=True)
class EditorView:
    """What the editor holds: the buffer and the cursor offset in it."""

    text: str
    offset: int
    placement: Placement

    def apply(self, suggestion: str, replaced: int = 0) -> str:
        """The buffer after accepting ``suggestion``, which replaces ``replaced`` characters
        before the cursor (an inline item whose range starts before the cursor)."""
        return self.text[: self.offset - replaced] + suggestion + self.text[self.offset :]


def placements_for(task: HoleTask) -> tuple[Placement, ...]:
    """The placements that make sense for this hole."""
    return LINE_PLACEMENTS if task.line_hole else ("cursor",)


def place(task: HoleTask, placement: Placement) -> EditorView:
    """The editor's view of ``task`` in ``placement``."""
    before = task.original[: task.start]
    after = task.original[task.end :]
    if placement == "cursor":
        return EditorView(before + after, len(before), placement)
    if not task.line_hole:
        raise ValueError(f"{task.task_id}: placement {placement!r} needs a whole-line hole")
    if placement == "empty":
        typed = ""
    elif placement == "indent":
        typed = auto_indent(before)
    else:
        typed = typed_start(task.answer)
    return EditorView(before + typed + "\n" + after, len(before) + len(typed), placement)


def auto_indent(before: str, unit: str = "    ") -> str:
    """What an editor puts on a new line: the last code line's indentation, a level deeper
    after a line ending in ``:`` (VS Code's and Neovim's Python indentation rules)."""
    for line in reversed(before.split("\n")):
        if line.strip():
            indent = line[: len(line) - len(line.lstrip())]
            return indent + unit if line.rstrip().endswith(":") else indent
    return ""


def typed_start(answer: str) -> str:
    """The first characters a user types of ``answer``'s first line: its indentation and
    text up to (and with) the first ``(``, ``=`` or space after the first identifier."""
    line = answer.split("\n", 1)[0]
    match = _IDENTIFIER.search(line)
    if match is None:
        return line[: len(line) - len(line.lstrip())]
    for i in range(match.end(), len(line)):
        if line[i] in "(= ":
            return line[: i + 1]
    return line[: match.end()]


def region_lines(task: HoleTask, completed: str) -> tuple[str, str]:
    """The hole's lines in the original and in the completed buffer, for comparison.

    Lines before the hole's first line and after its last line are the same in both
    (an accepted suggestion never reaches them), so what lies between is the answer's
    region in each; trailing whitespace is ignored.
    """
    first = task.original.count("\n", 0, task.start)
    after = task.original[task.end :]
    # A whole-line hole ends a line, so every line of ``after`` is its own; otherwise the
    # first line of ``after`` continues the hole's last line.
    tail = after.count("\n") + (1 if task.line_hole else 0)
    original_lines = task.original.split("\n")
    new_lines = completed.split("\n")
    expected = original_lines[first : len(original_lines) - tail]
    got = new_lines[first : max(first, len(new_lines) - tail)]
    return _norm(expected), _norm(got)


def _norm(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines if line.strip())
