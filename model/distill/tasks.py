"""Masked-span tasks cut from a repository's Python code: rest of line, whole line, bodies.

``tasks_for_source`` is the one place tasks are built, so the cutting can follow the
evaluation harness's own when that exists. Every task keeps the file's text around the
hole (prefix and suffix) and the real code that filled it (the ground truth).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

TaskKind = Literal["rest_of_line", "line", "body", "fix"]
TASK_KINDS: tuple[TaskKind, ...] = ("rest_of_line", "line", "body", "fix")

# Where a rest-of-line hole may start: right after one of these on a code line.
_REST_MARKERS = re.compile(r"(?<![=!<>])= (?!=)|\breturn |\(")
# A hole shorter than this is not worth teaching (a lone closer, a one-letter name).
_MIN_MIDDLE_CHARS = 3
_MAX_LINE_CHARS = 160
_MAX_BODY_LINES = 12


@dataclass(frozen=True)
class TaskLimits:
    """How many tasks of each kind one file may give (chosen at random, seeded per file)."""

    rest_of_line: int = 4
    line: int = 3
    body: int = 1
    fix: int = 2


@dataclass(frozen=True)
class Task:
    """One hole in one file: ``text[start:end]`` is cut out; ``truth`` is what was there.

    For a ``fix`` task ``truth`` is ruff's own fix of the statement when ruff has one (None
    otherwise) and ``diagnostic`` names the problem; the hint lines the server writes above
    a fix are part of ``prefix``.
    """

    id: str
    repo: str
    path: str
    language: str
    kind: TaskKind
    prefix: str
    suffix: str
    truth: str | None
    start: int
    end: int
    diagnostic: dict[str, Any] | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        """The task as one JSON object (progress files)."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Task:
        """The task ``as_json`` wrote."""
        return Task(**data)


def task_id(repo: str, path: str, kind: str, start: int, end: int) -> str:
    """A stable id: the same hole in the same file always gets the same id."""
    key = f"{repo}\0{path}\0{kind}\0{start}\0{end}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def tasks_for_source(
    repo: str, path: str, text: str, limits: TaskLimits, seed: int = 0
) -> list[Task]:
    """The masked-span tasks of one Python file (no fix tasks: those need ruff, see fixes.py).

    A file that does not parse gives none. The choice among the candidate holes is random
    but seeded by ``seed`` and the path, so a rerun picks the same holes.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        logger.debug("%s does not parse; no tasks", path)
        return []
    code_lines = _code_lines(tree, text)
    rng = random.Random(f"{seed}:{repo}:{path}")
    found: list[Task] = []
    spans = {
        "rest_of_line": list(_rest_of_line_spans(text, code_lines)),
        "line": list(_line_spans(text, code_lines)),
        "body": list(_body_spans(tree, text)),
    }
    for kind, candidates in spans.items():
        wanted = getattr(limits, kind)
        for start, end in rng.sample(candidates, min(wanted, len(candidates))):
            found.append(
                Task(
                    id=task_id(repo, path, kind, start, end),
                    repo=repo,
                    path=path,
                    language="python",
                    kind=kind,  # type: ignore[arg-type]
                    prefix=text[:start],
                    suffix=text[end:],
                    truth=text[start:end],
                    start=start,
                    end=end,
                )
            )
    return sorted(found, key=lambda t: (t.start, t.kind))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", text))
    return starts


def _code_lines(tree: ast.AST, text: str) -> set[int]:
    """0-based numbers of lines that hold one simple statement whole (no docstrings)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or isinstance(node, _COMPOUND):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstrings and bare strings: prose, not code
        end = getattr(node, "end_lineno", None)
        if end is not None and end == node.lineno:
            lines.add(node.lineno - 1)
    return lines


_COMPOUND = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.Match,
)


def _line_text(text: str, starts: list[int], line: int) -> tuple[int, int]:
    begin = starts[line]
    end = text.find("\n", begin)
    return begin, len(text) if end < 0 else end


def _rest_of_line_spans(text: str, code_lines: set[int]) -> Iterator[tuple[int, int]]:
    """Holes from just after ``= ``, ``return `` or the first ``(`` to the end of the line."""
    starts = _line_starts(text)
    for line in sorted(code_lines):
        begin, end = _line_text(text, starts, line)
        body = text[begin:end]
        if len(body) > _MAX_LINE_CHARS or "#" in body:
            continue
        match = _REST_MARKERS.search(body)
        if match is None:
            continue
        cut = begin + match.end()
        if len(text[cut:end].strip()) >= _MIN_MIDDLE_CHARS:
            yield cut, end


def _line_spans(text: str, code_lines: set[int]) -> Iterator[tuple[int, int]]:
    """Whole lines, indentation included (the cursor sits at the start of an empty line)."""
    starts = _line_starts(text)
    for line in sorted(code_lines):
        begin, end = _line_text(text, starts, line)
        body = text[begin:end]
        if len(body.strip()) >= _MIN_MIDDLE_CHARS and len(body) <= _MAX_LINE_CHARS:
            yield begin, end


def _body_spans(tree: ast.AST, text: str) -> Iterator[tuple[int, int]]:
    """Function bodies (after the docstring) of at most ``_MAX_BODY_LINES`` lines."""
    starts = _line_starts(text)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = list(node.body)
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(body) > 1:
            body = body[1:]
        head, last = body[0], body[-1]
        last_line = (last.end_lineno or last.lineno) - 1
        if head.lineno - 1 <= node.lineno - 1 or last_line - (head.lineno - 1) >= _MAX_BODY_LINES:
            continue  # a one-line ``def f(): return x`` or a long body
        begin = starts[head.lineno - 1]
        _, end = _line_text(text, starts, last_line)
        if len(text[begin:end].strip()) >= _MIN_MIDDLE_CHARS:
            yield begin, end
