"""The model runtime's public types: requests, prompts, usage, errors and the Backend protocol."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from model.runtime.fim import FimTemplate


class ModelError(Exception):
    """Base class of every error the model runtime reports; its message is one clear line."""


class ModelNotFoundError(ModelError):
    """The model file does not exist."""


class InvalidModelError(ModelError):
    """The file is not a usable GGUF model (truncated, wrong magic, unsupported version)."""


class ChecksumError(ModelError):
    """A model file's sha256 does not match the expected digest."""


class BackendCrashedError(ModelError):
    """The worker process running llama.cpp died; the next request starts a fresh one."""


class BackendUnavailableError(ModelError):
    """A remote backend cannot be reached or answered with an error."""


class BackendPausedError(BackendUnavailableError):
    """A backend that kept failing is left alone for a while; nothing was sent to it."""


class CancelledError(ModelError):
    """Generation was cancelled by the caller before it produced anything usable."""


@dataclass(frozen=True)
class SpecialToken:
    """A control token of the model's vocabulary, inserted by id, never parsed from text.

    Keeping special tokens apart from text means code that happens to contain
    ``<|fim_prefix|>`` is tokenized as plain text and cannot steer the model.
    """

    text: str


PromptPart = str | SpecialToken
Prompt = tuple[PromptPart, ...]


def render_prompt(prompt: Sequence[PromptPart]) -> str:
    """Flatten a prompt into one string (for remote servers that tokenize specials themselves)."""
    return "".join(part.text if isinstance(part, SpecialToken) else part for part in prompt)


class CancelToken:
    """A thread-safe cancel signal shared by the caller and a running generation."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the generation to stop at the next token boundary."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once cancel() has been called."""
        return self._event.is_set()


@dataclass(frozen=True)
class NameConstraint:
    """The identifier a generation starts with must be one of ``names`` (constrained decoding).

    ``typed`` is the part of the identifier the prompt already ends with (the user typed
    ``os.pa``: ``"pa"``); only names starting with it are allowed, and the generation writes
    the rest. ``lead`` is the blank the generation writes first (spaces token healing left
    out of the prompt). Once the identifier ends, decoding is free again.
    """

    names: tuple[str, ...]
    typed: str = ""
    lead: str = ""


@dataclass(frozen=True)
class QualifiedNames:
    """After a ``qualifier.`` the generation writes, the attribute must be one of its names.

    ``attributes`` pairs each qualifier (a name or a dotted chain, as written) with its
    complete attribute names; ``private`` lists the qualifiers whose private names (``_x``)
    are not known (stubs leave them out), after which ``q._`` stays free. ``line`` is the
    text of the cursor's line before the generation, where a generated qualifier may start.
    """

    attributes: tuple[tuple[str, tuple[str, ...]], ...]
    private: frozenset[str] = frozenset()
    line: str = ""


@dataclass(frozen=True)
class CompletionRequest:
    """One generation: a prompt plus the limits that end it.

    ``deadline`` is a ``time.monotonic()`` instant; generation stops between tokens
    once it passes, as it does when ``cancel`` is signalled. ``names`` (llama.cpp only;
    other backends ignore it) restricts the first identifier generated, ``qualified`` (the
    same) each attribute generated after a known qualifier.
    """

    prompt: Prompt
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    stop_tokens: tuple[SpecialToken, ...] = ()
    deadline: float | None = None
    cancel: CancelToken | None = field(default=None, compare=False)
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int | None = None
    names: NameConstraint | None = None
    qualified: QualifiedNames | None = None

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


FinishReason = Literal["stop", "length", "cancelled", "deadline"]


@dataclass(frozen=True)
class TokenLogprobs:
    """How sure the model was of the tokens it generated: natural-log probabilities (all <= 0)
    of each token under the model's own distribution, summarised."""

    mean: float
    minimum: float
    first: float
    count: int

    @staticmethod
    def from_json(data: object) -> TokenLogprobs | None:
        """Read ``{"mean", "minimum", "first", "count"}``; None when absent or malformed."""
        if not isinstance(data, dict):
            return None
        try:
            return TokenLogprobs(
                float(data["mean"]),
                float(data["minimum"]),
                float(data["first"]),
                int(data["count"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Usage:
    """What one generation cost; filled in when its stream ends.

    ``logprobs`` is None where the backend does not report them (remote servers) or no
    token was generated.
    """

    model: str = ""
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    seconds: float = 0.0
    logprobs: TokenLogprobs | None = None
    # Generated tokens that constrained decoding restricted (``CompletionRequest.names``).
    constrained_tokens: int = 0


class CompletionStream(Iterator[str]):
    """The pieces of text a backend generates; ``usage`` is complete once iteration ends."""

    def __init__(self, pieces: Iterator[str], usage: Usage) -> None:
        self._pieces = pieces
        self.usage = usage

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def text(self) -> str:
        """Consume the rest of the stream and return it joined."""
        return "".join(self)


@dataclass(frozen=True)
class ModelInfo:
    """What a backend knows about the model it serves.

    ``special_tokens`` holds the control-token strings that the model's tokenizer
    encodes as exactly one token (checked, not assumed), so prompt building only
    uses FIM markers the model really has. ``fim_tokens`` maps the roles llama.cpp
    reads from the GGUF (``prefix``, ``suffix``, ``middle``, ``pad``, ``repo``,
    ``sep``) to their token text. ``vocabulary_checked`` is False where the
    tokenizer is out of reach (a remote server): a configured FIM family is then
    trusted as it is. ``fim_declared`` True: a checkpoint declared ``fim_template`` (None:
    prefix-only), used unless the user forces a template.
    """

    name: str
    architecture: str = ""
    context_length: int = 4096
    special_tokens: frozenset[str] = frozenset()
    fim_tokens: dict[str, str] = field(default_factory=dict)
    vocabulary_checked: bool = True
    fim_declared: bool = False
    fim_template: FimTemplate | None = None


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a prompt into streamed text."""

    def info(self) -> ModelInfo:
        """Describe the served model (loads it if needed)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model (an estimate where no tokenizer is at hand)."""
        ...

    def complete(self, request: CompletionRequest) -> CompletionStream:
        """Start a generation; iterate the result for its text pieces."""
        ...

    def close(self) -> None:
        """Release the model and any worker process."""
        ...
