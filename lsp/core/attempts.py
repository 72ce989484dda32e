"""What the candidates of one completion produced, what the code below asks of them, and
which one is shown."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from lint_bridge.suffix_names import broken_at_cursor, defines_any, parses, unbound_below
from lsp.core.choose import Chooser, Considered
from lsp.core.confidence import ConfidenceModel, Scene, shipped
from lsp.core.linestart import LineStart
from lsp.core.pipeline_types import Alternative, Cursor, PipelineSettings
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
    """What the candidates of one completion produced: usage summed, every verified text
    scored (``lsp.core.choose``), and in the end the one shown, or held.

    Each verified text remembers the usage of the generation it came from (``begin``),
    whose token log-probabilities arrive when that generation's stream ends.
    """

    def __init__(
        self,
        settings: PipelineSettings | None = None,
        model: ConfidenceModel | None = None,
        *,
        hold: bool = False,
    ) -> None:
        settings = settings or PipelineSettings()
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
        self.reserved: str | None = None  # verified, but not what the code below asks
        self.choice = Chooser(
            model or shipped(),
            min_confidence=settings.min_confidence,
            choose_among=settings.choose_among,
            hold=hold,
        )
        # What the decision found: the chosen candidate (None: none, or held) and the score.
        self.confidence: float | None = None
        self.alternatives: tuple[Alternative, ...] = ()
        self._chosen: Considered | None = None
        # The usage of the generation under way.
        self._current = Usage()

    def scene(self, cursor: Cursor, snippets_used: Sequence[str], constrained: bool) -> None:
        """The cursor the next candidates complete, and what their prompt holds."""
        self.choice.scene(Scene.of(cursor, snippets_used, constrained))

    def begin(self, usage: Usage) -> None:
        """A candidate's generation starts; ``usage`` is its stream's (filled as it ends)."""
        self._current = usage
        self.choice.begin()

    def add_usage(self, usage: Usage, raw: str) -> None:
        self.count += 1
        self.raw = raw
        self.choice.generated(raw)
        self.usage.model = usage.model
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.prompt_tokens_evaluated += usage.prompt_tokens_evaluated
        self.usage.completion_tokens += usage.completion_tokens
        self.usage.constrained_tokens += usage.constrained_tokens
        self.usage.finish_reason = usage.finish_reason

    def accept(self, text: str, verdict: str, unchecked: list[str]) -> bool:
        """A candidate that verified; True when no more need be generated."""
        self.text, self.verdict, self.unchecked = text, verdict, unchecked
        self.choice.add(text, verdict, self._current)
        return self.choice.enough()

    def verified_before(self, text: str) -> bool:
        """Whether an earlier candidate at this cursor verified as ``text`` (it is not checked
        again, and is considered again: candidates that agree say something)."""
        return self.choice.verified_at_cursor(text)

    def reserve(self, text: str, verdict: str) -> None:
        """A verified candidate kept in reserve while a better one is sought."""
        if self.reserved is None:
            self.reserved = text
        self.choice.add(text, verdict, self._current, asks_met=False)

    def accept_reserved(self, verdict: str) -> None:
        if self.text is None and self.reserved is not None:
            self.text, self.verdict = self.reserved, verdict

    def offer_repair(self, text: str) -> None:
        if self.repair is None or len(text) > len(self.repair):
            self.repair = text
        self.choice.offer_repair(text, self._current)

    def logprobs(self) -> TokenLogprobs | None:
        """The token log-probabilities of the generation the shown text came from."""
        return None if self._chosen is None else self._chosen.usage.logprobs

    def finish(self, lead: str, view: LineStart | None) -> tuple[str | None, int]:
        """The text to show (``lead`` before it, mapped back from a line-start ``view``)
        and the characters before the cursor it replaces; (None, 0) when nothing is shown."""
        model = self.choice.model
        self.alternatives = tuple(
            Alternative(
                *_mapped(c.text, lead, view),
                confidence=c.probability(model),
                mean_logprob=c.mean_logprob,
                verdict=c.verdict,
                asks_met=c.asks_met,
                attempt=c.attempt,
                features=c.features(),
            )
            for c in self.choice.considered()
        )
        chosen, held = self.choice.decide()
        if chosen is None:
            self.verdict = "reject" if self.count else "none"
            return None, 0
        self.confidence = chosen.probability(model)
        if held:
            self.verdict = "unsure"  # verified, but not likely enough to be right
            return None, 0
        self._chosen, self.verdict = chosen, chosen.verdict
        return _mapped(chosen.text, lead, view)

    def summary(self, shown: bool) -> str:
        """How the completion ended, for its log line."""
        score = "" if self.confidence is None else f", confidence {self.confidence:.2f}"
        if shown:
            return f"{self.verdict} after {self.count} candidate(s){score}"
        if self.verdict == "unsure":
            return f"held after {self.count} candidate(s){score} < {self.choice.min_confidence}"
        return "nothing usable"


def _mapped(text: str, lead: str, view: LineStart | None) -> tuple[str, int]:
    """A candidate as the editor gets it: (text, characters before the cursor it replaces)."""
    text = lead + text
    return view.mapped(text) if view is not None else (text, 0)
