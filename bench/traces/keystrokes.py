"""Typing traces: how a finished source file becomes the keystrokes that typed it.

The scheme: the file opens with the body of every documented function removed (its
signature and docstring stay, so the buffer parses and the model sees the code below the
cursor), and the bodies are typed back top to bottom, one character per keystroke, as a
developer fills in stubs. Enter inserts the newline and the indentation in one change, as
an editor's auto-indent does. The typist pauses at the end of each line, after ``(``,
``.`` and a lone ``=``, and after about 40 characters without a pause; between pauses the
gaps jitter around the mean typing speed from a seeded generator, so a trace is
reproducible.
"""

from __future__ import annotations

import ast
import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Keystroke:
    """One change the typist makes: text inserted at an LSP position, then a wait."""

    line: int
    character: int  # UTF-16 code units, as LSP counts by default
    text: str
    target_offset: int  # the cursor's offset in the finished file after this keystroke
    wait_s: float = 0.0  # until the next keystroke
    pause: bool = False

    @property
    def cursor(self) -> tuple[int, int]:
        """The LSP position of the cursor once the text is in."""
        rows = self.text.split("\n")
        if len(rows) == 1:
            return self.line, self.character + utf16_len(self.text)
        return self.line + len(rows) - 1, utf16_len(rows[-1])


@dataclass(frozen=True)
class Trace:
    """What the editor opens, what it ends as, and the keystrokes between."""

    initial: str
    target: str
    keystrokes: list[Keystroke]

    @property
    def duration_s(self) -> float:
        """How long replaying it takes, pauses included."""
        return sum(key.wait_s for key in self.keystrokes)


def utf16_len(text: str) -> int:
    """Length of the text in UTF-16 code units (LSP's default column unit)."""
    return len(text.encode("utf-16-le")) // 2


def body_ranges(source: str) -> list[tuple[int, int]]:
    """0-based [start, end) line ranges of documented functions' bodies, after the docstring."""
    ranges = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or len(node.body) < 2:
            continue
        if ast.get_docstring(node, clean=False) is None:
            continue
        docstring = node.body[0]
        # 1-based last line of the docstring is the 0-based first line after it.
        start, end = docstring.end_lineno or docstring.lineno, node.end_lineno or 0
        if start < end:
            ranges.append((start, end))
    outermost: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        # A function nested in a removed body is typed as part of that body.
        if not outermost or start >= outermost[-1][1]:
            outermost.append((start, end))
    return outermost


def _is_natural_pause(char: str, before: str, after: str) -> bool:
    """After an opening parenthesis, an attribute dot or a lone ``=``, people stop and look."""
    if char in "(.":
        return True
    return char == "=" and before not in "=!<>+-*/%&|^:" and after != "="


def build_trace(
    target: str,
    *,
    cps: float = 8.0,
    seed: int = 0,
    pause_s: tuple[float, float] = (1.5, 2.0),
    every: int = 40,
    limit: int | None = None,
) -> Trace:
    """The keystrokes that type the bodies of the target's documented functions back in."""
    lines = target.split("\n")
    ranges = body_ranges(target)
    removed = {row for start, end in ranges for row in range(start, end)}
    initial = "\n".join(line for row, line in enumerate(lines) if row not in removed)
    starts = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))
    raw: list[Keystroke] = []
    for start, end in ranges:
        for row in range(start, end):
            text = lines[row]
            indent = text[: len(text) - len(text.lstrip())]
            previous = lines[row - 1]
            raw.append(
                Keystroke(row - 1, utf16_len(previous), "\n" + indent, starts[row] + len(indent))
            )
            for col in range(len(indent), len(text)):
                raw.append(Keystroke(row, utf16_len(text[:col]), text[col], starts[row] + col + 1))
    if limit is not None:
        raw = raw[:limit]
    rng = random.Random(seed)
    keystrokes = []
    since_pause = 0
    for index, key in enumerate(raw):
        since_pause += 1
        last = index == len(raw) - 1
        if key.text.startswith("\n"):
            pause = last
        else:
            at = key.target_offset
            line_end = last or raw[index + 1].text.startswith("\n")
            before, after = target[at - 2 : at - 1], target[at : at + 1]
            pause = line_end or since_pause >= every or _is_natural_pause(key.text, before, after)
        if pause:
            since_pause = 0
            wait = rng.uniform(*pause_s)
        else:
            # Jitter around the mean gap: people type in bursts, not to a metronome.
            wait = rng.uniform(0.5, 1.5) / cps
        keystrokes.append(
            Keystroke(key.line, key.character, key.text, key.target_offset, wait, pause)
        )
    return Trace(initial=initial, target=target, keystrokes=keystrokes)


def agrees(suggestion: str, rest: str) -> bool:
    """Whether the suggestion's first line is how the typist's text actually went on."""
    first, *more = suggestion.split("\n")
    if first.strip():
        return rest.split("\n", 1)[0].startswith(first.rstrip())
    rest_first, *rest_more = rest.split("\n")
    if rest_first.strip():
        return False
    wanted = next((line.strip() for line in more if line.strip()), "")
    typed = next((line.strip() for line in rest_more if line.strip()), "")
    return bool(wanted) and typed.startswith(wanted)
