"""Plain data of the completion pipeline: its settings, the cursor, and the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from lsp.core.levers import default_of
from model.runtime.api import TokenLogprobs


@dataclass(frozen=True)
class PipelineSettings:
    """Knobs of one completion; every one defaulted."""

    max_tokens: int = 64
    max_tokens_multiline: int = 96
    context_budget: int = 1024
    fim_template: str | None = None
    timeout_s: float = 10.0
    temperature: float = 0.0
    candidates: int = 3
    sample_temperature: float = 0.6
    # Past this, a verified partial generation is shown early (None: no budget): its
    # complete lines only (``whole_lines``), the rest of a block following on the next
    # request; a line is never cut where it happened to parse.
    time_budget_s: float | None = None
    # A budgeted request stops generating here and shows what verifies (None: timeout_s).
    # The server leaves it off: the editor cancels on the next keystroke, so a give-up
    # only ever hits a person who stopped typing and waits.
    max_wait_s: float | None = None
    multiline: bool = True
    # Quality levers, each measured by ``apprentice eval``: lsp.core.levers says what each
    # does and what it did, and holds their defaults (a test keeps these fields in step).
    whole_lines: bool = default_of("whole_lines")
    line_start: bool = default_of("line_start")
    code_over_comment: bool = default_of("code_over_comment")
    suffix_names: bool = default_of("suffix_names")
    token_healing: bool = default_of("token_healing")
    suffix_body: bool = default_of("suffix_body")
    suffix_syntax: bool = default_of("suffix_syntax")
    snippet_heads: bool = default_of("snippet_heads")
    complete_names: bool = default_of("complete_names")
    # Candidates tried beyond ``candidates`` while the verified ones do not do what the code
    # below asks (names it reads, a body waiting for its opener); the deadline still holds.
    extra_candidates: int = 2
    # Prompt tokens a file's first request may evaluate cold (0: no limit). The server sets
    # it (lsp.core.coldstart); one-off completions (the CLI, eval) take the full prompt.
    first_prompt_tokens: int = 0
    # Show or hold (lsp.core.confidence, lsp.core.choose): an automatic request's best
    # verified candidate is held when its probability of being right is below this (0: never
    # held); while the best so far is below it, the remaining candidates are tried. An
    # explicit request shows its best candidate whatever its confidence.
    min_confidence: float = 0.0
    # Verified candidates gathered before choosing the best by confidence (1: the first one
    # confident enough; more: ``apprentice eval`` measuring the choice against the oracle).
    choose_among: int = 1


@dataclass(frozen=True)
class Cursor:
    """A document and a cursor in it, as plain data."""

    path: str
    language: str
    text: str
    offset: int
    repo_name: str = ""
    abs_path: Path | None = None

    @property
    def prefix(self) -> str:
        return self.text[: self.offset]

    @property
    def suffix(self) -> str:
        return self.text[self.offset :]


@dataclass(frozen=True)
class Alternative:
    """A verified candidate of one completion (as the editor would get it), and its scores."""

    text: str
    replaced: int
    confidence: float
    mean_logprob: float | None
    verdict: str  # accept | repair | unchecked
    asks_met: bool = True  # does what the code below asks (levers suffix_names/_syntax)
    attempt: int = 0  # candidates generated before it at its cursor (0: the greedy one)
    features: tuple[float, ...] = ()  # lsp.core.confidence.FEATURES, for training


@dataclass
class CompletionResult:
    """The verified, cleaned suggestion (or None) and what it cost."""

    text: str | None
    model: str
    latency_ms: float
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    mode: str = "prefix"
    raw: str = ""
    snippets_used: tuple[str, ...] = field(default_factory=tuple)
    request_id: int = 0
    verdict: str = "none"
    candidates: int = 0
    rejected_reasons: tuple[str, ...] = ()
    stages_ms: dict[str, float] = field(default_factory=dict)
    # Characters before the cursor (whitespace on its line) that the suggestion replaces:
    # the editor's item range starts that far before the cursor.
    replaced: int = 0
    # How sure the model was of the shown candidate's tokens (None: the backend does not
    # say, or nothing is shown), and how many tokens of all candidates constrained decoding
    # restricted to legal names (lever ``complete_names``).
    logprobs: TokenLogprobs | None = None
    constrained_tokens: int = 0
    # The shown (or held) candidate's probability of being right (None: no candidate), and
    # every verified candidate in the order they were generated.
    confidence: float | None = None
    alternatives: tuple[Alternative, ...] = ()

    def as_json(self) -> dict[str, object]:
        """The ``--json`` shape of ``apprentice complete``."""
        return {
            "text": self.text,
            "model": self.model,
            "latency_ms": round(self.latency_ms, 1),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "mode": self.mode,
            "finish_reason": self.finish_reason,
            "verdict": self.verdict,
            "candidates": self.candidates,
            "rejected_reasons": list(self.rejected_reasons),
            "context": list(self.snippets_used),
            "replaced": self.replaced,
            "logprobs": None if self.logprobs is None else asdict(self.logprobs),
            "constrained_tokens": self.constrained_tokens,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "alternatives": [
                {"text": a.text, "confidence": round(a.confidence, 4), "verdict": a.verdict}
                for a in self.alternatives
            ],
            "stages_ms": {name: round(ms, 1) for name, ms in self.stages_ms.items()},
        }
