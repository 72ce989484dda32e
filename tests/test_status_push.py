"""``apprentice/status`` (lsp/server/status_push.py): the payload for each state, coalescing, and
that nothing it does ever raises into the engine, the index thread or the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from indexer.index import IndexReport
from lsp.core.settings import ModelSettings, ServerSettings
from lsp.server.engine import ModelStatus
from lsp.server.status_push import METHOD, StatusPush, payload


def engine(
    state: str = "ready",
    *,
    warming: str | None = None,
    settings: ServerSettings | None = None,
    **status: Any,
) -> Any:
    """A fake Engine: its model status, the file being warmed, its settings."""
    fields = {"name": "Gemma 3 270m" if state == "ready" else "", **status}
    return SimpleNamespace(
        status=ModelStatus(state=state, **fields),
        warming=warming,
        settings=settings or ServerSettings(),
    )


def index(state: str = "ready", files: int | None = 12) -> Any:
    report = IndexReport(files=files) if files is not None else None
    return SimpleNamespace(state=state, last_report=report)


def test_payload_keys_are_always_all_there() -> None:
    for found in (payload(None, None), payload(engine(), index())):
        assert set(found) == {
            "state",
            "message",
            "percentage",
            "model",
            "index",
            "warming",
            "lastLatencyMs",
        }


def test_no_engine_yet_is_off() -> None:
    found = payload(None, None)
    assert found["state"] == "off"
    assert found["model"] is None
    assert found["index"] == {"state": "off", "files": None}


def test_loading_with_the_index_being_built() -> None:
    found = payload(engine("loading"), index("indexing", None), ("files", 3, 12))
    assert found["state"] == "loading"
    assert found["model"] is None
    assert found["percentage"] == 25
    assert found["message"] == "loading the model · indexing 25%"
    assert found["index"] == {"state": "indexing", "files": None}
    # Before the model engine has even begun: still loading.
    assert payload(engine("idle"), None)["state"] == "loading"


def test_indexing_then_embedding_with_percentages() -> None:
    found = payload(engine(), index("indexing", None), ("files", 1, 3))
    assert (found["state"], found["percentage"], found["model"]) == (
        "indexing",
        33,
        "Gemma 3 270m",
    )
    assert found["message"] == "Gemma 3 270m · indexing 33%"
    # Embedding before its first report: 0%, not the files stage's 100%.
    found = payload(engine(), index("embedding"), ("files", 12, 12))
    assert (found["state"], found["percentage"]) == ("indexing", 0)
    found = payload(engine(), index("embedding"), ("embeddings", 40, 40))
    assert found["message"] == "Gemma 3 270m · embedding 100%"
    # Waiting for the index thread: no percentage yet.
    found = payload(engine(), index("waiting", None))
    assert (found["state"], found["percentage"], found["message"]) == (
        "indexing",
        None,
        "Gemma 3 270m · indexing",
    )


def test_ready_with_latency_and_an_index_error() -> None:
    found = payload(engine(), index(), None, 240.44)
    assert found == {
        "state": "ready",
        "message": "Gemma 3 270m",
        "percentage": None,
        "model": "Gemma 3 270m",
        "index": {"state": "ready", "files": 12},
        "warming": None,
        "lastLatencyMs": 240.4,
    }
    found = payload(engine(), index("error", None))
    assert (found["state"], found["message"]) == ("ready", "Gemma 3 270m · index error")


def test_warming_names_the_file() -> None:
    found = payload(engine(warming="shop/cart.py"), index("indexing"), ("files", 1, 2))
    assert found["state"] == "warming"
    assert found["warming"] == "shop/cart.py"
    assert found["message"] == "Gemma 3 270m · warming cart.py"


def test_error_wins_and_says_why() -> None:
    found = payload(engine("error", error="no such file"), index("indexing"))
    assert found["state"] == "error"
    assert found["message"] == "model error: no such file"
    assert found["model"] is None


def test_model_label_checkpoint_and_remote() -> None:
    checkpoint = {"name": "team-coder", "version": "7", "signer": "ci"}
    found = payload(engine(checkpoint=checkpoint), None)
    assert found["model"] == "team-coder 7"
    remote = ServerSettings(model=ModelSettings(remote_url="http://gpu:8080"))
    found = payload(engine(name="", settings=remote), None)
    assert found["model"] == "http://gpu:8080"


class FakeProtocol:
    def __init__(self) -> None:
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.fail = False

    def notify(self, method: str, params: dict[str, Any]) -> None:
        if self.fail:
            raise BrokenPipeError("the client went away")
        assert method == METHOD
        self.sent.append((asyncio.get_running_loop().time(), params))


def server(loop: asyncio.AbstractEventLoop | None) -> Any:
    return SimpleNamespace(
        engine=engine("loading"),
        index=index("waiting", None),
        completions=None,
        main_loop=loop,
        protocol=FakeProtocol(),
    )


async def settle(seconds: float = 0.0) -> None:
    await asyncio.sleep(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_burst_is_one_notification_with_the_latest_state() -> None:
    fake = server(asyncio.get_running_loop())
    push = StatusPush(fake, min_interval_s=0.1)
    for _ in range(50):
        push.changed()
    fake.engine = engine()  # the state when the send runs is what goes out
    await settle()
    assert [params["state"] for _, params in fake.protocol.sent] == ["indexing"]


async def test_at_most_one_per_interval_and_the_last_state_always_arrives() -> None:
    fake = server(asyncio.get_running_loop())
    push = StatusPush(fake, min_interval_s=0.15)
    push.changed()
    await settle()
    fake.engine = engine()
    push.changed()
    fake.index = index()
    push.changed()
    await settle()
    assert len(fake.protocol.sent) == 1, "sent again within the interval"
    await settle(0.2)
    states = [params["state"] for _, params in fake.protocol.sent]
    assert states == ["loading", "ready"]
    first, second = (at for at, _ in fake.protocol.sent)
    assert second - first >= 0.14


async def test_an_unchanged_state_is_not_sent_again() -> None:
    fake = server(asyncio.get_running_loop())
    push = StatusPush(fake, min_interval_s=0.0)
    push.changed()
    await settle()
    push.changed()
    await settle()
    assert len(fake.protocol.sent) == 1


async def test_changes_from_other_threads_arrive_on_the_loop() -> None:
    fake = server(asyncio.get_running_loop())
    push = StatusPush(fake, min_interval_s=0.0)
    threads = [threading.Thread(target=push.changed) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await settle(0.05)
    assert len(fake.protocol.sent) == 1


async def test_latency_comes_from_the_completion_stats() -> None:
    fake = server(asyncio.get_running_loop())
    fake.engine = engine()
    fake.completions = SimpleNamespace(stats=SimpleNamespace(latencies_ms=deque([90.0, 187.62])))
    StatusPush(fake, min_interval_s=0.0).changed()
    await settle()
    assert fake.protocol.sent[-1][1]["lastLatencyMs"] == 187.6


async def test_index_progress_is_forwarded_and_pushed_once_per_percent() -> None:
    fake = server(asyncio.get_running_loop())
    fake.engine = engine()
    push = StatusPush(fake, min_interval_s=0.0)
    forwarded: list[tuple[str, int, int]] = []
    report = push.tracking(lambda *args: forwarded.append(args))
    fake.index = index("indexing", None)
    for done in range(0, 1001):
        report("files", done, 1000)
    await settle()
    assert len(forwarded) == 1001
    # One notification per whole percent at most (here coalesced into far fewer).
    assert 1 <= len(fake.protocol.sent) <= 101
    assert fake.protocol.sent[-1][1]["percentage"] == 100


async def test_the_index_stop_signal_still_propagates() -> None:
    """The build stops by raising from the progress callback: the wrapper must not eat it."""
    push = StatusPush(server(asyncio.get_running_loop()))

    def stop(stage: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push.tracking(stop)("files", 1, 2)


async def test_a_failing_send_or_snapshot_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    fake = server(loop)
    fake.protocol.fail = True
    push = StatusPush(fake, min_interval_s=0.0)
    push.changed()
    await settle()
    fake.engine = engine()
    push.changed()
    await settle()
    fake.protocol.fail = False
    fake.engine = SimpleNamespace()  # no status at all: the snapshot itself fails
    push.changed()
    await settle()
    assert errors == []
    assert fake.protocol.sent == []
    # The first failure is logged in full; the next ones quietly.
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    # It recovers once the client and the state are sound again.
    fake.engine = engine()
    push.changed()
    await settle()
    assert [params["state"] for _, params in fake.protocol.sent] == ["indexing"]


def test_without_a_running_loop_changed_does_nothing() -> None:
    StatusPush(server(None)).changed()
    loop = asyncio.new_event_loop()
    loop.close()
    StatusPush(server(loop)).changed()
