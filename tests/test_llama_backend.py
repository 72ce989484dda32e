"""LlamaCppBackend with the real embedded model: streaming, prefix reuse, cancel, crashes."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.runtime.api import (
    BackendCrashedError,
    CancelToken,
    CompletionRequest,
    InvalidModelError,
    SpecialToken,
)
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend
from model.runtime.worker import _StopFilter

CODE = '''import json
import os


def read_settings(path):
    """Read the settings file."""
'''


@pytest.fixture(scope="module")
def backend(gemma_path: Path) -> Iterator[LlamaCppBackend]:
    instance = LlamaCppBackend(LlamaConfig(model_path=gemma_path, n_ctx=2048, n_threads=2))
    yield instance
    instance.close()


def test_streams_text_within_max_tokens(backend: LlamaCppBackend) -> None:
    stream = backend.complete(
        CompletionRequest(prompt=("def add(a, b):\n    return",), max_tokens=8)
    )
    pieces = list(stream)
    assert "".join(pieces).strip()
    assert 0 < stream.usage.completion_tokens <= 8
    assert stream.usage.prompt_tokens > 0
    assert stream.usage.model


def test_info_reports_no_fim_for_gemma(backend: LlamaCppBackend) -> None:
    info = backend.info()
    assert info.architecture == "gemma3"
    assert not {"prefix", "suffix", "middle"} <= set(info.fim_tokens)
    assert "<eos>" in info.special_tokens  # a real single-token control marker


def test_marker_text_in_code_is_not_a_control_token(backend: LlamaCppBackend) -> None:
    # Inserted as text, a marker string is several ordinary tokens, never the control token.
    assert backend.count_tokens("<eos>") > 1


def test_second_prompt_sharing_a_prefix_evaluates_only_its_tail(
    backend: LlamaCppBackend,
) -> None:
    backend.complete(CompletionRequest(prompt=("unrelated warm-up text",), max_tokens=1)).text()
    context = CODE * 6
    first = backend.complete(CompletionRequest(prompt=(context + "x = 1\n",), max_tokens=1))
    first.text()
    second = backend.complete(CompletionRequest(prompt=(context + "y = 2\n",), max_tokens=1))
    second.text()
    assert first.usage.prompt_tokens_evaluated >= first.usage.prompt_tokens - 2
    assert second.usage.prompt_tokens_evaluated < second.usage.prompt_tokens / 4
    assert second.usage.prompt_tokens_evaluated < first.usage.prompt_tokens_evaluated


def test_cancel_stops_generation_between_tokens(backend: LlamaCppBackend) -> None:
    cancel = CancelToken()
    stream = backend.complete(
        CompletionRequest(prompt=("Once upon a time",), max_tokens=400, cancel=cancel)
    )
    first = next(stream)
    cancel.cancel()
    rest = list(stream)
    assert first is not None
    assert stream.usage.finish_reason == "cancelled"
    assert stream.usage.completion_tokens < 60, rest
    # The model is free again at once.
    again = backend.complete(CompletionRequest(prompt=("def f():\n    return",), max_tokens=3))
    assert again.text() is not None


def test_abandoned_stream_frees_the_model(backend: LlamaCppBackend) -> None:
    stream = backend.complete(CompletionRequest(prompt=("Once upon a time",), max_tokens=400))
    next(stream)
    stream._pieces.close()  # type: ignore[attr-defined]  # the consumer walks away
    again = backend.complete(CompletionRequest(prompt=("x = ",), max_tokens=2))
    again.text()
    assert again.usage.completion_tokens >= 1


def test_deadline_ends_generation(backend: LlamaCppBackend) -> None:
    stream = backend.complete(
        CompletionRequest(
            prompt=("Once upon a time",), max_tokens=2000, deadline=time.monotonic() + 0.5
        )
    )
    stream.text()
    assert stream.usage.finish_reason == "deadline"


def test_stop_sequence_and_stop_token(backend: LlamaCppBackend) -> None:
    stream = backend.complete(
        CompletionRequest(
            prompt=("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n",),
            max_tokens=40,
            stop=("\n",),
            stop_tokens=(SpecialToken("<eos>"),),
        )
    )
    text = stream.text()
    assert "\n" not in text
    assert stream.usage.finish_reason in {"stop", "length"}


def test_concurrent_callers_are_serialised(backend: LlamaCppBackend) -> None:
    results: list[str] = []

    def ask(prompt: str) -> None:
        results.append(backend.complete(CompletionRequest(prompt=(prompt,), max_tokens=4)).text())

    threads = [threading.Thread(target=ask, args=(f"value_{i} = ",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 3


def test_worker_restarts_after_a_crash(gemma_path: Path) -> None:
    backend = LlamaCppBackend(LlamaConfig(model_path=gemma_path, n_ctx=1024, n_threads=2))
    try:
        stream = backend.complete(CompletionRequest(prompt=("Once upon a time",), max_tokens=300))
        next(stream)
        pid = backend.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGABRT)  # what a GGML_ASSERT does to the process
        with pytest.raises(BackendCrashedError, match="SIGABRT"):
            list(stream)
        again = backend.complete(CompletionRequest(prompt=("def f():\n",), max_tokens=3))
        again.text()
        assert again.usage.completion_tokens >= 1
        assert backend.restarts == 1
        assert backend.worker_pid not in (None, pid)
    finally:
        backend.close()


def test_a_model_that_aborts_llama_cpp_at_load(tmp_path: Path, gemma_path: Path) -> None:
    # A stand-in interpreter that dies like llama.cpp does on a malformed tensor.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nread line\nkill -ABRT $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    backend = LlamaCppBackend(LlamaConfig(model_path=gemma_path), python=str(fake))
    with pytest.raises(InvalidModelError, match="SIGABRT"):
        backend.info()
    # The failure is remembered: no crash loop on every keystroke.
    started = time.monotonic()
    with pytest.raises(InvalidModelError):
        backend.info()
    assert time.monotonic() - started < 0.5
    backend.close()


def test_llama_cpp_rejecting_a_model_is_a_clear_error(tmp_path: Path) -> None:
    from tests.gguf_writer import tiny_model

    bogus = tiny_model(architecture="no-such-arch").write(tmp_path / "bogus.gguf")
    backend = LlamaCppBackend(LlamaConfig(model_path=bogus))
    with pytest.raises(InvalidModelError, match=r"could not load bogus\.gguf"):
        backend.info()
    backend.close()


@pytest.mark.parametrize(
    ("chunks", "stops", "expected", "stopped"),
    [
        (["abc", "de\nf"], ["\n"], "abcde", True),
        (["ab", "c<", "|e", "nd|>x"], ["<|end|>"], "abc", True),
        (["ab", "c<", "|x"], ["<|end|>"], "abc<|x", False),
        (["hello"], [], "hello", False),
    ],
)
def test_stop_filter_holds_back_partial_stops(
    chunks: list[str], stops: list[str], expected: str, stopped: bool
) -> None:
    stop_filter = _StopFilter(stops)
    out = ""
    hit = False
    for chunk in chunks:
        emitted, hit = stop_filter.feed(chunk)
        out += emitted
        if hit:
            break
    if not hit:
        out += stop_filter.flush()
    assert (out, hit) == (expected, stopped)


def test_cached_tokens_counts_what_the_cache_holds(backend: LlamaCppBackend) -> None:
    prompt = (CODE + "\n\ndef load(path):\n",)
    backend.complete(CompletionRequest(prompt=prompt, max_tokens=2)).text()
    cached, total = backend.cached_tokens(prompt)
    assert total > 20 and cached >= total - 1
    other, _ = backend.cached_tokens(("Something else entirely.\n",))
    assert other <= 1  # at most the BOS token is shared


def test_a_cancelled_warm_up_stops_early_and_keeps_its_progress(
    backend: LlamaCppBackend,
) -> None:
    long_prompt = (CODE * 40,)  # well over one prefill chunk
    token = CancelToken()
    token.cancel()
    usage = backend.warm(long_prompt, token)
    assert usage.finish_reason == "cancelled"
    assert usage.prompt_tokens_evaluated < usage.prompt_tokens - 64
    cached, _ = backend.cached_tokens(long_prompt)
    finished = backend.warm(long_prompt)  # goes on from what is cached
    assert finished.prompt_tokens_evaluated <= finished.prompt_tokens - cached
