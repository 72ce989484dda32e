"""Keep only verified samples: lint_bridge's verdict, then the repository's tests where they apply.

A completion sample goes into the buffer with the hole, as the server checks a suggestion;
a fix sample must remove its diagnostic and add nothing (``verify_fix``). Where tests in
the repository name the function around the hole and pass on the original code, a sample
must keep them passing: they run in the sandbox (``model.training.sandbox``) against a copy of
the repository with the sample written into it.
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
    """Verifies samples of one repository's tasks; reuse it for the whole repository."""

    def __init__(self, root: Path, *, run_tests: bool = True, test_timeout_s: float = 60.0):
        self.root = root
        self.verifier = Verifier(workspace_root=root)
        self.tests = TestGate(root, test_timeout_s) if run_tests and can_execute() else None

    def check(self, task: Task, text: str, middle: str) -> str | None:
        """None when ``middle`` passes every check for ``task`` in ``text``; else why not."""
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
            if not fixed.ok:
                return _fix_reason(fixed.reasons[0] if fixed.reasons else "not verified")
            after = splice.apply(text)
        else:
            holed = task.prefix + task.suffix
            splice = Splice(len(task.prefix), len(task.prefix), middle)
            verdict = self.verifier.check_sync(Document(path, holed, task.language), splice)
            if verdict.verdict != "accept":
                return _reason_label(verdict.reasons[0].label if verdict.reasons else "reject")
            after = splice.apply(holed)
        if self.tests is not None:
            return self.tests.check(task, text, after)
        return None

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
    """Runs the tests that name a task's function, on the original and on each sample."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path, timeout_s: float) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self._tests: list[tuple[str, str]] | None = None
        self._copy: Path | None = None
        self._baseline: dict[tuple[str, ...], bool] = {}
        self.runs = 0

    def covering(self, task: Task, text: str) -> tuple[str, ...]:
        """Test files (repository-relative) that name the function holding the hole."""
        name = _enclosing_function(text, task.start)
        if name is None or name.startswith("__"):
            return ()
        if self._tests is None:
            self._tests = _test_files(self.root)
        word = re.compile(rf"\b{re.escape(name)}\b")
        hits = [path for path, body in self._tests if path != task.path and word.search(body)]
        return tuple(hits[:_MAX_TEST_FILES])

    def check(self, task: Task, original: str, edited: str) -> str | None:
        """None when the covering tests (if any, and passing on the original) still pass."""
        tests = self.covering(task, original)
        if not tests:
            return None
        if tests not in self._baseline:
            self._baseline[tests] = self._run(task.path, original, tests)
            if not self._baseline[tests]:
                logger.info("tests %s fail on the original code: not used", ", ".join(tests))
        if not self._baseline[tests]:
            return None
        return None if self._run(task.path, edited, tests) else "tests"

    def _run(self, path: str, text: str, tests: tuple[str, ...]) -> bool:
        from model.training.sandbox import SandboxLimits, run_python

        copy = self._repository_copy()
        target = copy / path
        original = target.read_bytes()
        target.write_text(text, encoding="utf-8")
        self.runs += 1
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
        logger.debug("tests %s on %s: %s", tests, path, result.reason)
        return result.passed

    def _repository_copy(self) -> Path:
        if self._copy is None:
            self._copy = Path(tempfile.mkdtemp(prefix="apprentice-distill-tests-")) / "repo"
            shutil.copytree(
                self.root,
                self._copy,
                ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv"),
                symlinks=True,
            )
        return self._copy

    def close(self) -> None:
        """Remove the repository copy."""
        if self._copy is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._copy.parent)
            self._copy = None


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
