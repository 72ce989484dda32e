"""The llama.cpp worker process: one Llama, driven by JSON lines on stdin/stdout.

llama.cpp can abort the whole process on a malformed model or an internal
assertion, so it never runs inside the editor-facing server. The parent
(``model.runtime.llama_backend``) starts ``python -m model.runtime.worker``, sends one JSON object
per line and reads replies the same way; no pickle crosses the pipe. A reader
thread takes ``cancel`` messages while the main thread generates, so generation
stops between two tokens.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from model.runtime.kv_snapshots import KvSnapshots, common_prefix
from model.runtime.spare_cores import SpareCores
from model.runtime.token_scores import TokenScorer
from model.runtime.worker_constraints import WorkerConstraints

logger = logging.getLogger(__name__)

_EXIT = {"op": "exit"}


# Prompt tokens evaluated between two looks at the cancel flag (about 0.2-0.4 s on one core).
_PREFILL_CHUNK = 64


class _Protocol:
    """Writes replies on the protocol pipe; serialised because two threads write."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class _Inbox:
    """Reads stdin on a thread: ``cancel`` takes effect at once, other ops queue in order."""

    def __init__(self, stream: IO[str]) -> None:
        self.ops: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                logger.error("worker: ignoring a malformed message")
                continue
            if message.get("op") == "cancel":
                with self._lock:
                    self._cancelled.add(int(message.get("id", -1)))
            else:
                self.ops.put(message)
        self.ops.put(_EXIT)

    def is_cancelled(self, request_id: int) -> bool:
        with self._lock:
            return request_id in self._cancelled

    def forget(self, request_id: int) -> None:
        with self._lock:
            self._cancelled.discard(request_id)


class _Engine:
    """One loaded model and the generation loop around it."""

    def __init__(self, options: dict[str, Any]) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        kwargs: dict[str, Any] = {
            "model_path": options["path"],
            "n_ctx": int(options.get("n_ctx", 4096)),
            "n_threads": int(options["n_threads"]),
            "n_threads_batch": int(options.get("n_threads_batch") or options["n_threads"]),
            "n_gpu_layers": int(options.get("n_gpu_layers", 0)),
            "n_batch": int(options.get("n_batch", 512)),
            "seed": int(options.get("seed", 0)),
            "verbose": False,
        }
        if options.get("lora_path"):
            kwargs["lora_path"] = options["lora_path"]
        self.llm = llama_cpp.Llama(**kwargs)
        self._set_adapters([(str(p), float(s)) for p, s in options.get("loras") or []])
        self._vocab = self.llm._model.vocab
        self.markers = self._single_token_markers(options.get("markers", []))
        # Earlier prompts' KV state, restored when a prompt comes back to them (0: off).
        self.snapshots = KvSnapshots(self.llm, llama_cpp, int(options.get("snapshot_bytes", 0)))
        # More threads while the machine's other cores are idle (model.runtime.spare_cores).
        low = int(options["n_threads"])
        self.cores = SpareCores(low, int(options.get("n_threads_max") or low))
        self._threads = (low, kwargs["n_threads_batch"])
        # Names by construction (model.runtime.constrain): the vocabulary indexed on first use.
        self.constraints = WorkerConstraints(self.llm, llama_cpp)

    def _use_threads(self) -> None:
        """Before a llama.cpp step: the threads the machine can give it now."""
        wanted = self.cores.threads()
        if self.cores.high == self.cores.low:
            return  # fixed by the user (model.threads): as loaded
        if (wanted, wanted) != self._threads:
            self._llama_cpp.llama_set_n_threads(self.llm._ctx.ctx, wanted, wanted)
            self._threads = (wanted, wanted)

    def _set_adapters(self, loras: list[tuple[str, float]]) -> None:
        """Apply LoRA adapters, each at its own scale (``Llama`` itself takes only one)."""
        if not loras:
            return
        import ctypes

        llama_cpp = self._llama_cpp
        adapters = []
        for path, _ in loras:
            adapter = llama_cpp.llama_adapter_lora_init(self.llm._model.model, path.encode())
            if adapter is None:
                raise ValueError(f"llama.cpp could not load the LoRA adapter {path}")
            adapters.append(adapter)
        # Freed with the model (llama.cpp owns adapters it initialised for a model).
        self._adapters = adapters
        array = (llama_cpp.llama_adapter_lora_p_ctypes * len(adapters))(*adapters)
        scales = (ctypes.c_float * len(loras))(*(scale for _, scale in loras))
        if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, array, len(adapters), scales):
            raise ValueError("llama.cpp could not apply the LoRA adapters")

    def _single_token_markers(self, markers: list[str]) -> dict[str, int]:
        """Marker strings the tokenizer encodes as exactly one token, with their ids."""
        found: dict[str, int] = {}
        for marker in markers:
            ids = self.llm.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                found[marker] = ids[0]
        return found

    def info(self) -> dict[str, Any]:
        llama_cpp = self._llama_cpp
        vocab = self._vocab
        roles = {
            "prefix": llama_cpp.llama_vocab_fim_pre,
            "suffix": llama_cpp.llama_vocab_fim_suf,
            "middle": llama_cpp.llama_vocab_fim_mid,
            "pad": llama_cpp.llama_vocab_fim_pad,
            "repo": llama_cpp.llama_vocab_fim_rep,
            "sep": llama_cpp.llama_vocab_fim_sep,
        }
        fim_tokens: dict[str, str] = {}
        for role, getter in roles.items():
            token = getter(vocab)
            if token >= 0:
                fim_tokens[role] = self.llm._model.token_get_text(token)
        metadata = self.llm.metadata
        return {
            "name": metadata.get("general.name") or os.path.basename(self.llm.model_path),
            "architecture": metadata.get("general.architecture", ""),
            "context_length": self.llm.n_ctx(),
            "special_tokens": sorted(self.markers),
            "fim_tokens": fim_tokens,
        }

    def tokens_for(self, parts: list[list[str]]) -> list[int]:
        """Token ids of a prompt: text with special parsing off, markers by id."""
        tokens: list[int] = []
        first = True
        for kind, value in parts:
            if kind == "s":
                marker_id = self.markers.get(value)
                if marker_id is None:
                    ids = self.llm.tokenize(value.encode(), add_bos=False, special=True)
                    if len(ids) != 1:
                        raise ValueError(f"{value!r} is not a single token of this model")
                    marker_id = ids[0]
                if first and self.llm._model.add_bos_token():
                    tokens.append(self.llm.token_bos())
                tokens.append(marker_id)
            else:
                tokens.extend(self.llm.tokenize(value.encode(), add_bos=first, special=False))
            first = False
        return tokens

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def generate(
        self, message: dict[str, Any], inbox: _Inbox, protocol: _Protocol
    ) -> dict[str, Any]:
        """Stream one completion; returns the usage record that ends it."""
        request_id = int(message["id"])
        started = time.monotonic()
        seconds_left = message.get("seconds_left")
        deadline = None if seconds_left is None else started + float(seconds_left)
        tokens = self.tokens_for(message["prompt"])
        room = self.llm.n_ctx() - len(tokens)
        if room <= 0:
            raise ValueError(
                f"prompt of {len(tokens)} tokens does not fit the {self.llm.n_ctx()}-token context"
            )
        max_tokens = min(int(message.get("max_tokens", 64)), room)
        stop_ids = {self.markers[m] for m in message.get("stop_tokens", []) if m in self.markers}
        stops: list[str] = [s for s in message.get("stop", []) if s]
        prefilled, interrupted = self._prefill(tokens, inbox, request_id, deadline)
        evaluated = self._evaluated_counter()
        if message.get("seed") is not None:
            self.llm.set_seed(int(message["seed"]))
        usage: dict[str, Any] = {
            "prompt_tokens": len(tokens),
            "completion_tokens": 0,
            "finish_reason": "length",
        }
        pieces = _StopFilter(stops)
        scorer = TokenScorer(self.llm, self._llama_cpp)
        if interrupted is not None:
            usage["finish_reason"] = interrupted
            max_tokens = 0
        if max_tokens > 0:
            for finish, text in self._tokens_text(
                tokens, message, stop_ids, max_tokens, usage, inbox, request_id, deadline, scorer
            ):
                if text:
                    emitted, stopped = pieces.feed(text)
                    if emitted:
                        protocol.send({"id": request_id, "piece": emitted})
                    if stopped:
                        usage["finish_reason"] = "stop"
                        break
                if finish:
                    usage["finish_reason"] = finish
                    break
        tail = pieces.flush()
        if tail and usage["finish_reason"] != "stop":
            protocol.send({"id": request_id, "piece": tail})
        usage["prompt_tokens_evaluated"] = prefilled + evaluated.prompt_tokens
        usage["seconds"] = time.monotonic() - started
        usage["logprobs"] = scorer.summary.as_json()
        evaluated.detach()
        return usage

    def _cached_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the KV cache already holds."""
        cached = np.asarray(self.llm.input_ids[: self.llm.n_tokens], dtype=np.int32)
        return common_prefix(cached, np.asarray(tokens, dtype=np.int32))

    def _prefill(
        self, tokens: list[int], inbox: _Inbox, request_id: int, deadline: float | None
    ) -> tuple[int, str | None]:
        """Evaluate the prompt's uncached part, but its last token, in chunks.

        llama.cpp evaluates a prompt in one uninterruptible call: hundreds of new tokens
        take seconds on a CPU, and a request cancelled meanwhile would hold the model that
        long. In chunks, a cancel or the deadline stops it within one chunk. Returns the
        tokens evaluated and the reason it stopped early (None: it did not).
        """
        target = tokens[:-1]
        common = self._cached_prefix(target)
        if common == len(target):
            return 0, None
        # Another file or region: keep the live state, or bring back one kept earlier.
        common = self.snapshots.before_prefill(target, common)
        self.llm.n_tokens = common
        done = 0
        for start in range(common, len(target), _PREFILL_CHUNK):
            if inbox.is_cancelled(request_id):
                return done, "cancelled"
            if deadline is not None and time.monotonic() > deadline:
                return done, "deadline"
            chunk = target[start : start + _PREFILL_CHUNK]
            self._use_threads()
            self.llm.eval(chunk)
            done += len(chunk)
        return done, None

    def _tokens_text(
        self,
        tokens: list[int],
        message: dict[str, Any],
        stop_ids: set[int],
        max_tokens: int,
        usage: dict[str, Any],
        inbox: _Inbox,
        request_id: int,
        deadline: float | None,
        scorer: TokenScorer,
    ) -> Iterator[tuple[str | None, str]]:
        """Yield (finish reason or None, decoded text) per sampled token; ``scorer`` gets
        each counted token's log-probability."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        temperature = float(message.get("temperature", 0.0))
        self._use_threads()
        extra: dict[str, Any] = {}
        constraints = self.constraints.processors(message, len(tokens))
        if constraints:  # never with logit_bias: llama-cpp-python drops both
            extra["logits_processor"] = self._llama_cpp.LogitsProcessorList(constraints)
        generator = self.llm.generate(
            tokens,
            temp=temperature,
            top_p=float(message.get("top_p", 0.95)),
            top_k=40,
            min_p=0.05,
            repeat_penalty=1.0,
            **extra,
        )
        try:
            for token in generator:
                self._use_threads()  # the next token's step: the machine may have changed
                if inbox.is_cancelled(request_id):
                    yield "cancelled", ""
                    return
                if deadline is not None and time.monotonic() > deadline:
                    yield "deadline", ""
                    return
                if token in stop_ids or self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    yield "stop", ""
                    return
                usage["completion_tokens"] += 1
                scorer.score(token)  # before the generator resumes: the next step overwrites
                if constraints:
                    usage["constrained_tokens"] = sum(found.steps for found in constraints)
                text = decoder.decode(self.llm.detokenize([token]))
                finished = usage["completion_tokens"] >= max_tokens
                yield ("length" if finished else None), text
                if finished:
                    return
        finally:
            generator.close()

    def _evaluated_counter(self) -> _EvalCounter:
        return _EvalCounter(self.llm)

    def warm(self, message: dict[str, Any], inbox: _Inbox) -> dict[str, Any]:
        """Evaluate a prompt into the KV cache without sampling (pre-warming).

        In chunks, like a completion's prefill: a cancel (a completion waiting for the model)
        stops it within one chunk, and what was evaluated stays cached for the next prompt
        that starts the same way.
        """
        tokens = self.tokens_for(message["prompt"])[: self.llm.n_ctx() - 1]
        done, stopped = self._prefill(tokens, inbox, int(message["id"]), None)
        return {
            "prompt_tokens": len(tokens),
            "prompt_tokens_evaluated": done,
            "finish_reason": stopped or "stop",
        }

    def cached(self, message: dict[str, Any]) -> dict[str, Any]:
        """How many leading tokens of a prompt the KV cache holds, and the prompt's length.

        A snapshot counts as cached: restoring it costs milliseconds, not a prefill.
        """
        tokens = self.tokens_for(message["prompt"])
        held = max(self._cached_prefix(tokens), self.snapshots.best_prefix(tokens))
        return {"cached": held, "total": len(tokens)}


class _EvalCounter:
    """Counts the prompt tokens llama.cpp really evaluates (the first eval of a generation)."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._original = llm.eval
        self.prompt_tokens = 0
        self._calls = 0

        def counting_eval(batch: Any) -> Any:
            if self._calls == 0:
                self.prompt_tokens = len(batch)
            self._calls += 1
            return self._original(batch)

        llm.eval = counting_eval

    def detach(self) -> None:
        self._llm.eval = self._original


class _StopFilter:
    """Holds back text that might be the start of a stop sequence until it is decided."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add text; return what is safe to emit and whether a stop sequence was hit."""
        self._pending += text
        earliest = min(
            (i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1
        )
        if earliest >= 0:
            emitted = self._pending[:earliest]
            self._pending = ""
            return emitted, True
        keep = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:length]):
                    keep = max(keep, length)
                    break
        emitted = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return emitted, False

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending


def _protocol_stream() -> IO[str]:
    """Move the protocol onto a private fd and point fd 1 at stderr.

    llama.cpp and ggml print from C to fd 1; without this a stray log line
    would corrupt the JSON stream.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


def serve(stdin: IO[str], out: IO[str]) -> int:
    """Answer requests until stdin closes or an ``exit`` op arrives."""
    protocol = _Protocol(out)
    inbox = _Inbox(stdin)
    engine: _Engine | None = None
    while True:
        message = inbox.ops.get()
        op = message.get("op")
        request_id = message.get("id")
        try:
            if op == "exit":
                return 0
            if op == "load":
                engine = _Engine(message)
                protocol.send({"id": request_id, "ok": True, "info": engine.info()})
                continue
            if engine is None:
                raise RuntimeError("no model loaded")
            if op == "count":
                protocol.send({"id": request_id, "count": engine.count(message["text"])})
            elif op == "complete":
                usage = engine.generate(message, inbox, protocol)
                protocol.send({"id": request_id, "done": True, "usage": usage})
            elif op == "warm":
                usage = engine.warm(message, inbox)
                protocol.send({"id": request_id, "done": True, "usage": usage})
            elif op == "cached":
                protocol.send({"id": request_id, **engine.cached(message)})
            elif op == "snapshots":
                protocol.send({"id": request_id, "snapshots": engine.snapshots.stats()})
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as error:
            protocol.send({"id": request_id, "error": f"{type(error).__name__}: {error}"})
        finally:
            if request_id is not None:
                inbox.forget(int(request_id))


def main() -> int:
    """Entry point of ``python -m model.runtime.worker``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = _protocol_stream()
    return serve(sys.stdin, out)


if __name__ == "__main__":
    sys.exit(main())
