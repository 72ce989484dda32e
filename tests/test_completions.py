"""Serving completions while typing: type-ahead cache, debounce, last request wins, staleness."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from lsp.core.pipeline import Cursor
from lsp.core.settings import parse_settings
from lsp.server.completions import CompletionService, TypeAheadCache
from lsp.server.engine import Engine
from model.factory import BackendSettings
from model.runtime.api import (
    BackendPausedError,
    CompletionRequest,
    CompletionStream,
    ModelNotFoundError,
)
from model.runtime.fake import FakeBackend

CODE = "import json\n\n\ndef load_config(path):\n    with open(path) as f:\n        config = "


def cursor(text: str = CODE) -> Cursor:
    return Cursor(path="shop/config.py", language="python", text=text, offset=len(text))


# -- type-ahead cache ------------------------------------------------------------------------


def test_typing_along_a_suggestion_serves_its_rest() -> None:
    cache = TypeAheadCache()
    cache.store("doc", "x = ", "\n", "json.load(f)")
    assert cache.lookup("doc", "x = ", "\n") == "json.load(f)"
    assert cache.lookup("doc", "x = js", "\n") == "on.load(f)"
    assert cache.lookup("doc", "x = json.load(f", "\n") == ")"


def test_typing_something_else_misses() -> None:
    cache = TypeAheadCache()
    cache.store("doc", "x = ", "\n", "json.load(f)")
    assert cache.lookup("doc", "x = yaml", "\n") is None
    assert cache.lookup("doc", "x = json.load(f)", "\n") is None  # nothing left to suggest
    assert cache.lookup("doc", "x = js", "\nother") is None  # the text after the cursor changed
    assert cache.lookup("other-doc", "x = js", "\n") is None


def test_deleting_back_restores_the_suggestion() -> None:
    cache = TypeAheadCache()
    cache.store("doc", "x = js", "\n", "on.load(f)")
    assert cache.lookup("doc", "x = ", "\n") == "json.load(f)"


def test_forget_drops_a_document() -> None:
    cache = TypeAheadCache()
    cache.store("doc", "a", "", "bc")
    cache.forget("doc")
    assert cache.lookup("doc", "a", "") is None


# -- the service over a fake model ------------------------------------------------------------


def make_service(
    backend: FakeBackend, *, debounce_s: float = 0.0, raw: dict[str, object] | None = None
) -> CompletionService:
    settings, problems = parse_settings(raw or {"verify": {"ruff": False}})
    assert problems == []
    engine = Engine(
        settings, root=None, report=lambda key, message: None, factory=lambda s: backend
    )
    return CompletionService(engine, debounce_s=debounce_s)


async def ready(service: CompletionService) -> CompletionService:
    await service.engine.start()
    assert service.engine.status.state == "ready"
    return service


def always_current(version: int) -> bool:
    return True


async def test_a_suggestion_then_the_cache_while_typing_along() -> None:
    backend = FakeBackend(respond=lambda p: "json.load(f)\n")
    service = await ready(make_service(backend))
    first = await service.suggest("doc", 1, cursor(), always_current)
    assert first is not None and first.text == "json.load(f)" and not first.from_cache
    second = await service.suggest("doc", 2, cursor(CODE + "json."), always_current)
    assert second is not None and second.text == "load(f)" and second.from_cache
    assert len(backend.requests) == 1
    assert service.stats.cache_hits == 1 and service.stats.shown == 2
    service.engine.close()


def slow_engine(gate: threading.Event, raw: dict[str, object] | None = None) -> Engine:
    """An engine whose model loads once ``gate`` is set."""

    def slow_factory(settings: BackendSettings) -> FakeBackend:
        gate.wait(30)
        return FakeBackend(respond=lambda p: "json.load(f)\n")

    settings, problems = parse_settings(raw or {"verify": {"ruff": False}})
    assert problems == []
    return Engine(settings, root=None, report=lambda k, m: None, factory=slow_factory)


async def test_a_request_made_while_the_model_loads_waits_for_it() -> None:
    gate = threading.Event()
    engine = slow_engine(gate)
    service = CompletionService(engine, debounce_s=0)
    loading = engine.start()
    asked = asyncio.ensure_future(service.suggest("doc", 1, cursor(), always_current))
    await asyncio.sleep(0.1)
    assert not asked.done()  # waiting, not answered empty
    gate.set()
    await loading
    answer = await asked
    assert answer is not None and answer.text == "json.load(f)"
    assert service.stats.not_ready == 0
    engine.close()


async def test_only_the_latest_request_of_a_document_waits_for_the_model() -> None:
    gate = threading.Event()
    engine = slow_engine(gate)
    service = CompletionService(engine, debounce_s=0)
    loading = engine.start()
    older = asyncio.ensure_future(service.suggest("doc", 1, cursor(), always_current))
    await asyncio.sleep(0.05)
    newer = asyncio.ensure_future(service.suggest("doc", 2, cursor(), always_current))
    assert await older is None  # superseded at once, without waiting for the load
    assert not newer.done()
    gate.set()
    await loading
    answer = await newer
    assert answer is not None and answer.text == "json.load(f)"
    assert service.stats.superseded == 1
    engine.close()


async def test_waiting_for_the_model_ends_at_the_request_timeout() -> None:
    gate = threading.Event()
    engine = slow_engine(gate, {"verify": {"ruff": False}, "completion": {"timeoutMs": 200}})
    service = CompletionService(engine, debounce_s=0)
    loading = engine.start()
    assert await service.suggest("doc", 1, cursor(), always_current) is None
    assert service.stats.not_ready == 1
    gate.set()
    await loading
    engine.close()


async def test_a_newer_request_supersedes_the_older_one() -> None:
    backend = FakeBackend(respond=lambda p: "json.load(f) + 1 + 2 + 3 + 4\n", token_delay=0.05)
    service = await ready(make_service(backend, debounce_s=0.01))
    older = asyncio.ensure_future(service.suggest("doc", 1, cursor(), always_current))
    await asyncio.sleep(0.1)  # the older one is generating now
    newer = await service.suggest("doc", 2, cursor(), always_current)
    assert await older is None
    assert newer is not None and newer.text.startswith("json.load")
    assert service.stats.superseded == 1
    assert backend.requests[0].cancel is not None and backend.requests[0].cancel.cancelled
    service.engine.close()


async def test_a_request_superseded_during_debounce_never_reaches_the_model() -> None:
    backend = FakeBackend(respond=lambda p: "json.load(f)\n")
    service = await ready(make_service(backend, debounce_s=0.2))
    older = asyncio.ensure_future(service.suggest("doc", 1, cursor(), always_current))
    await asyncio.sleep(0.01)
    newer = await service.suggest("doc", 2, cursor(), always_current)
    assert await older is None
    assert newer is not None
    assert len(backend.requests) == 1
    service.engine.close()


async def test_client_cancel_stops_generation_and_frees_the_model() -> None:
    backend = FakeBackend(
        respond=lambda p: "json.load(f) + 1 + 2 + 3 + 4 + 5 + 6\n", token_delay=0.1
    )
    service = await ready(make_service(backend))
    task = asyncio.ensure_future(service.suggest("doc", 1, cursor(), always_current))
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert service.stats.cancelled == 1
    backend.token_delay = 0.0
    after = await service.suggest("doc", 2, cursor(), always_current)
    assert after is not None  # the model thread was not left busy
    assert backend.requests[0].cancel is not None and backend.requests[0].cancel.cancelled
    service.engine.close()


async def test_a_result_for_an_outdated_version_is_dropped_but_cached() -> None:
    backend = FakeBackend(respond=lambda p: "json.load(f)\n")
    service = await ready(make_service(backend))
    result = await service.suggest("doc", 1, cursor(), lambda version: version == 2)
    assert result is None and service.stats.stale == 1
    typed_along = await service.suggest("doc", 2, cursor(CODE + "js"), always_current)
    assert typed_along is not None and typed_along.text == "on.load(f)"
    service.engine.close()


async def test_a_missing_model_is_reported_once_and_suggests_nothing(tmp_path: Path) -> None:
    reports: list[tuple[str, str]] = []

    def missing(settings: BackendSettings) -> FakeBackend:
        raise ModelNotFoundError(f"model file not found: {settings.model_path}")

    settings, _ = parse_settings({"model": {"path": str(tmp_path / "nope.gguf")}})
    engine = Engine(
        settings, root=None, report=lambda k, m: reports.append((k, m)), factory=missing
    )
    service = CompletionService(engine, debounce_s=0)
    await engine.start()
    assert engine.status.state == "error"
    assert len(reports) == 1 and "apprentice.model.path" in reports[0][1]
    assert await service.suggest("doc", 1, cursor(), always_current) is None
    engine.close()


async def test_an_automatic_request_that_outlives_the_old_give_up_still_answers() -> None:
    """The server used to abandon an automatic request after 700 ms (``maxWaitMs``); a
    person who stopped typing got nothing. Now it answers, with the whole line."""
    backend = FakeBackend(
        respond=lambda p: "json.load(f) or default_configuration\n", token_delay=0.3
    )
    raw = {"verify": {"syntax": False, "ruff": False, "symbols": False}}
    service = await ready(make_service(backend, raw=raw))
    started = asyncio.get_running_loop().time()
    automatic = await service.suggest("doc", 1, cursor(), always_current)
    assert asyncio.get_running_loop().time() - started > 0.7
    assert automatic is not None and automatic.text == "json.load(f) or default_configuration"
    service.engine.close()


async def test_a_give_up_set_by_the_user_still_holds() -> None:
    backend = FakeBackend(
        respond=lambda p: "json.load(f) or default_configuration\n", token_delay=0.3
    )
    raw = {
        "verify": {"syntax": False, "ruff": False, "symbols": False},
        "completion": {"timeBudgetMs": 200, "maxWaitMs": 500, "candidates": 1},
    }
    service = await ready(make_service(backend, raw=raw))
    budgeted = await service.suggest("doc", 1, cursor(), always_current)
    assert budgeted is None  # nothing whole verified within 500 ms: nothing shown
    invoked = await service.suggest("doc", 2, cursor(CODE + " "), always_current, invoked=True)
    assert invoked is not None and invoked.text.endswith("default_configuration")
    service.engine.close()


async def test_a_remote_server_that_was_down_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lsp.server.engine
    from model.runtime.api import BackendUnavailableError

    attempts: list[int] = []

    def flaky(settings: BackendSettings) -> FakeBackend:
        attempts.append(1)
        if len(attempts) == 1:
            raise BackendUnavailableError("connection refused")
        return FakeBackend(respond=lambda p: "json.load(f)\n")

    reports: list[str] = []
    settings, _ = parse_settings(
        {"model": {"remoteUrl": "http://127.0.0.1:9"}, "verify": {"ruff": False}}
    )
    engine = Engine(settings, root=None, report=lambda k, m: reports.append(k), factory=flaky)
    service = CompletionService(engine, debounce_s=0)
    await engine.start()
    assert engine.status.state == "error" and reports == ["model"]
    assert await service.suggest("doc", 1, cursor(), always_current) is None
    assert len(attempts) == 1  # not retried on every keystroke
    monkeypatch.setattr(lsp.server.engine, "REMOTE_RETRY_S", 0.0)
    # The request that starts the retry waits for it (within completion.timeoutMs).
    assert await service.suggest("doc", 2, cursor(), always_current) is not None
    assert engine.status.state == "ready" and len(attempts) == 2
    assert await service.suggest("doc", 3, cursor(), always_current) is not None
    engine.close()


async def test_a_backend_left_alone_after_failures_is_not_reported_again() -> None:
    class Paused(FakeBackend):
        def complete(self, request: CompletionRequest) -> CompletionStream:
            raise BackendPausedError("failed 2 times in a row; not asked again for 2 s")

    reports: list[str] = []
    settings, _ = parse_settings({"verify": {"ruff": False}})
    engine = Engine(
        settings, root=None, report=lambda k, m: reports.append(k), factory=lambda s: Paused()
    )
    service = CompletionService(engine, debounce_s=0)
    await engine.start()
    assert await service.suggest("doc", 1, cursor(), always_current) is None
    assert reports == []  # the failures that paused it were reported; the pause is not news
    engine.close()


async def test_status_says_when_a_remote_server_is_left_alone() -> None:
    from model.runtime.breaker import CircuitBreaker

    backend = FakeBackend(respond=lambda p: "json.load(f)\n")
    backend.breaker = CircuitBreaker(threshold=1)  # type: ignore[attr-defined]
    settings, _ = parse_settings({"model": {"remoteUrl": "http://127.0.0.1:9"}})
    engine = Engine(settings, root=None, report=lambda k, m: None, factory=lambda s: backend)
    await engine.start()
    assert engine.describe_backend() == "remote http://127.0.0.1:9"
    backend.breaker.failure()  # type: ignore[attr-defined]
    assert "not answering: 1 failures in a row" in engine.describe_backend()
    engine.close()
