"""Code-action fixes for ruff diagnostics: which to offer, and a verified model rewrite on resolve.

Listing is cheap (``fix_offers`` only reads diagnostics); ``FixPipeline.propose`` does the work
when the editor resolves an "Apprentice: fix" action. Nothing here imports pygls.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lint_bridge.api import Document, Splice
from lint_bridge.fixes import FixVerdict, replacement_span, verify_fix
from lint_bridge.ruff import RuffDiagnostic, RuffFix
from lint_bridge.verify import Verifier
from lsp.core.text.clean import CompletionPlan, clean_completion, plan_completion
from model.runtime.api import Backend, CancelToken, CompletionRequest
from model.runtime.fim import FimTemplate, TemplateChoice
from model.runtime.fixhint import MAX_FIX_LINES, hint_lines
from model.runtime.prompt import BuiltPrompt, PromptInput, Snippet, build_prompt, comment_syntax

logger = logging.getLogger(__name__)

_fix_ids = itertools.count(1)
_TITLE_MESSAGE = 60


@dataclass(frozen=True)
class FixSettings:
    """Knobs of one model fix; every one defaulted."""

    candidates: int = 3
    temperature: float = 0.0
    sample_temperature: float = 0.6
    max_tokens: int = 256
    min_tokens: int = 32
    context_budget: int = 1024
    fim_template: str | None = None
    timeout_s: float = 20.0
    # A statement longer than this is left alone: a small model cannot rewrite it whole.
    max_lines: int = MAX_FIX_LINES


@dataclass(frozen=True)
class FixOffer:
    """One code action to list: ruff's own fix, or a model fix computed on resolve."""

    kind: Literal["ruff", "apprentice"]
    title: str
    target: RuffDiagnostic

    def data(self) -> dict[str, object]:
        """What the action carries to ``codeAction/resolve`` to find its diagnostic again."""
        return {
            "kind": self.kind,
            "code": self.target.code,
            "line": self.target.line,
            "column": self.target.column,
            "message": self.target.message,
        }


@dataclass(frozen=True)
class ProposedFix:
    """A verified replacement of ``text[start:end]`` that removes the target diagnostic."""

    start: int
    end: int
    new_text: str
    title: str
    verdict: FixVerdict
    candidates: int
    model: str
    latency_ms: float

    @property
    def splice(self) -> Splice:
        """The fix as a lint bridge edit."""
        return Splice(self.start, self.end, self.new_text)


def ruff_fix_title(fix: RuffFix) -> str:
    """The action title of ruff's own fix; an unsafe fix says so."""
    return f"Ruff: {fix.message}" + (" (unsafe)" if fix.unsafe else "")


def apprentice_fix_title(target: RuffDiagnostic) -> str:
    """The action title of a model fix for ``target``."""
    message = target.message
    if len(message) > _TITLE_MESSAGE:
        message = message[: _TITLE_MESSAGE - 1] + "…"
    return f"Apprentice: fix {target.code} ({message})"


def fix_offers(
    diagnostics: Sequence[RuffDiagnostic], first_line: int, last_line: int
) -> list[FixOffer]:
    """The actions for diagnostics touching lines ``first_line..last_line`` (0-based, inclusive).

    Ruff's own fix when it has one an editor may apply; otherwise a model fix.
    """
    offers = []
    for diagnostic in diagnostics:
        if diagnostic.end_line < first_line or diagnostic.line > last_line:
            continue
        if diagnostic.fix is not None and diagnostic.fix.offered:
            offers.append(FixOffer("ruff", ruff_fix_title(diagnostic.fix), diagnostic))
        else:
            offers.append(FixOffer("apprentice", apprentice_fix_title(diagnostic), diagnostic))
    return offers


def find_target(diagnostics: Sequence[RuffDiagnostic], data: object) -> RuffDiagnostic | None:
    """The diagnostic a ``FixOffer.data()`` names, among the text's current diagnostics."""
    if not isinstance(data, dict):
        return None
    for diagnostic in diagnostics:
        if (
            diagnostic.code == data.get("code")
            and diagnostic.line == data.get("line")
            and diagnostic.column == data.get("column")
        ):
            return diagnostic
    return None


class FixPipeline:
    """Asks the model to rewrite the statement holding a diagnostic; keeps only verified fixes."""

    def __init__(
        self, backend: Backend, verifier: Verifier, settings: FixSettings | None = None
    ) -> None:
        self.backend = backend
        self.verifier = verifier
        self.settings = settings or FixSettings()
        self._template = TemplateChoice(self.settings.fim_template)

    def template(self) -> FimTemplate | None:
        """The FIM template for the backend's model (None: prefix-only), chosen once."""
        return self._template.for_model(self.backend.info())

    def propose(
        self,
        doc: Document,
        target: RuffDiagnostic,
        cancel: CancelToken | None = None,
        *,
        snippets: Sequence[Snippet] = (),
    ) -> ProposedFix | None:
        """A verified fix of ``target`` in ``doc``, or None. Runs in a worker thread (no loop)."""
        started = time.monotonic()
        fix_id = next(_fix_ids)
        settings = self.settings
        current = asyncio.run(self.verifier.ruff.diagnostics(doc.text, doc.path))
        if current is None or not any(_same_place(d, target) for d in current):
            logger.info("fix #%d %s: not reported in this text", fix_id, target.code)
            return None
        job = self._job(doc, target, snippets)
        if job is None:
            logger.info("fix #%d %s: statement too long to rewrite", fix_id, target.code)
            return None
        deadline = started + settings.timeout_s
        tried: set[str] = set()
        rejected: list[str] = []
        count = 0
        for attempt in range(max(1, settings.candidates)):
            if (cancel is not None and cancel.cancelled) or time.monotonic() > deadline:
                break
            stream = self.backend.complete(
                CompletionRequest(
                    prompt=job.built.prompt,
                    max_tokens=job.max_tokens,
                    stop=job.plan.stop,
                    stop_tokens=job.built.stop_tokens,
                    deadline=deadline,
                    cancel=cancel,
                    # The first candidate is greedy; later ones sample, so they differ.
                    temperature=settings.sample_temperature if attempt else settings.temperature,
                    seed=None if attempt == 0 else attempt,
                )
            )
            raw = stream.text()
            count += 1
            if stream.usage.finish_reason in ("cancelled", "deadline"):
                break
            new_text, why = job.candidate(raw, cut=stream.usage.finish_reason == "length")
            if new_text is None or new_text in tried:
                rejected.append(why or "a repeat")
                continue
            tried.add(new_text)
            verdict = asyncio.run(
                verify_fix(self.verifier, doc, Splice(job.start, job.end, new_text), target)
            )
            if not verdict.ok:
                rejected.extend(verdict.reasons)
                continue
            latency_ms = (time.monotonic() - started) * 1000
            logger.info(
                "fix #%d %s: verified after %d candidate(s), %.0f ms",
                fix_id,
                target.code,
                count,
                latency_ms,
            )
            return ProposedFix(
                start=job.start,
                end=job.end,
                new_text=new_text,
                title=apprentice_fix_title(target),
                verdict=verdict,
                candidates=count,
                model=stream.usage.model,
                latency_ms=latency_ms,
            )
        logger.info("fix #%d %s: no verified fix after %d candidate(s)", fix_id, target.code, count)
        # The reasons quote the candidates (names, ruff messages): model text, DEBUG only.
        logger.debug("fix #%d rejected: %s", fix_id, "; ".join(rejected) or "cancelled")
        return None

    def _job(
        self, doc: Document, target: RuffDiagnostic, snippets: Sequence[Snippet]
    ) -> _Job | None:
        """The region to rewrite and the prompt asking for it; None when it is too long."""
        settings = self.settings
        start, end = replacement_span(doc.text, doc.language, target.line)
        original = doc.text[start:end]
        lines = original.count("\n") + 1
        if lines > settings.max_lines:
            return None
        indent = original[: len(original) - len(original.lstrip(" \t"))]
        hints = hint_lines(target.code, target.message, original, indent, doc.language)
        prefix = doc.text[:start] + "".join(line + "\n" for line in hints) + indent
        suffix = doc.text[end:]
        built = build_prompt(
            PromptInput(
                path=_display_path(doc.path, self.verifier.workspace_root),
                language=doc.language,
                prefix=prefix,
                suffix=suffix,
                snippets=tuple(snippets),
            ),
            self.template(),
            self.backend.count_tokens,
            settings.context_budget,
        )
        # Room for a rewrite twice the statement's length; one that fills it may be cut short.
        max_lines = 2 * lines + 4
        wanted = 2 * self.backend.count_tokens(original) + 16
        return _Job(
            start=start,
            end=end,
            original=original,
            indent=indent,
            hints=tuple(hints),
            prefix=prefix,
            suffix=suffix,
            built=built,
            plan=plan_completion(prefix, suffix, doc.language, max_lines=max_lines),
            max_tokens=min(settings.max_tokens, max(settings.min_tokens, wanted)),
            comment=comment_syntax(doc.language)[0],
        )


@dataclass(frozen=True)
class _Job:
    """One fix request: the region ``start..end`` of the text, and the prompt for its rewrite."""

    start: int
    end: int
    original: str
    indent: str
    hints: tuple[str, ...]
    prefix: str
    suffix: str
    built: BuiltPrompt
    plan: CompletionPlan
    max_tokens: int
    comment: str

    def candidate(self, raw: str, *, cut: bool) -> tuple[str | None, str]:
        """The replacement the model's text makes (None and why not, when it makes none).

        ``cut``: the generation stopped at the token limit, so it may end mid-statement.
        """
        raw = _blank_leading_comments(raw, self.comment)
        cleaned = clean_completion(raw, self.prefix, self.suffix, self.plan)
        if cleaned is None:
            return None, "nothing usable"
        if cleaned.count("\n") + 1 >= self.plan.max_lines or (cut and not _ended(raw, cleaned)):
            return None, "cut off before the statement ended"
        new_text = _without_hints(self.indent + cleaned, self.hints)
        if not _has_code(new_text, self.comment):
            return None, "no code"
        if new_text == self.original:
            return None, "no change"
        return new_text, ""


def _same_place(a: RuffDiagnostic, b: RuffDiagnostic) -> bool:
    return (a.code, a.line, a.column) == (b.code, b.line, b.column)


def _display_path(path: Path, root: Path | None) -> str:
    """The path the prompt names: relative to the workspace when inside it."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def _blank_leading_comments(raw: str, comment: str) -> str:
    """Blank the comment lines the model starts with (it often echoes the hint first).

    The lines stay as empty lines, so the cleaning still sees where the code starts.
    """
    lines = raw.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            break
        lines[index] = ""
    return "\n".join(lines)


def _without_hints(text: str, hints: Sequence[str]) -> str:
    """``text`` without lines that repeat a hint comment: the hint never goes into the file."""
    echoed = {hint.strip() for hint in hints}
    return "\n".join(line for line in text.split("\n") if line.strip() not in echoed)


def _has_code(text: str, comment: str) -> bool:
    """Whether ``text`` has a line that is not blank and not a comment."""
    return any(line.strip() and not line.strip().startswith(comment) for line in text.split("\n"))


def _ended(raw: str, cleaned: str) -> bool:
    """Whether the statement ended before the generation did (the model went on past it).

    A generation cut at the token limit that cleaning kept whole may be a truncated statement.
    """
    raw_lines = [line for line in raw.split("\n") if line.strip()]
    kept = [line for line in cleaned.split("\n") if line.strip()]
    return len(kept) < len(raw_lines)
