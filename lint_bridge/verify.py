"""Verify a candidate edit: it must parse, add no new ruff diagnostics and name only real symbols.

The verdict is ``accept``, ``repair`` (the longest prefix of the candidate, cut at a
line boundary, that passes) or ``reject``. Checks that cannot run (no grammar for
the language, ruff missing) are reported as ``unchecked``, never as failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lint_bridge.api import CheckSettings, Document, LintBridgeError, Reason, Splice, Verdict
from lint_bridge.names import unknown_symbols
from lint_bridge.resolve import ModuleResolver, default_resolver
from lint_bridge.ruff import SYNTAX_CODES, RuffRunner
from lint_bridge.syntax import has_syntax_check, syntax_errors

logger = logging.getLogger(__name__)

KnownSymbols = Callable[[str], bool | None]


@dataclass(frozen=True)
class _Outcome:
    reasons: list[Reason]
    unchecked: list[str]


class Verifier:
    """Runs the checks for one workspace; reuse it (it caches parses and lint results)."""

    def __init__(
        self,
        settings: CheckSettings | None = None,
        *,
        workspace_root: Path | None = None,
        known_symbols: KnownSymbols | None = None,
        resolver: ModuleResolver | None = None,
    ) -> None:
        self.settings = settings or CheckSettings()
        self.workspace_root = workspace_root
        self.known_symbols = known_symbols
        self._resolver = resolver
        self.ruff = RuffRunner(
            timeout_s=self.settings.ruff_timeout_s, workspace_root=workspace_root
        )

    @property
    def resolver(self) -> ModuleResolver:
        """The static module resolver, built on first use."""
        if self._resolver is None:
            self._resolver = default_resolver(self.workspace_root)
        return self._resolver

    async def _run(self, doc: Document, splice: Splice, *, exhaustive: bool = False) -> _Outcome:
        """Run the checks, cheapest first; unless ``exhaustive``, stop at the first failure.

        A candidate the parser or the symbol check already refuses cannot be saved by
        ruff, so ruff (a process per run) is spared: that keeps rejections and repair
        attempts fast. ``exhaustive`` collects every reason (for ``apprentice check``).
        """
        after = splice.apply(doc.text)
        reasons: list[Reason] = []
        unchecked: list[str] = []
        settings = self.settings
        # Parsing and symbol resolution are CPU work: off the event loop, in a thread.
        if settings.syntax:
            if has_syntax_check(doc.language):
                try:
                    reasons += await asyncio.to_thread(
                        syntax_errors, doc.text, after, splice, doc.language
                    )
                except LintBridgeError as error:
                    logger.info("syntax not checked: %s", error)
                    unchecked.append("syntax")
            else:
                unchecked.append("syntax")
        python = doc.language == "python"
        if settings.symbols:
            if python and not any(r.kind == "syntax" for r in reasons):
                reasons += await asyncio.to_thread(
                    unknown_symbols,
                    after,
                    splice,
                    path=doc.path,
                    resolver=self.resolver,
                    known_symbols=self.known_symbols,
                )
            elif not python:
                unchecked.append("symbols")
        if reasons and not exhaustive:
            return _Outcome(reasons, unchecked)
        if settings.ruff:
            if python:
                found = await self.ruff.new_diagnostics(
                    doc.text, after, splice, doc.path, module_exists=self._module_exists
                )
                if found is None:
                    unchecked.append("ruff")
                else:
                    reasons += _without_duplicates(found, reasons)
            else:
                unchecked.append("ruff")
        return _Outcome(reasons, unchecked)

    def _module_exists(self, name: str) -> bool | None:
        exists = self.resolver.module_exists(name)
        if exists is False and self.known_symbols is not None:
            return self.known_symbols(name)
        return exists

    async def check(self, doc: Document, splice: Splice, *, exhaustive: bool = False) -> Verdict:
        """Verify one candidate; repair it to its longest passing line prefix if it fails."""
        started = time.perf_counter()
        outcome = await self._run(doc, splice, exhaustive=exhaustive)
        if not outcome.reasons:
            return Verdict("accept", splice.text, [], _ms(started), outcome.unchecked)
        for prefix in _line_prefixes(splice.text):
            shorter = Splice(splice.start, splice.end, prefix)
            if (await self._run(doc, shorter)).reasons:
                continue
            return Verdict("repair", prefix, outcome.reasons, _ms(started), outcome.unchecked)
        return Verdict("reject", None, outcome.reasons, _ms(started), outcome.unchecked)

    def check_sync(self, doc: Document, splice: Splice, *, exhaustive: bool = False) -> Verdict:
        """``check`` for callers without an event loop (the CLI, benchmarks)."""
        return asyncio.run(self.check(doc, splice, exhaustive=exhaustive))

    async def select(
        self, doc: Document, candidates: Sequence[Splice]
    ) -> tuple[int, Verdict] | None:
        """The first candidate that passes whole, else the longest repair; None if all fail.

        Candidates are checked concurrently (each ruff run is its own process).
        """
        verdicts = await asyncio.gather(*(self.check(doc, c) for c in candidates))
        for index, verdict in enumerate(verdicts):
            if verdict.verdict == "accept":
                return index, verdict
        repairs = [(i, v) for i, v in enumerate(verdicts) if v.verdict == "repair" and v.text]
        if repairs:
            return max(repairs, key=lambda pair: len(pair[1].text or ""))
        return None


def _line_prefixes(text: str) -> list[str]:
    """Non-empty prefixes of ``text`` ending at a line boundary, longest first.

    A suggestion that starts with a newline (a block after ``if x:``) keeps it;
    prefixes that are only whitespace are no suggestion at all.
    """
    lines = text.split("\n")
    prefixes = []
    for count in range(len(lines) - 1, 0, -1):
        prefix = "\n".join(lines[:count]).rstrip()
        if prefix.strip() and prefix not in prefixes and prefix != text:
            prefixes.append(prefix)
    return prefixes


def _without_duplicates(found: list[Reason], existing: list[Reason]) -> list[Reason]:
    """Drop ruff reasons that repeat one already given: one reason per problem.

    A syntax error is reported by the syntax check (ruff adds ``invalid-syntax``);
    an unknown name by the symbol check (ruff adds F821, or F401 for an import of
    a name that does not exist).
    """
    broken = any(r.kind == "syntax" for r in existing)
    places = {(r.line, r.column) for r in existing if r.kind == "unknown-symbol"}
    lines = {r.line for r in existing if r.kind == "unknown-symbol"}
    kept = []
    for reason in found:
        if broken and reason.code in SYNTAX_CODES:
            continue
        if reason.code == "F821" and (reason.line, reason.column) in places:
            continue
        if reason.code == "F401" and reason.line in lines:
            continue
        kept.append(reason)
    return kept


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
