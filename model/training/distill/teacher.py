"""The teacher: k samples per task from any Backend, with timeouts retried and a rate limit.

A teacher is a remote OpenAI-compatible server (a team's vLLM or llama.cpp server), a
larger local GGUF, or the student's own model sampled k times (best-of-N
self-distillation): all three are a ``model.runtime.api.Backend``. The prompt is the one the
server would build for that model (its own FIM family, or prefix-only), and the text is
cleaned as the server cleans a suggestion.

One teacher serves every thread of a concurrent run (``distill --concurrency``): its rate
limit spaces the whole run's requests, its counters are shared, and ``stop`` ends every
thread's requests at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lsp.core.text.clean import clean_completion, plan_completion
from model.runtime.api import (
    Backend,
    BackendUnavailableError,
    CancelToken,
    CompletionRequest,
    ModelError,
)
from model.runtime.fim import TemplateChoice
from model.runtime.prompt import PromptInput, build_prompt, comment_syntax
from model.training.distill.tasks import FIX_KIND, Task

logger = logging.getLogger(__name__)


class TeacherUnavailableError(ModelError):
    """The teacher did not answer after every retry (down, or too slow)."""


class TeacherStoppedError(ModelError):
    """The run is stopping (Ctrl-C, or another thread's teacher failed): no answer given."""


@dataclass(frozen=True)
class TeacherSettings:
    """How a teacher is asked; every value defaulted."""

    k: int = 2
    temperature: float = 0.8
    max_tokens: int = 96
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    min_interval_s: float = 0.0  # rate limit: at least this long between two requests
    context_budget: int = 1024
    fim_template: str | None = None


class RateLimiter:
    """Spaces calls at least ``interval`` seconds apart, across every thread that shares it.

    Each call takes the next free slot under a lock, then sleeps until it, so N threads
    together make no more calls than one would. ``clock`` and ``sleep`` are swappable (a
    test's fake clock; a teacher's sleep that a stop cuts short).
    """

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.interval = max(0.0, interval)
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next call may go."""
        with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            (self._sleep or time.sleep)(delay)


class Teacher:
    """Asks one backend for ``k`` samples per task; the first is greedy, the rest sampled.

    Thread-safe: threads may ask for different tasks' samples at once. A stopped teacher
    asks nothing more (make a new one for another run).
    """

    def __init__(
        self,
        backend: Backend,
        name: str,
        settings: TeacherSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
    ):
        self.backend = backend
        self.name = name
        self.settings = settings or TeacherSettings()
        self._template = TemplateChoice(self.settings.fim_template)
        self._stopping = threading.Event()
        self._cancel = CancelToken()
        # A stop cuts the rate limit's and the back-off's sleeps short.
        self._limiter = limiter or RateLimiter(
            self.settings.min_interval_s, sleep=self._stopping.wait
        )
        self._counts = threading.Lock()
        self.requests = 0
        self.retried = 0
        self.in_flight = 0  # requests being answered now, over all threads

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """End every thread's requests: those in flight are cancelled, later ones refused."""
        self._stopping.set()
        self._cancel.cancel()

    def check(self) -> str:
        """Make sure the teacher answers at all (one clear error if not); its model's name."""
        try:
            return self.backend.info().name
        except ModelError as error:
            raise TeacherUnavailableError(f"teacher {self.name} is not usable: {error}") from None

    def samples(self, task: Task) -> list[str]:
        """Up to ``k`` cleaned samples for ``task`` (duplicates and empty ones dropped)."""
        settings = self.settings
        template = self._template.for_model(self.backend.info())
        built = build_prompt(
            PromptInput(task.path, task.language, task.prefix, task.suffix),
            template,
            self.backend.count_tokens,
            settings.context_budget,
        )
        multiline = task.kind in ("block", "body", FIX_KIND)
        max_lines = (task.truth or "").count("\n") * 2 + 4 if multiline else 1
        plan = plan_completion(task.prefix, task.suffix, task.language, max_lines=max_lines)
        found: list[str] = []
        for attempt in range(settings.k):
            request = CompletionRequest(
                prompt=built.prompt,
                max_tokens=settings.max_tokens,
                stop=plan.stop,
                stop_tokens=built.stop_tokens,
                temperature=settings.temperature if attempt else 0.0,
                seed=attempt or None,
            )
            raw = self._ask(request)
            if task.kind == FIX_KIND:
                raw = _blank_leading_comments(raw, comment_syntax(task.language)[0])
            text = clean_completion(raw, task.prefix, task.suffix, plan)
            if text and text.strip() and text not in found:
                found.append(text)
        return found

    def _ask(self, request: CompletionRequest) -> str:
        """One generation, retried on timeouts and connection errors with growing back-off."""
        settings = self.settings
        last = ""
        for attempt in range(settings.retries + 1):
            if attempt:
                self._count(retried=1)
                self._stopping.wait(settings.backoff_s * 2 ** (attempt - 1))
            self._limiter.wait()
            self._refuse_when_stopping()
            timed = CompletionRequest(
                prompt=request.prompt,
                max_tokens=request.max_tokens,
                stop=request.stop,
                stop_tokens=request.stop_tokens,
                temperature=request.temperature,
                seed=request.seed,
                deadline=time.monotonic() + settings.timeout_s,
                cancel=self._cancel,
            )
            self._count(requests=1, in_flight=1)
            try:
                stream = self.backend.complete(timed)
                text = stream.text()
            except BackendUnavailableError as error:
                self._refuse_when_stopping()  # a stop aborted it: not the server's fault
                last = str(error)
                logger.info("teacher %s failed (try %d): %s", self.name, attempt + 1, error)
                continue
            finally:
                self._count(in_flight=-1)
            # A stop cancels the generation: what came so far is not an answer.
            self._refuse_when_stopping()
            if stream.usage.finish_reason == "deadline":
                last = f"no answer within {settings.timeout_s:g} s"
                logger.info("teacher %s timed out (try %d)", self.name, attempt + 1)
                continue
            return text
        raise TeacherUnavailableError(
            f"teacher {self.name} did not answer after {settings.retries + 1} tries: {last}"
        )

    def _refuse_when_stopping(self) -> None:
        if self._stopping.is_set():
            raise TeacherStoppedError(f"teacher {self.name} was stopped")

    def _count(self, *, requests: int = 0, retried: int = 0, in_flight: int = 0) -> None:
        with self._counts:
            self.requests += requests
            self.retried += retried
            self.in_flight += in_flight


def _blank_leading_comments(raw: str, comment: str) -> str:
    """Blank the comment lines a fix starts with (models echo the hint), keeping line breaks."""
    lines = raw.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            break
        lines[index] = ""
    return "\n".join(lines)
