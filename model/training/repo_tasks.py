"""Holes cut from a repository's own Python code, for evaluation and distillation.

Kinds: the rest of a line after ``= `` (``assign``), after ``return `` (``return``) or
inside a call's brackets (``call``); a whole statement line (``line``); the body of an
``if``/``for``/``while``/``with``/``try`` block (``block``) or of a function (``body``).
Each task is tagged ``cross_file`` when its answer names something the file imports from
another file of the repository (what repository context must supply).
Nothing is imported or executed: files are read with ``ast``.
"""

from __future__ import annotations

import ast
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.training.holes import HoleTask

logger = logging.getLogger(__name__)

KINDS = ("assign", "return", "call", "line", "block", "body")
_BLOCKS = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith)
_MAX_BODY_LINES = 10
_MIN_ANSWER_CHARS = 4


@dataclass(frozen=True)
class SourceFile:
    """One Python file of the repository (path relative to its root)."""

    path: str
    text: str


def module_name(path: str) -> str:
    """The dotted module a repository-relative ``.py`` path defines."""
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def repository_imports(path: str, tree: ast.Module, modules: set[str]) -> dict[str, str]:
    """Local names this file binds by importing from other files of the repository:
    name -> the module it comes from (``from pkg.util import f``, ``import pkg.util as u``,
    relative imports resolved against the file's own package)."""
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    own = module_name(path)
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                target = f"{module}.{alias.name}"
                # ``from pkg import util`` names a module; ``from pkg.util import f`` a member.
                source = target if target in modules else module
                if source in modules and source != own and alias.name != "*":
                    names[alias.asname or alias.name] = source
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.name != own:
                    names[alias.asname or alias.name.split(".")[0]] = alias.name
    return names


def _used_names(code: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Names an answer reads (not attribute names) and its calls in order, each as
    (called name, the name its chain starts from: ``git`` in ``git.Head(...)``)."""
    tree = _parse_fragment(code)
    if tree is None:
        return set(), []
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    calls = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Call)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    callees = []
    for call in calls:
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        root = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if name:
            callees.append((name, root.id if isinstance(root, ast.Name) else ""))
    return used, callees


def _parse_fragment(code: str) -> ast.AST | None:
    """Parse an expression or dedented statements; None when it does not parse alone."""
    import textwrap

    for attempt in (code.strip(), textwrap.dedent(code), f"f({code.strip()})"):
        try:
            return ast.parse(attempt)
        except SyntaxError:
            continue
    return None


class _Cutter:
    """Finds every candidate hole of one file."""

    def __init__(self, source: SourceFile, tree: ast.Module) -> None:
        self.source = source
        self.tree = tree
        self.lines = source.text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        """Character offset of an ast position (1-based line, utf-8 byte column)."""
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col].decode("utf-8", "replace"))

    def line_span(self, first: int, last: int) -> tuple[int, int]:
        return self.starts[first - 1], self.starts[last]

    def holes(self) -> Iterable[tuple[str, int, int]]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.stmt) and node.lineno == node.end_lineno:
                yield from self._line_holes(node)
            if isinstance(node, _BLOCKS):
                yield from self._body_hole("block", node.body)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if body and _is_docstring(body[0]):
                    body = body[1:]
                yield from self._body_hole("body", body)

    def _line_holes(self, node: ast.stmt) -> Iterable[tuple[str, int, int]]:
        lineno = node.lineno
        line = self.lines[lineno - 1]
        if not line.endswith("\n") or ";" in line:
            return
        line_end = self.starts[lineno] - 1
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            start = self.offset(lineno, node.value.col_offset)
            if self.source.text[start - 2 : start] == "= ":
                yield "assign", start, line_end
        if isinstance(node, ast.Return) and node.value is not None:
            yield "return", self.offset(lineno, node.value.col_offset), line_end
        call = _last_call_on_line(node)
        if call is not None and call.args + call.keywords:
            args_start = self.offset(lineno, call.func.end_col_offset or 0) + 1
            args_end = self.offset(lineno, call.end_col_offset or 0) - 1
            if self.source.text[args_start - 1] == "(" and self.source.text[args_end] == ")":
                yield "call", args_start, args_end
        trivial = ast.Pass | ast.Break | ast.Continue | ast.Import | ast.ImportFrom
        if not isinstance(node, trivial) and not _is_docstring(node):
            yield "line", *self.line_span(lineno, lineno)

    def _body_hole(self, kind: str, body: list[ast.stmt]) -> Iterable[tuple[str, int, int]]:
        if not body:
            return
        first, last = body[0].lineno, body[-1].end_lineno or body[-1].lineno
        if 2 <= last - first + 1 <= _MAX_BODY_LINES and self.lines[last - 1].endswith("\n"):
            yield kind, *self.line_span(first, last)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


def _last_call_on_line(node: ast.stmt) -> ast.Call | None:
    """The call whose closing bracket ends the statement's line, if any."""
    end = node.end_col_offset
    for child in ast.walk(node):
        if (
            isinstance(child, ast.Call)
            and child.lineno == child.end_lineno == node.lineno
            and child.end_col_offset == end
            and child.func.end_lineno == node.lineno
        ):
            return child
    return None


def cut_tasks(
    files: Sequence[SourceFile],
    *,
    kinds: Sequence[str] = KINDS,
    limit: int | None = None,
    seed: int = 0,
    per_file: int = 2,
    cross_file_only: bool = False,
) -> list[HoleTask]:
    """Holes from ``files``: up to ``per_file`` a file, non-overlapping, kinds interleaved.

    Deterministic for a seed. Files that do not parse are skipped (logged).
    """
    parsed: dict[str, ast.Module] = {}
    for source in files:
        try:
            parsed[source.path] = ast.parse(source.text)
        except (SyntaxError, ValueError):
            logger.info("skipping %s: it does not parse", source.path)
    modules = {module_name(path) for path in parsed}
    rng = random.Random(seed)
    by_kind: dict[str, list[HoleTask]] = defaultdict(list)
    for source in files:
        if source.path not in parsed:
            continue
        tree = parsed[source.path]
        for task in _file_tasks(source, tree, kinds, modules, rng, per_file, cross_file_only):
            by_kind[task.kind].append(task)
    for tasks in by_kind.values():
        rng.shuffle(tasks)
    # Round-robin over kinds so a limit keeps every kind represented.
    out: list[HoleTask] = []
    queues = [by_kind[kind] for kind in kinds if by_kind[kind]]
    while queues and (limit is None or len(out) < limit):
        for queue in list(queues):
            if limit is not None and len(out) >= limit:
                break
            out.append(queue.pop())
            if not queue:
                queues.remove(queue)
    return out


def _file_tasks(
    source: SourceFile,
    tree: ast.Module,
    kinds: Sequence[str],
    modules: set[str],
    rng: random.Random,
    per_file: int,
    cross_file_only: bool,
) -> list[HoleTask]:
    """Up to ``per_file`` non-overlapping holes of one file, in a seeded random order."""
    cutter = _Cutter(source, tree)
    found = [hole for hole in cutter.holes() if hole[0] in kinds]
    rng.shuffle(found)
    imported = repository_imports(source.path, tree, modules)
    taken: list[tuple[int, int]] = []
    tasks: list[HoleTask] = []
    for kind, start, end in found:
        if len(tasks) >= per_file:
            break
        answer = source.text[start:end]
        if len(answer.strip()) < _MIN_ANSWER_CHARS:
            continue
        # Holes in one file never share a line (the index masks them all at once).
        first = source.text.count("\n", 0, start)
        last = source.text.count("\n", 0, max(start, end - 1))
        if any(first <= b and a <= last for a, b in taken):
            continue
        used, callees = _used_names(answer)
        # Cross-file: the answer names something this file imports from another file; its
        # callee is then the first such function or class it calls (None if it calls none).
        elsewhere = {n for n in used if n in imported}
        if elsewhere:
            callee = next((c for c, root in callees if {c, root} & elsewhere), None)
        else:
            callee = callees[0][0] if callees else None
        if cross_file_only and not elsewhere:
            continue
        taken.append((first, last))
        tasks.append(
            HoleTask(
                task_id=f"{source.path}:{first + 1}:{kind}",
                path=source.path,
                original=source.text,
                start=start,
                end=end,
                kind=kind,
                cross_file=bool(elsewhere),
                callee=callee,
                meta={"defined_elsewhere": ",".join(sorted(elsewhere))},
            )
        )
    return tasks


def masked_text(text: str, tasks: Sequence[HoleTask]) -> str:
    """``text`` with every hole of ``tasks`` (all of one file) removed, as the index sees it."""
    for task in sorted(tasks, key=lambda t: t.start, reverse=True):
        text = text[: task.start] + ("\n" if task.line_hole else "") + text[task.end :]
    return text


def python_files(root: Path, paths: Iterable[str]) -> list[SourceFile]:
    """The readable ``.py`` files among ``paths`` (relative to ``root``)."""
    out = []
    for rel in paths:
        if not rel.endswith(".py"):
            continue
        try:
            out.append(SourceFile(rel, (root / rel).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            logger.info("skipping %s: not readable as UTF-8", rel)
    return out
