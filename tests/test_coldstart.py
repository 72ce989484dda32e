"""The first suggestion in a file: bounded prefill, and a warm-up that never blocks a completion.

The backend here is the fake one plus what llama.cpp's has: one cached prompt (the last
one evaluated), a count of how much of a new prompt it holds, and a warm-up that evaluates
a prompt a few tokens at a time until it is cancelled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from lsp.core.pipeline import CompletionPipeline, Cursor
from lsp.core.settings import parse_settings
from lsp.server.completions import CompletionService
from lsp.server.engine import Engine
from model.runtime.api import CancelToken, PromptPart, Usage, render_prompt
from model.runtime.fake import _TOKEN, FakeBackend

HELPERS = "".join(f"def helper_{n}(value):\n    return value + {n}\n\n\n" for n in range(120))
FILE = "import json\n\n\n" + HELPERS
TEXT = FILE + "def main(path):\n    with open(path) as f:\n        config = "


def words(prompt: Sequence[PromptPart]) -> list[str]:
    """The fake's tokens (as FakeBackend counts them)."""
    return _TOKEN.findall(render_prompt(prompt))


class CachingBackend(FakeBackend):
    """A fake with llama.cpp's single prompt cache (FakeBackend keeps the last prompt's
    tokens); its warm-up costs ``warm_s`` per 50 tokens."""

    def __init__(self, warm_s: float = 0.0) -> None:
        super().__init__(respond=lambda prompt: "json.load(f)\n")
        self.warm_s = warm_s
        self.warmed: list[int] = []  # tokens evaluated by each warm-up
        self.warming = threading.Event()

    def cached_tokens(self, prompt: tuple[PromptPart, ...]) -> tuple[int, int]:
        tokens = words(prompt)
        shared = 0
        for a, b in zip(self._previous, tokens, strict=False):
            if a != b:
                break
            shared += 1
        return shared, len(tokens)

    def warm(self, prompt: tuple[PromptPart, ...], cancel: CancelToken | None = None) -> Usage:
        tokens = words(prompt)
        shared, _ = self.cached_tokens(prompt)
        self._previous = tokens[:shared]
        self.warming.set()
        for start in range(shared, len(tokens), 50):
            if cancel is not None and cancel.cancelled:
                break
            time.sleep(self.warm_s)
            self._previous = tokens[: start + 50]
        self.warmed.append(len(self._previous) - shared)
        return Usage(prompt_tokens=len(tokens), prompt_tokens_evaluated=self.warmed[-1])


def cursor(text: str = TEXT) -> Cursor:
    return Cursor(path="app/main.py", language="python", text=text, offset=len(text))


def engine_for(backend: CachingBackend) -> Engine:
    settings, problems = parse_settings({"verify": {"ruff": False}})
    assert problems == []
    return Engine(settings, root=None, report=lambda k, m: None, factory=lambda s: backend)


def always(version: int) -> bool:
    return True


async def settle(engine: Engine) -> None:
    await engine.run(lambda: None)  # whatever was queued on the model thread has run


async def test_the_first_prompt_in_a_file_is_small_then_the_full_one_is_used() -> None:
    backend = CachingBackend()
    engine = engine_for(backend)
    await engine.start()
    service = CompletionService(engine, debounce_s=0)
    first = await service.suggest("doc", 1, cursor(), always, invoked=True)
    assert first is not None and first.result is not None
    small = first.result.prompt_tokens
    assert small < 350  # about 256 model tokens: the cold prefill stays bounded
    await settle(engine)  # the full prompt is warmed in the background
    assert backend.warmed and backend.warmed[0] > small
    second = await service.suggest("doc", 2, cursor(TEXT + " "), always, invoked=True)
    assert second is not None and second.result is not None
    assert second.result.prompt_tokens > 2 * small  # the full prompt, now cached
    assert second.result.prompt_tokens_evaluated < 10  # only its new tail was evaluated
    engine.close()


async def test_a_warm_up_never_makes_a_completion_wait() -> None:
    backend = CachingBackend(warm_s=3.0)  # a full warm-up would take over half a minute
    engine = engine_for(backend)
    await engine.start()
    service = CompletionService(engine, debounce_s=0)
    warming = asyncio.ensure_future(engine.warm(cursor()))
    while not backend.warming.is_set():
        await asyncio.sleep(0.01)
    answer = await asyncio.wait_for(
        service.suggest("doc", 1, cursor(), always, invoked=True), timeout=20
    )
    assert answer is not None and answer.text == "json.load(f)"
    await warming
    assert backend.warmed[0] < 200  # it stopped within a chunk of the completion's arrival
    engine.close()


def test_one_off_completions_take_the_full_prompt() -> None:
    # The CLI and eval make one request per file: they want the full prompt, and wait.
    backend = CachingBackend()
    pipeline = CompletionPipeline(backend)
    pipeline.complete(cursor(), budget=False)
    assert backend.requests and len(words(backend.requests[0].prompt)) > 350
