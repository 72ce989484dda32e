"""What the candidates of one completion produced, and what the code below asks of them."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from lint_bridge.suffix_names import broken_at_cursor, defines_any, parses, unbound_below
from lsp.core.pipeline_types import Cursor, PipelineSettings
from model.runtime.api import TokenLogprobs, Usage


@dataclass(frozen=True)
class SuffixAsks:
    """What the code after the cursor asks of the missing text (Python; levers
    ``suffix_names`` and ``suffix_syntax``): names it reads that nothing defines, and
    whether the buffer parses only once the missing line is there."""

    names: frozenset[str] = frozenset()
    parse: bool = False

    @staticmethod
    def of(cursor: Cursor, settings: PipelineSettings) -> SuffixAsks:
        if cursor.language != "python":
            return SuffixAsks()
        names = unbound_below(cursor.text, cursor.offset) if settings.suffix_names else None
        broken = settings.suffix_syntax and broken_at_cursor(cursor.text, cursor.offset)
        return SuffixAsks(names or frozenset(), broken)

    def met_by(self, cursor: Cursor, form: str) -> bool:
        """Whether inserting ``form`` at the cursor does what is asked."""
        if not defines_any(cursor.text, cursor.offset, form, self.names):
            return False
        return not self.parse or parses(cursor.prefix + form + cursor.suffix)


class Attempts:
    """What the candidates of one completion produced: usage summed, the best text kept.

    Each kept text remembers the usage of the generation it came from (``begin``), whose
    token log-probabilities arrive when that generation's stream ends.
    """

    def __init__(self) -> None:
        self.usage = Usage()
        self.raw = ""
        self.count = 0
        self.verdict = "none"
        self.text: str | None = None
        self.repair: str | None = None
        self.reasons: list[str] = []
        self.unchecked: list[str] = []
        self.checked: set[tuple[int, str]] = set()
        self.lint_before: Future[Any] | None = None
        self.asks = SuffixAsks()
        self.held: str | None = None
        # The usage of the generation under way, and of those the kept texts came from.
        self._current = Usage()
        self._text_from = self._held_from = self._repair_from = self._current

    def begin(self, usage: Usage) -> None:
        """A candidate's generation starts; ``usage`` is its stream's (filled as it ends)."""
        self._current = usage

    def add_usage(self, usage: Usage, raw: str) -> None:
        self.count += 1
        self.raw = raw
        self.usage.model = usage.model
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.prompt_tokens_evaluated += usage.prompt_tokens_evaluated
        self.usage.completion_tokens += usage.completion_tokens
        self.usage.constrained_tokens += usage.constrained_tokens
        self.usage.finish_reason = usage.finish_reason

    def accept(self, text: str, verdict: str, unchecked: list[str]) -> None:
        self.text, self.verdict, self.unchecked = text, verdict, unchecked
        self._text_from = self._current

    def hold(self, text: str) -> None:
        """A verified candidate kept in reserve while a better one is sought."""
        if self.held is None:
            self.held = text
            self._held_from = self._current

    def accept_held(self, verdict: str) -> None:
        if self.text is None and self.held is not None:
            self.accept(self.held, verdict, self.unchecked)
            self._text_from = self._held_from

    def offer_repair(self, text: str) -> None:
        if self.repair is None or len(text) > len(self.repair):
            self.repair = text
            self._repair_from = self._current

    def logprobs(self) -> TokenLogprobs | None:
        """The token log-probabilities of the generation the final text came from."""
        if self.text is not None:
            return self._text_from.logprobs
        if self.repair is not None:
            return self._repair_from.logprobs
        return None

    def final_text(self) -> str | None:
        if self.text is not None:
            return self.text
        if self.repair is not None:
            self.verdict = "repair"
            return self.repair
        self.verdict = "reject" if self.count else "none"
        return None
