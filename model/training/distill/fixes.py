"""Fix tasks from a file's real ruff diagnostics, laid out as the server asks the model for a fix.

The server (lsp/core/fixing.py) rewrites the statement holding a diagnostic: the prompt's prefix
is the text before the statement, comment lines naming the problem and quoting the
statement, then the statement's indentation; the model writes the fixed statement. A fix
task is that same hole, so a student learns the layout it will be asked in.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

from lint_bridge.api import LintBridgeError
from lint_bridge.fixes import replacement_span
from lint_bridge.ruff import RuffDiagnostic, RuffRunner
from model.runtime.fixhint import MAX_FIX_LINES, hint_lines
from model.training.distill.tasks import FIX_KIND, Task, task_id

logger = logging.getLogger(__name__)


def fix_tasks(
    repo: str,
    path: str,
    abs_path: Path,
    text: str,
    limit: int,
    ruff: RuffRunner,
    seed: int = 0,
) -> list[Task]:
    """Up to ``limit`` fix tasks for the ruff diagnostics of ``text`` (read as ``abs_path``)."""
    if limit <= 0:
        return []
    diagnostics = asyncio.run(ruff.diagnostics(text, abs_path))
    if not diagnostics:
        return []
    rng = random.Random(f"{seed}:{repo}:{path}:fix")
    chosen = rng.sample(diagnostics, min(limit, len(diagnostics)))
    tasks = [t for d in chosen if (t := _fix_task(repo, path, text, d)) is not None]
    return sorted(tasks, key=lambda t: t.start)


def _fix_task(repo: str, path: str, text: str, diagnostic: RuffDiagnostic) -> Task | None:
    if diagnostic.code.startswith(("E9", "SyntaxError")) or not diagnostic.code:
        return None  # a file that does not parse is not a fix lesson
    start, end = replacement_span(text, "python", diagnostic.line)
    original = text[start:end]
    if not original.strip() or original.count("\n") + 1 > MAX_FIX_LINES:
        return None
    indent = original[: len(original) - len(original.lstrip(" \t"))]
    hints = hint_lines(diagnostic.code, diagnostic.message, original, indent, "python")
    prefix = text[:start] + "".join(line + "\n" for line in hints) + indent
    return Task(
        id=task_id(repo, path, "fix", start, end) + f"-{diagnostic.code}",
        repo=repo,
        path=path,
        language="python",
        kind=FIX_KIND,
        prefix=prefix,
        suffix=text[end:],
        truth=_ruff_truth(text, start, end, indent, diagnostic),
        start=start,
        end=end,
        placement="statement",
        diagnostic={
            "code": diagnostic.code,
            "message": diagnostic.message,
            "line": diagnostic.line,
            "column": diagnostic.column,
        },
    )


def _ruff_truth(
    text: str, start: int, end: int, indent: str, diagnostic: RuffDiagnostic
) -> str | None:
    """Ruff's own fix of the statement, as the model would write it (after the indentation)."""
    fix = diagnostic.fix
    if fix is None or not fix.offered or fix.unsafe:
        return None
    try:
        edit = fix.as_splice(text)
    except LintBridgeError:
        return None
    if edit.start < start or edit.end > end:
        return None  # the fix edits outside the statement (an import added at the top)
    fixed = text[start : edit.start] + edit.text + text[edit.end : end]
    if not fixed.startswith(indent) or not fixed.strip():
        return None  # ruff deleted the statement: nothing for the model to write
    return fixed[len(indent) :]
