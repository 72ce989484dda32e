"""Distillation tasks: the evaluation harness's holes (``model.training.repo_tasks``) as FIM
examples.

``apprentice eval`` and ``apprentice distill`` cut holes the same way (rest of line after
``= `` / ``return `` / inside a call, whole lines, block and function bodies), so the
student is trained on the kind of hole it is measured on. Each hole is seen as an editor
shows it (``model.training.holes.place``: an empty line, the editor's auto-indent, the first
characters typed, or a cursor inside a line), chosen at random but seeded per file; the
task keeps the text before and after the cursor and the real code that went there.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from model.training.holes import HoleTask, place, placements_for
from model.training.repo_tasks import KINDS, SourceFile, cut_tasks

logger = logging.getLogger(__name__)

FIX_KIND = "fix"


@dataclass(frozen=True)
class TaskLimits:
    """How many tasks one file may give: holes (all kinds mixed) and fixes of ruff findings."""

    holes: int = 8
    fix: int = 2


@dataclass(frozen=True)
class Task:
    """One hole in one file: ``text[start:end]`` is replaced; ``truth`` is what belongs there.

    ``prefix`` and ``suffix`` are the buffer around the cursor as an editor holds it. For a
    ``fix`` task ``truth`` is ruff's own fix of the statement when ruff has one (None
    otherwise), ``diagnostic`` names the problem, and the hint lines the server writes
    above a fix are part of ``prefix``.
    """

    id: str
    repo: str
    path: str
    language: str
    kind: str
    prefix: str
    suffix: str
    truth: str | None
    start: int
    end: int
    placement: str = "cursor"
    diagnostic: dict[str, Any] | None = field(default=None, compare=False)


def task_id(repo: str, path: str, kind: str, start: int, end: int) -> str:
    """A stable id: the same hole in the same file always gets the same id."""
    key = f"{repo}\0{path}\0{kind}\0{start}\0{end}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def tasks_for_source(
    repo: str, path: str, text: str, limits: TaskLimits, seed: int = 0
) -> list[Task]:
    """The hole tasks of one Python file (fix tasks come from ``model.training.distill.fixes``).

    A file that does not parse gives none. Holes and placements are chosen at random,
    seeded by ``seed`` and the path, so a rerun picks the same ones.
    """
    if limits.holes <= 0:
        return []
    file_seed = int(hashlib.sha256(f"{seed}:{repo}:{path}".encode()).hexdigest()[:8], 16)
    holes = cut_tasks([SourceFile(path, text)], kinds=KINDS, seed=file_seed, per_file=limits.holes)
    rng = random.Random(file_seed)
    tasks = [_as_task(repo, hole, rng.choice(placements_for(hole))) for hole in holes]
    return sorted((t for t in tasks if t is not None), key=lambda t: t.start)


def _as_task(repo: str, hole: HoleTask, placement: Any) -> Task | None:
    """The hole as the editor shows it in ``placement``: text before and after the cursor."""
    view = place(hole, placement)
    prefix, suffix = view.text[: view.offset], view.text[view.offset :]
    answer = hole.answer
    if hole.line_hole:
        # The editor holds one line for the answer; what is typed on it is already there.
        typed = prefix[len(hole.original[: hole.start]) :]
        if not answer.startswith(typed):
            return None
        middle = answer[len(typed) :].removesuffix("\n")
    else:
        middle = answer
    if not middle.strip():
        return None
    return Task(
        id=task_id(repo, hole.path, hole.kind, hole.start, hole.end),
        repo=repo,
        path=hole.path,
        language="python",
        kind=hole.kind,
        prefix=prefix,
        suffix=suffix,
        truth=middle,
        start=hole.start,
        end=hole.end,
        placement=str(placement),
    )
