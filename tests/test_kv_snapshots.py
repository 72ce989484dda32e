"""KV snapshots in the llama.cpp worker: a return visit restores instead of evaluating again.

The store's bound and eviction are checked on plain data; the rest runs the real
embedded model, in the worker process through ``LlamaCppBackend`` and, to compare
logits, in this process through the worker's own ``_Engine``.
"""

from __future__ import annotations

import ctypes
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.runtime.api import CompletionRequest
from model.runtime.kv_snapshots import MIN_GAIN_TOKENS, SnapshotStore
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend
from model.runtime.worker import _Engine, _Inbox


def _file(name: str, functions: int) -> str:
    """A Python file of about 45 tokens a function, its first line naming it."""
    lines = [f"# {name}: helpers for the {name} service", "import os", ""]
    for i in range(functions):
        lines += [
            f"def {name}_step_{i}(value, limit={i + 1}):",
            f'    """Scale value for {name} step {i}."""',
            f"    return min(value * {i + 2}, limit) + len(os.sep)",
            "",
        ]
    return "\n".join(lines) + "\n"


def _tokens(n: int) -> np.ndarray[Any, np.dtype[np.int32]]:
    return np.arange(n, dtype=np.int32)


def _data(size: int) -> ctypes.Array[ctypes.c_uint8]:
    return (ctypes.c_uint8 * size)()


# -- the store, on plain data ------------------------------------------------------


def test_store_stays_within_its_bytes_and_evicts_the_least_recently_used() -> None:
    store = SnapshotStore(limit_bytes=10_000)
    kept: list[int] = []
    for i in range(40):
        tokens = _tokens(200)
        tokens[1] = 1000 + i  # distinct after the first token
        assert store.add(tokens, _data(1_500 + 37 * i))
        kept.append(i)
        assert store.bytes <= store.limit_bytes
        assert store.bytes == sum(s.size for s in store.snapshots())
    newest = [int(s.tokens[1]) - 1000 for s in store.snapshots()]
    assert newest == kept[-len(newest) :]  # the most recent ones, oldest first
    assert store.evictions == 40 - len(store)

    # A lookup that restores one makes it the most recent: the next eviction spares it.
    oldest = store.snapshots()[0]
    store.touch(oldest)
    store.add(_tokens(300) + 5000, _data(3_000))
    assert any(s is oldest for s in store.snapshots())
    assert store.bytes <= store.limit_bytes
    assert not store.add(_tokens(10), _data(10_001))  # larger than the whole bound


def test_store_keeps_one_of_two_nearly_equal_snapshots() -> None:
    store = SnapshotStore(limit_bytes=1_000_000)
    first = _tokens(500)
    store.add(first, _data(100))
    newer = first.copy()
    newer[500 - MIN_GAIN_TOKENS + 1 :] += 7  # differs only in the last few tokens
    store.add(newer, _data(100))
    assert len(store) == 1 and store.snapshots()[0].tokens is newer
    assert store.covering(first) is not None
    snapshot, shared = store.best(first)
    assert snapshot is not None and shared == 500 - MIN_GAIN_TOKENS + 1


def test_stats_without_a_running_worker_start_none(tmp_path: Path) -> None:
    backend = LlamaCppBackend(LlamaConfig(model_path=tmp_path / "absent.gguf", snapshot_mb=3))
    stats = backend.snapshot_stats()  # no model load: the path does not even exist
    assert stats["limit_bytes"] == 3 << 20
    assert stats["count"] == stats["bytes"] == stats["restores"] == 0
    assert backend.worker_pid is None


# -- the real model -----------------------------------------------------------------

FILE_A = _file("alpha", 7)  # about 330 tokens
FILE_B = _file("bravo", 7)
TAIL = "\n\ndef alpha_total(values):\n    return"


def _warm(engine: _Engine, inbox: _Inbox, text: str) -> dict[str, Any]:
    return engine.warm({"id": 1, "prompt": [["t", text]]}, inbox)


def _last_logits(engine: _Engine) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The logits llama.cpp computed for the last position it evaluated."""
    import llama_cpp

    pointer = llama_cpp.llama_get_logits_ith(engine.llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(engine.llm.n_vocab(),)).copy()


@pytest.fixture(scope="module")
def engines(gemma_path: Path) -> tuple[_Engine, _Engine, _Inbox]:
    """The worker's engine with snapshots, one without (the reference), and an idle inbox."""
    options = {"path": str(gemma_path), "n_ctx": 1536, "n_threads": 2}
    with_snapshots = _Engine({**options, "snapshot_bytes": 256 << 20})
    reference = _Engine({**options, "snapshot_bytes": 0})
    return with_snapshots, reference, _Inbox(io.StringIO(""))


def _assert_same_logits(engine: _Engine, reference: _Engine) -> None:
    restored, expected = _last_logits(engine), _last_logits(reference)
    assert float(np.abs(restored - expected).max()) < 1e-3
    assert int(restored.argmax()) == int(expected.argmax())


def test_a_restored_snapshot_gives_the_logits_of_a_fresh_evaluation(
    engines: tuple[_Engine, _Engine, _Inbox],
) -> None:
    engine, reference, inbox = engines
    restores = engine.snapshots.restores
    first = _warm(engine, inbox, FILE_A)
    assert 250 <= first["prompt_tokens"] <= 480  # within one sliding window (512)
    _warm(engine, inbox, FILE_B)
    back = _warm(engine, inbox, FILE_A + TAIL)
    assert engine.snapshots.restores == restores + 1
    # Only the tail was evaluated, on top of the restored state of FILE_A.
    assert back["prompt_tokens_evaluated"] <= back["prompt_tokens"] - first["prompt_tokens"] + 2

    reference.llm.n_tokens = 0  # nothing reused: Llama.eval drops every cell
    fresh = _warm(reference, inbox, FILE_A + TAIL)
    assert fresh["prompt_tokens_evaluated"] == fresh["prompt_tokens"] - 1
    _assert_same_logits(engine, reference)


def test_a_long_snapshot_cut_back_to_a_shared_block_gives_the_same_logits(
    engines: tuple[_Engine, _Engine, _Inbox],
) -> None:
    """Two files' prompts start with the same repository-context block: the first file's
    snapshot, longer than Gemma 3's 512-token sliding window, is restored and cut back to
    the block, whose cells the window layers need again.

    Past the window, llama.cpp's logits depend on how a prompt was split into decode calls
    (up to 1.5 apart for one 900-token prompt split differently, no snapshot involved), so
    the reference is not a fresh evaluation but the same calls without snapshots: the block
    reused from the live cache, as when the user never left the first file.
    """
    engine, reference, inbox = engines
    block = _file("shared_context", 4)
    for each in (engine, reference):
        each.llm.n_tokens = 0  # both from an empty cache, in the same chunks
        first = _warm(each, inbox, block + FILE_A + FILE_B)
    assert first["prompt_tokens"] > 700
    _warm(engine, inbox, _file("unrelated", 5))
    restores, saved = engine.snapshots.restores, engine.snapshots.tokens_saved
    other = _warm(engine, inbox, block + _file("charlie", 4))
    assert engine.snapshots.restores == restores + 1
    assert engine.snapshots.tokens_saved - saved >= 150  # the block
    expected = _warm(reference, inbox, block + _file("charlie", 4))
    assert other["prompt_tokens_evaluated"] == expected["prompt_tokens_evaluated"]
    _assert_same_logits(engine, reference)


@pytest.fixture
def make_backend(gemma_path: Path) -> Iterator[Any]:
    backends: list[LlamaCppBackend] = []

    def make(snapshot_mb: int) -> LlamaCppBackend:
        config = LlamaConfig(
            model_path=gemma_path, n_ctx=1024, n_threads=2, snapshot_mb=snapshot_mb
        )
        backends.append(LlamaCppBackend(config))
        return backends[-1]

    yield make
    for backend in backends:
        backend.close()


def test_returning_to_a_file_restores_it_instead_of_evaluating_it_again(make_backend: Any) -> None:
    backend = make_backend(64)
    first = backend.warm((FILE_A,))
    assert first.prompt_tokens_evaluated >= first.prompt_tokens - 2
    other = backend.complete(CompletionRequest(prompt=(FILE_B,), max_tokens=4))
    other.text()
    # The cache now holds FILE_B, but FILE_A is one restore away: cached, not cold.
    cached, total = backend.cached_tokens((FILE_A,))
    assert cached >= total - 2

    back = backend.complete(CompletionRequest(prompt=(FILE_A + TAIL,), max_tokens=2))
    back.text()
    tail = back.usage.prompt_tokens - first.prompt_tokens
    assert back.usage.prompt_tokens_evaluated <= tail + 2
    stats = backend.snapshot_stats()
    assert stats["restores"] == 1 and stats["saves"] >= 1
    assert stats["tokens_saved"] >= first.prompt_tokens - 4  # all but "<bos>#" and the last
    assert 0 < stats["bytes"] <= stats["limit_bytes"] == 64 << 20

    # And back to FILE_B, whose state was saved when FILE_A came back.
    again = backend.warm((FILE_B + TAIL,))
    assert again.prompt_tokens_evaluated <= again.prompt_tokens - other.usage.prompt_tokens + 2
    assert backend.snapshot_stats()["restores"] == 2


def test_the_worker_keeps_snapshots_within_the_limit_newest_first(make_backend: Any) -> None:
    backend = make_backend(6)  # about 340 tokens of Gemma 3 270M state (18.4 KB a token)
    files = [_file(name, 3) for name in ("one", "two", "three", "four", "five")]
    for text in files:
        usage = backend.warm((text,))
        assert 130 <= usage.prompt_tokens <= 185  # two snapshots fit, three do not
        assert usage.prompt_tokens_evaluated >= usage.prompt_tokens - 3  # all distinct
        stats = backend.snapshot_stats()
        assert stats["bytes"] <= stats["limit_bytes"] == 6 << 20
    assert backend.snapshot_stats()["count"] == 2  # "three" and "four"; "five" is live

    recent = backend.warm((files[3] + TAIL,))  # the newest snapshot: restored
    assert recent.prompt_tokens_evaluated < 20
    oldest = backend.warm((files[0] + TAIL,))  # evicted long ago: evaluated again
    assert oldest.prompt_tokens_evaluated >= oldest.prompt_tokens - 3
    stats = backend.snapshot_stats()
    assert stats["restores"] == 1 and stats["evictions"] >= 3
    assert stats["bytes"] <= stats["limit_bytes"]


def test_zero_snapshot_memory_turns_snapshots_off(make_backend: Any) -> None:
    backend = make_backend(0)
    first = backend.warm((FILE_A,))
    backend.warm((FILE_B,))
    cached, _ = backend.cached_tokens((FILE_A,))
    assert cached <= 2  # only "<bos>#" is shared with FILE_B
    back = backend.warm((FILE_A + TAIL,))
    assert back.prompt_tokens_evaluated >= first.prompt_tokens - 3
    assert backend.snapshot_stats() == {
        "count": 0,
        "bytes": 0,
        "limit_bytes": 0,
        "restores": 0,
        "saves": 0,
        "tokens_saved": 0,
        "evictions": 0,
        "save_ms": 0.0,
        "restore_ms": 0.0,
    }
