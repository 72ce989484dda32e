"""Ruff on an in-memory buffer (stdin, the workspace's configuration): what an edit adds; fixes."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import re
import signal
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.git_files import trusted_executable
from lint_bridge.api import LintBridgeError, Reason, Splice
from lint_bridge.ruff_config import config_args

logger = logging.getLogger(__name__)

SYNTAX_CODES = frozenset({"invalid-syntax", "E999"})
# A name the candidate binds and nothing uses yet is normal mid-edit: the code that uses it is
# not written yet (F841 unused variable, RUF059 unused unpacked variable, ARG unused argument).
_UNUSED_BINDING_CODES = frozenset(
    {"F841", "RUF059", "ARG001", "ARG002", "ARG003", "ARG004", "ARG005"}
)
_UNUSED_IMPORT = "F401"
# Whitespace ending where the insertion ends is where the user goes on typing (an editor's
# auto-indent, a file not saved with its final newline yet).
_CURSOR_WHITESPACE_CODES = frozenset({"W291", "W292", "W293", "W391"})
_IMPORTED_NAME = re.compile(r"`([^`]+)` imported but unused")
# "Redefinition of unused `f` from line 9": the number moves with any edit above line 9.
_LINE_NUMBER = re.compile(r"\bline \d+\b")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CACHE_SIZE = 32
# Applicabilities of a ruff fix that an editor may apply; "display-only" fixes are only shown.
OFFERED_APPLICABILITIES = frozenset({"safe", "unsafe"})
# Ruff before 0.1 named its applicabilities differently.
_OLD_APPLICABILITIES = {"automatic": "safe", "suggested": "unsafe", "manual": "display-only"}


@dataclass(frozen=True)
class RuffEdit:
    """One edit of a ruff fix: replace the range with ``content``.

    Positions are 0-based lines and code-point columns, as in RuffDiagnostic; lines end as
    ruff ends them (``\\r\\n``, ``\\r``, ``\\n``). ``offsets`` turns them into string offsets.
    """

    line: int
    column: int
    end_line: int
    end_column: int
    content: str

    def offsets(self, text: str) -> tuple[int, int]:
        """The edit's range as string offsets into ``text`` (the text ruff linted)."""
        return _lines_of(text).span(self.line, self.column, self.end_line, self.end_column)


@dataclass(frozen=True)
class RuffFix:
    """Ruff's own fix for a diagnostic: what it does, how safe it is, and its edits.

    ``applicability`` is ruff's word: ``safe`` keeps the code's meaning, ``unsafe`` may change
    it (offer it, but say so), ``display-only`` is never applied.
    """

    message: str
    applicability: str
    edits: tuple[RuffEdit, ...]

    @property
    def offered(self) -> bool:
        """Whether an editor may apply this fix (safe or unsafe, and it edits something)."""
        return self.applicability in OFFERED_APPLICABILITIES and bool(self.edits)

    @property
    def unsafe(self) -> bool:
        """Whether ruff warns that this fix may change what the code does."""
        return self.applicability != "safe"

    def splices(self, text: str) -> list[Splice]:
        """The edits as offset splices into ``text``, in document order (apply the last first).

        Raises LintBridgeError when edits overlap (the fix does not fit this text).
        """
        found = sorted(
            (Splice(*edit.offsets(text), edit.content) for edit in self.edits),
            key=lambda splice: (splice.start, splice.end),
        )
        for earlier, later in itertools.pairwise(found):
            if later.start < earlier.end:
                raise LintBridgeError(f"ruff fix {self.message!r} has overlapping edits")
        return found

    def as_splice(self, text: str) -> Splice:
        """All the edits as one splice from the first edit's start to the last edit's end."""
        parts = self.splices(text)
        if not parts:
            return Splice(0, 0, "")
        start, end = parts[0].start, parts[-1].end
        pieces: list[str] = []
        position = start
        for part in parts:
            pieces += [text[position : part.start], part.text]
            position = part.end
        return Splice(start, end, "".join(pieces))

    def apply(self, text: str) -> str:
        """``text`` with the fix applied."""
        return self.as_splice(text).apply(text)


@dataclass(frozen=True)
class RuffDiagnostic:
    """One ruff diagnostic; 0-based lines, columns in code points (ruff's own unit).

    ``fix`` is ruff's own fix when it has one (None also where the configuration makes the
    rule unfixable).
    """

    code: str
    message: str
    line: int
    column: int
    end_line: int
    end_column: int
    fix: RuffFix | None = None

    def offsets(self, text: str) -> tuple[int, int]:
        """The diagnostic's range as string offsets into ``text`` (the text ruff linted)."""
        return _lines_of(text).span(self.line, self.column, self.end_line, self.end_column)


def find_ruff() -> str | None:
    """The ruff executable: the one of the installed ``ruff`` package, else the one on PATH."""
    try:
        from ruff.__main__ import find_ruff_bin

        return os.fsdecode(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        return trusted_executable("ruff")  # never a ruff planted in the working directory


class RuffRunner:
    """Runs ruff as a subprocess with a timeout; caches results per (path, text)."""

    def __init__(
        self,
        timeout_s: float = 2.0,
        *,
        command: Sequence[str] | None = None,
        workspace_root: Path | None = None,
    ) -> None:
        """``command`` is the argv prefix that runs ruff (default: ``find_ruff()``);
        ``workspace_root``: configuration is read from inside it only (``ruff_config``)."""
        self.timeout_s = timeout_s
        self.workspace_root = workspace_root
        self._command = list(command) if command is not None else None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, bytes], tuple[RuffDiagnostic, ...]] = OrderedDict()
        self._pending: dict[tuple[str, bytes], asyncio.Task[tuple[RuffDiagnostic, ...] | None]]
        self._pending = {}
        self._warned: set[str] = set()

    async def diagnostics(self, text: str, path: Path) -> list[RuffDiagnostic] | None:
        """Ruff's diagnostics of ``text`` as the contents of ``path``; None when ruff failed."""
        key = (str(path), hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
        loop = asyncio.get_running_loop()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return list(cached)
            task = self._pending.get(key)
            if task is None or task.get_loop() is not loop:
                # One run per text even when several candidates ask for the same buffer at once.
                task = loop.create_task(self._run_safely(text, path))
                self._pending[key] = task
                task.add_done_callback(lambda done: self._finish(key, done))
        # Shielded: a cancelled candidate leaves the run to the others waiting on it.
        result = await asyncio.shield(task)
        return None if result is None else list(result)

    def _finish(
        self, key: tuple[str, bytes], task: asyncio.Task[tuple[RuffDiagnostic, ...] | None]
    ) -> None:
        with self._lock:
            if self._pending.get(key) is task:
                del self._pending[key]
            if task.cancelled() or task.exception() is not None:
                return
            result = task.result()
            if result is not None:
                self._cache[key] = result
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)

    async def new_diagnostics(
        self,
        before: str,
        after: str,
        splice: Splice,
        path: Path,
        *,
        module_exists: Callable[[str], bool | None] | None = None,
    ) -> list[Reason] | None:
        """Diagnostics of ``after`` that ``before`` had not and that the edit is to blame for.

        ``module_exists`` gets the dotted name of an unused import the candidate adds
        (``os.path``, ``json.loads_file``, ``.sibling``): True or None (unknown) excuses it as
        unfinished work, False keeps it as a reason. None when ruff could not run.
        """
        old, new = await asyncio.gather(
            self.diagnostics(before, path), self.diagnostics(after, path)
        )
        if old is None or new is None:
            return None
        return _new_reasons(old, new, before, after, splice, module_exists)

    def new_diagnostics_sync(
        self,
        before: str,
        after: str,
        splice: Splice,
        path: Path,
        *,
        module_exists: Callable[[str], bool | None] | None = None,
    ) -> list[Reason] | None:
        """``new_diagnostics`` for synchronous callers (a CLI, a worker thread with no loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise LintBridgeError("new_diagnostics_sync called inside an event loop; await it")
        return asyncio.run(
            self.new_diagnostics(before, after, splice, path, module_exists=module_exists)
        )

    async def _run_safely(self, text: str, path: Path) -> tuple[RuffDiagnostic, ...] | None:
        try:
            return await self._run(text, path)
        except Exception as error:
            # Lint is an extra check: whatever goes wrong running it, the candidate is unchecked.
            self._warn("error", f"running ruff failed: {type(error).__name__}: {error}")
            logger.debug("ruff run failed", exc_info=True)
            return None

    async def _run(self, text: str, path: Path) -> tuple[RuffDiagnostic, ...] | None:
        command = self._command
        if command is None:
            found = find_ruff()
            if found is None:
                self._warn("missing", "ruff is not installed; lint checks are skipped")
                return None
            command = self._command = [found]
        target = path.absolute()
        argv = [
            *command,
            "check",
            "--stdin-filename",
            str(target),
            "--output-format",
            "json",
            "--no-fix",
            "--no-cache",
            "--exit-zero",
            "--quiet",
            # Files the project's configuration excludes stay unlinted, as in the user's own runs.
            "--force-exclude",
            *config_args(target, self.workspace_root),
            "-",
        ]
        # RUFF_OUTPUT_FILE would send the report to a file instead of the pipe we read.
        env = {name: value for name, value in os.environ.items() if name != "RUFF_OUTPUT_FILE"}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Configuration is found from --stdin-filename; the cwd only has to exist.
                cwd=_existing_directory(target.parent),
                env=env,
                # Its own process group, so a kill also ends anything it started.
                start_new_session=True,
            )
        except OSError as error:
            self._warn("missing", f"ruff could not start ({error}); lint checks are skipped")
            return None
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(text.encode("utf-8", "replace")), self.timeout_s
            )
        except TimeoutError:
            self._warn("timeout", f"ruff took over {self.timeout_s}s on {target}; killed")
            return None
        finally:
            if process.returncode is None:
                _kill_group(process)
                await process.wait()
        if process.returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip().splitlines()
            reason = detail[0] if detail else f"exit status {process.returncode}"
            self._warn("failed", f"ruff failed on {target}: {reason}")
            return None
        parsed = _parse_output(stdout)
        if parsed is None:
            self._warn("output", f"ruff printed no JSON report: {stdout[:80]!r}")
        return parsed

    def _warn(self, cause: str, message: str) -> None:
        with self._lock:
            first = cause not in self._warned
            self._warned.add(cause)
        logger.log(logging.WARNING if first else logging.DEBUG, message)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def _existing_directory(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.is_dir():
            return candidate
    return Path.cwd()


def _parse_output(stdout: bytes) -> tuple[RuffDiagnostic, ...] | None:
    """Ruff's JSON report as diagnostics; None when it is not one."""
    if not stdout.strip():
        return ()
    try:
        items = json.loads(stdout)
        return tuple(_diagnostic(item) for item in items)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _diagnostic(item: dict[str, object]) -> RuffDiagnostic:
    start = item["location"]
    end = item["end_location"] or start
    if not isinstance(start, dict) or not isinstance(end, dict):
        raise TypeError("location is not an object")
    code = item.get("code") or "invalid-syntax"  # older ruff: no code for a syntax error
    return RuffDiagnostic(
        code=str(code),
        message=str(item["message"]),
        line=int(start["row"]) - 1,
        column=int(start["column"]) - 1,
        end_line=int(end["row"]) - 1,
        end_column=int(end["column"]) - 1,
        fix=_fix(item.get("fix")),
    )


def _applicability(value: object) -> str:
    """Ruff's applicability in today's words; anything unknown is treated as unsafe."""
    word = str(value or "unsafe").lower()
    word = _OLD_APPLICABILITIES.get(word, word)
    return word if word in {"safe", "unsafe", "display-only"} else "unsafe"


def _fix(item: object) -> RuffFix | None:
    """Ruff's ``fix`` object; None when there is none or it has a shape we do not know."""
    if not isinstance(item, dict):
        return None
    try:
        edits = []
        for edit in item["edits"]:
            start, end = edit["location"], edit["end_location"]
            edits.append(
                RuffEdit(
                    line=int(start["row"]) - 1,
                    column=int(start["column"]) - 1,
                    end_line=int(end["row"]) - 1,
                    end_column=int(end["column"]) - 1,
                    content=str(edit.get("content") or ""),
                )
            )
    except (ValueError, TypeError, KeyError, AttributeError):
        # A fix we cannot read only costs that fix, never the diagnostics themselves.
        logger.debug("ruff fix not understood: %r", item)
        return None
    return RuffFix(
        # Ruff leaves the message out for some fixes; the editor still needs a title.
        message=str(item.get("message") or "Apply ruff's fix"),
        applicability=_applicability(item.get("applicability")),
        edits=tuple(edits),
    )


@functools.lru_cache(maxsize=4)
def _lines_of(text: str) -> _Lines:
    # Offsets of every diagnostic of one text are asked in a row: index its lines once.
    return _Lines(text)


class _Lines:
    """String offsets of line starts; lines end as ruff ends them (\\r\\n, \\r, \\n)."""

    def __init__(self, text: str) -> None:
        self.length = len(text)
        self.starts = [0, *(match.end() for match in _LINE_BREAK.finditer(text))]

    def offset(self, line: int, column: int) -> int:
        if line >= len(self.starts):
            return self.length
        return min(self.starts[max(line, 0)] + max(column, 0), self.length)

    def span(self, line: int, column: int, end_line: int, end_column: int) -> tuple[int, int]:
        start = self.offset(line, column)
        return start, max(start, self.offset(end_line, end_column))


def _new_reasons(
    old: list[RuffDiagnostic],
    new: list[RuffDiagnostic],
    before: str,
    after: str,
    splice: Splice,
    module_exists: Callable[[str], bool | None] | None,
) -> list[Reason]:
    """Match diagnostics across the edit as a multiset; keep the unmatched ones it is blamed for."""
    before_lines, after_lines = _Lines(before), _Lines(after)
    fixed: Counter[tuple[str, str, int]] = Counter()
    floating: Counter[tuple[str, str]] = Counter()
    for diagnostic in old:
        key = diagnostic.code, _LINE_NUMBER.sub("line N", diagnostic.message)
        offset = before_lines.offset(diagnostic.line, diagnostic.column)
        if offset < splice.start:
            fixed[(*key, offset)] += 1
        elif offset > splice.end:
            fixed[(*key, offset + splice.delta)] += 1
        else:
            # Inside the replaced range (or at the cursor): it may now sit anywhere in the text.
            floating[key] += 1
    unmatched: list[tuple[RuffDiagnostic, tuple[str, str], int, int]] = []
    for diagnostic in new:
        key = diagnostic.code, _LINE_NUMBER.sub("line N", diagnostic.message)
        offset = after_lines.offset(diagnostic.line, diagnostic.column)
        if fixed[(*key, offset)] > 0:
            fixed[(*key, offset)] -= 1
            continue
        end = after_lines.offset(diagnostic.end_line, diagnostic.end_column)
        unmatched.append((diagnostic, key, offset, end))
    # Ruff reports nothing but syntax errors for a buffer that does not parse: compared with one,
    # everything else in ``after`` is new, and only what lies in the inserted text is blamed.
    before_parsed = not any(diagnostic.code in SYNTAX_CODES for diagnostic in old)
    line_start = after_lines.starts[bisect.bisect_right(after_lines.starts, splice.start) - 1]
    reasons = []
    for diagnostic, key, offset, end in unmatched:
        if splice.start <= offset <= splice.new_end and floating[key] > 0:
            floating[key] -= 1
            continue
        touches = offset <= splice.new_end and end >= splice.start
        syntax = diagnostic.code in SYNTAX_CODES
        inside = touches and offset >= line_start
        if not (syntax or before_parsed or inside):
            continue
        if touches and _unfinished(diagnostic, end, splice, module_exists):
            continue
        reasons.append(
            Reason(
                kind="ruff",
                code=diagnostic.code,
                message=diagnostic.message,
                line=diagnostic.line,
                column=diagnostic.column,
            )
        )
    return reasons


def _unfinished(
    diagnostic: RuffDiagnostic,
    end: int,
    splice: Splice,
    module_exists: Callable[[str], bool | None] | None,
) -> bool:
    """Whether a diagnostic on the inserted text only says the user has not finished yet."""
    if diagnostic.code in _UNUSED_BINDING_CODES:
        return True
    if diagnostic.code in _CURSOR_WHITESPACE_CODES:
        return end >= splice.new_end
    if diagnostic.code == _UNUSED_IMPORT:
        match = _IMPORTED_NAME.search(diagnostic.message)
        if match is None or module_exists is None:
            return True
        try:
            exists = module_exists(match.group(1))
        except Exception:
            logger.debug("module_exists(%r) failed", match.group(1), exc_info=True)
            exists = None
        # An import of a module that does not exist is a hallucination, not unfinished work.
        return exists is not False
    return False
