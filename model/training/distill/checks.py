"""Keep only verified samples: lint_bridge's verdict, then the repository's tests where they apply.

A completion sample goes into the buffer with the hole, as the server checks a suggestion;
a fix sample must remove its diagnostic and add nothing (``verify_fix``). Where tests in
the repository name the function around the hole and pass on the original code, a sample
must keep them passing: they run in the sandbox (``model.training.sandbox``) against a copy of
the repository with the sample written into it.

One checker serves every thread of a concurrent run. The lint and symbol checks of
different threads take turns (``parsing``, below); the test runs, the slow part, run at
once, each in a repository copy no other run is using (at most one copy per thread, made
when first needed).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import logging
import re
import shutil
import sysconfig
import tempfile
import threading
from pathlib import Path

from lint_bridge.api import Document, Splice
from lint_bridge.fixes import verify_fix
from lint_bridge.ruff import RuffDiagnostic
from lint_bridge.verify import Verifier
from model.training.distill.tasks import FIX_KIND, Task

logger = logging.getLogger(__name__)

_MAX_TEST_FILES = 2
_TEST_NAME = re.compile(r"(?:^|/)(?:test_[^/]*|[^/]*_test)\.py$")


class SampleChecker:
    """Verifies samples of one repository's tasks; reuse it for the whole repository.

    ``parsing`` is held while a check builds Python syntax trees in this process: CPython
    3.11 keeps the AST constructor's recursion count in state shared by all threads, so
    two ``ast.parse`` at once can fail with "SystemError: AST constructor recursion depth
    mismatch". Whoever else parses while checks run (distillation cutting the next file's
    tasks) holds the same lock.
    """

    def __init__(
        self,
        root: Path,
        *,
        run_tests: bool = True,
        test_timeout_s: float = 60.0,
        parsing: threading.Lock | None = None,
    ):
        self.root = root
        self.verifier = Verifier(workspace_root=root)
        self.tests = TestGate(root, test_timeout_s) if run_tests and can_execute() else None
        self.parsing = parsing or threading.Lock()

    def check(self, task: Task, text: str, middle: str) -> str | None:
        """None when ``middle`` passes every check for ``task`` in ``text``; else why not."""
        with self.parsing:
            reason, after = self._lint(task, text, middle)
            tests = self.tests.covering(task, text) if self.tests and reason is None else ()
        if reason is not None or not tests:
            return reason
        assert self.tests is not None
        return self.tests.check(task, text, after, tests)

    def _lint(self, task: Task, text: str, middle: str) -> tuple[str | None, str]:
        """Why the verifier refuses ``middle`` (None: it passes), and the text with it."""
        path = self.root / task.path
        if task.kind == FIX_KIND:
            assert task.diagnostic is not None
            indent = task.prefix[len(task.prefix.rstrip(" \t")) :]
            splice = Splice(task.start, task.end, indent + middle)
            doc = Document(path=path, text=text, language=task.language)
            target = RuffDiagnostic(
                code=task.diagnostic["code"],
                message=task.diagnostic["message"],
                line=task.diagnostic["line"],
                column=task.diagnostic["column"],
                end_line=task.diagnostic["line"],
                end_column=task.diagnostic["column"],
            )
            fixed = asyncio.run(verify_fix(self.verifier, doc, splice, target))
            after = splice.apply(text)
            if not fixed.ok:
                return _fix_reason(fixed.reasons[0] if fixed.reasons else "not verified"), after
            return None, after
        holed = task.prefix + task.suffix
        splice = Splice(len(task.prefix), len(task.prefix), middle)
        verdict = self.verifier.check_sync(Document(path, holed, task.language), splice)
        after = splice.apply(holed)
        if verdict.verdict != "accept":
            return _reason_label(verdict.reasons[0].label if verdict.reasons else "reject"), after
        return None, after

    def close(self) -> None:
        """Remove the repository copy the tests ran in."""
        if self.tests is not None:
            self.tests.close()


def _reason_label(label: str) -> str:
    """``unknown-symbol:os.pathx`` counts as ``unknown-symbol``; ruff codes stay apart."""
    return label.split(":", 1)[0] if label.startswith("unknown-symbol") else label


def _fix_reason(reason: str) -> str:
    """A fix's first refusal as a count key: ``fix:not-fixed``, ``fix:new-ruff:F401`` ..."""
    if reason.endswith(" is still reported"):
        return "fix:not-fixed"
    label = reason.split(" ", 1)[0].rstrip(":")
    if reason.endswith(" is new"):
        return f"fix:new-{label}"
    return "fix:" + _reason_label(label)


@functools.lru_cache(maxsize=1)
def can_execute() -> bool:
    """Whether samples can run against the repository's tests here; says once when not."""
    from model.training.sandbox import sandbox_unavailable_reason

    reason = sandbox_unavailable_reason()
    if reason is not None:
        logger.warning(
            "execution filtering is off (samples are checked by lint and symbols only): %s",
            reason,
        )
    return reason is None


class TestGate:
    """Runs the tests that name a task's function, on the original and on each sample.

    Thread-safe: each set of tests runs once on the original code (other threads wanting
    it wait), and each run has a repository copy to itself.
    """

    __test__ = False  # not a pytest class

    def __init__(self, root: Path, timeout_s: float) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._tests: list[tuple[str, str]] | None = None
        self._copies: list[Path] = []  # every copy made
        self._free: list[Path] = []  # the copies no run is using
        self._baseline: dict[tuple[str, ...], bool] = {}
        self._baseline_locks: dict[tuple[str, ...], threading.Lock] = {}
        self.runs = 0

    def covering(self, task: Task, text: str) -> tuple[str, ...]:
        """Test files (repository-relative) that name the function holding the hole."""
        name = _enclosing_function(text, task.start)
        if name is None or name.startswith("__"):
            return ()
        with self._lock:
            if self._tests is None:
                self._tests = _test_files(self.root)
            found = self._tests
        word = re.compile(rf"\b{re.escape(name)}\b")
        hits = [path for path, body in found if path != task.path and word.search(body)]
        return tuple(hits[:_MAX_TEST_FILES])

    def check(
        self, task: Task, original: str, edited: str, tests: tuple[str, ...] | None = None
    ) -> str | None:
        """None when the covering tests (if any, and passing on the original) still pass.

        ``tests`` are the covering tests when the caller has found them already.
        """
        tests = self.covering(task, original) if tests is None else tests
        if not tests:
            return None
        if not self._passes_on_original(task.path, original, tests):
            return None
        return None if self._run(task.path, edited, tests) else "tests"

    def _passes_on_original(self, path: str, original: str, tests: tuple[str, ...]) -> bool:
        with self._lock:
            once = self._baseline_locks.setdefault(tests, threading.Lock())
        with once:
            if tests not in self._baseline:
                self._baseline[tests] = self._run(path, original, tests)
                if not self._baseline[tests]:
                    logger.info("tests %s fail on the original code: not used", ", ".join(tests))
            return self._baseline[tests]

    def _run(self, path: str, text: str, tests: tuple[str, ...]) -> bool:
        from model.training.sandbox import SandboxLimits, run_python

        copy = self._take_copy()
        target = copy / path
        original = target.read_bytes()
        target.write_text(text, encoding="utf-8")
        try:
            result = run_python(
                _pytest_program(copy, tests),
                SandboxLimits(
                    timeout_s=self.timeout_s, cpu_s=int(self.timeout_s) + 1, memory_mb=2048
                ),
                read_only=[copy, *_site_packages()],
            )
        finally:
            target.write_bytes(original)
            with self._lock:
                self._free.append(copy)
                self.runs += 1
        logger.debug("tests %s on %s: %s", tests, path, result.reason)
        return result.passed

    def _take_copy(self) -> Path:
        """A repository copy for one run: a free one, or a new one when all are in use."""
        with self._lock:
            if self._free:
                return self._free.pop()
        copy = Path(tempfile.mkdtemp(prefix="apprentice-distill-tests-")) / "repo"
        shutil.copytree(
            self.root,
            copy,
            ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv"),
            symlinks=True,
        )
        with self._lock:
            self._copies.append(copy)
        return copy

    def close(self) -> None:
        """Remove the repository copies."""
        with self._lock:
            copies, self._copies, self._free = self._copies, [], []
        for copy in copies:
            with contextlib.suppress(OSError):
                shutil.rmtree(copy.parent)


def _test_files(root: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not _TEST_NAME.search(rel):
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            found.append((rel, path.read_text(encoding="utf-8")))
    return found


def _enclosing_function(text: str, offset: int) -> str | None:
    """The name of the innermost function whose lines hold ``offset`` (None at module level)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    line = text.count("\n", 0, offset) + 1
    best: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end and (best is None or node.lineno >= best.lineno):
                best = node
    return best.name if best is not None else None


def _site_packages() -> list[str]:
    """Where pytest and the repository's dependencies are installed (bound read-only)."""
    return list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))


def _pytest_program(copy: Path, tests: tuple[str, ...]) -> str:
    """The sandboxed program: pytest on ``tests`` inside the copy, writing nothing."""
    paths = _site_packages()
    args = [
        "-q",
        "-x",
        "-s",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:logging",
        "--rootdir",
        str(copy),
        *tests,
    ]
    # The copy and the packages are read-only in the sandbox; temp files go to its own
    # directory, the only writable one.
    return (
        "import os, sys, tempfile\n"
        "sys.dont_write_bytecode = True\n"
        "tempfile.tempdir = os.getcwd()\n"
        "os.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'\n"
        "sys.stdout = sys.stderr\n"
        f"sys.path[:0] = {[str(copy), *paths]!r}\n"
        f"os.chdir({str(copy)!r})\n"
        "import pytest\n"
        f"sys.exit(pytest.main({args!r}))\n"
    )
