"""LlamaCppBackend: llama.cpp in a restartable worker process, behind the Backend protocol."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from model.runtime.api import (
    BackendCrashedError,
    CancelToken,
    CompletionRequest,
    CompletionStream,
    InvalidModelError,
    ModelError,
    ModelInfo,
    SpecialToken,
    TokenLogprobs,
    Usage,
)
from model.runtime.fim import FimTemplate, all_markers
from model.runtime.gguf import read_gguf
from model.runtime.hardware import default_threads

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.02
_EOF = {"eof": True}
# How long close() waits for a running request to let go of the worker before killing it.
_CLOSE_WAIT_S = 1.0


@dataclass(frozen=True)
class LlamaConfig:
    """How to load a model into llama.cpp."""

    model_path: Path
    n_ctx: int = 4096
    n_threads: int | None = None
    n_threads_batch: int | None = None
    # Threads while the machine's other cores are idle (None: ``n_threads`` always).
    n_threads_max: int | None = None
    n_gpu_layers: int = 0
    lora_path: Path | None = None
    n_batch: int = 512
    # A checkpoint's adapters (path, scale), extra text stops, declared FIM template and name.
    loras: tuple[tuple[Path, float], ...] = ()
    stops: tuple[str, ...] = ()
    fim_declared: bool = False
    fim_template: FimTemplate | None = None
    name: str | None = None
    load_timeout: float = 180.0
    # A worker silent this long past a request's deadline, or after a cancel, is stuck
    # (in llama.cpp, between two checks that never come): it is killed and restarted.
    stuck_after: float = 10.0
    # Memory for KV snapshots of earlier prompts (model.runtime.kv_snapshots), restored when the
    # user returns to a file instead of evaluating its prompt again; 0 turns them off.
    snapshot_mb: int = 256
    # Called before every (re)load of the worker; a ModelError refuses the load. The
    # factory checks here that each verified file still has its digest, so a file swapped
    # after verification is never loaded.
    before_load: Callable[[], None] | None = None


class _Worker:
    """One running ``python -m model.runtime.worker`` process and the threads that read it."""

    def __init__(self, command: Sequence[str]) -> None:
        env = dict(os.environ)
        # The worker must import this package even when the caller's cwd is elsewhere.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            start_new_session=True,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log_tail: collections.deque[str] = collections.deque(maxlen=20)
        assert self.process.stdout is not None and self.process.stderr is not None
        for target, stream in (
            (self._read_replies, self.process.stdout),
            (self._read_log, self.process.stderr),
        ):
            threading.Thread(target=target, args=(stream,), daemon=True).start()

    def _read_replies(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                self.replies.put(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("model worker wrote a non-protocol line: %.200s", line)
        self.replies.put(_EOF)

    def _read_log(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip()
            if line:
                self.log_tail.append(line)
                logger.debug("llama.cpp: %s", line)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reply reader reports the death with its exit status

    def alive(self) -> bool:
        return self.process.poll() is None

    def death_message(self) -> str:
        """Explain how the worker died: signal or exit status plus its last log line."""
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            how = "stopped answering"
        elif code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        last = next((line for line in reversed(self.log_tail) if line.strip()), "")
        return how + (f" ({last[:200]})" if last else "")

    def kill(self) -> None:
        """End the process at once (it may be stuck inside llama.cpp, deaf to requests)."""
        if self.alive():
            self.process.kill()

    def stop(self) -> None:
        if self.alive():
            self.send({"op": "exit"})
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                # stdin's last buffered line can no longer reach a dead worker
                with contextlib.suppress(OSError):
                    pipe.close()


class LlamaCppBackend:
    """Runs a GGUF model through llama-cpp-python in a worker process it restarts on a crash.

    Requests are serialised (one ``Llama`` must never be used from two threads);
    the worker keeps the previous prompt's tokens, so a prompt sharing a prefix
    with the last one only evaluates its new tail, and snapshots of earlier prompts
    (``snapshot_mb``), so a prompt coming back to one of them does too.
    """

    def __init__(self, config: LlamaConfig, *, python: str | None = None) -> None:
        self.config = config
        # -P: the working directory (often the user's repository) is not put on sys.path,
        # so a ``model`` package there can never stand in for this one.
        self._command = [python or sys.executable, "-P", "-m", "model.runtime.worker"]
        self._worker: _Worker | None = None
        self._info: ModelInfo | None = None
        self._load_failure: ModelError | None = None
        self._next_id = 0
        self._lock = threading.RLock()
        self.restarts = 0

    # -- lifecycle -------------------------------------------------------------

    def _start(self) -> _Worker:
        """Start and load a worker if none is alive; raise the load error, remembered."""
        if self._worker is not None and self._worker.alive():
            return self._worker
        if self._load_failure is not None:
            raise self._load_failure
        if self._worker is not None:
            self.restarts += 1
            logger.warning("model worker %s; starting a new one", self._worker.death_message())
            self._worker.stop()
            self._worker = None
        try:
            if self.config.before_load is not None:
                self.config.before_load()  # what is loaded is what was verified
        except ModelError as error:
            self._load_failure = error
            raise
        gguf = read_gguf(self.config.model_path)  # clear errors before llama.cpp sees the file
        loras = list(self.config.loras)
        if self.config.lora_path is not None:
            loras.append((self.config.lora_path, 1.0))
        for lora, _ in loras:
            if not lora.is_file():
                raise InvalidModelError(f"LoRA adapter not found: {lora}")
        markers = set(all_markers())
        declared = self.config.fim_template
        if declared is not None:
            markers.update((*declared.inserted_markers(), *declared.stop_tokens))
        worker = _Worker(self._command)
        threads = self.config.n_threads or default_threads()
        load = {
            "op": "load",
            "path": str(self.config.model_path),
            "n_ctx": min(self.config.n_ctx, gguf.context_length or self.config.n_ctx),
            "n_threads": threads,
            "n_threads_batch": self.config.n_threads_batch or threads,
            "n_threads_max": max(threads, self.config.n_threads_max or threads),
            "n_gpu_layers": self.config.n_gpu_layers,
            "n_batch": self.config.n_batch,
            "snapshot_bytes": _snapshot_bytes(self.config.snapshot_mb),
            "loras": [[str(path), scale] for path, scale in loras],
            "markers": sorted(markers),
        }
        started = time.monotonic()
        reply = self._call(worker, load, timeout=self.config.load_timeout)
        if "error" in reply or not reply.get("ok"):
            worker.stop()
            message = reply.get("error") or f"the model worker {worker.death_message()}"
            self._load_failure = InvalidModelError(
                f"llama.cpp could not load {self.config.model_path.name}: {message}"
            )
            raise self._load_failure
        data = reply["info"]
        self._info = ModelInfo(
            name=self.config.name or str(data["name"]),
            architecture=str(data["architecture"]),
            context_length=int(data["context_length"]),
            special_tokens=frozenset(data["special_tokens"]),
            fim_tokens=dict(data["fim_tokens"]),
            fim_declared=self.config.fim_declared,
            fim_template=declared,
        )
        logger.info(
            "loaded %s (%s) in %.2fs with %d threads, %d GPU layers",
            self._info.name,
            self._info.architecture,
            time.monotonic() - started,
            threads,
            self.config.n_gpu_layers,
        )
        self._worker = worker
        return worker

    def _call(
        self,
        worker: _Worker,
        message: dict[str, Any],
        timeout: float,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait for its single reply (not for streamed ops)."""
        request_id = self._new_id()
        worker.send({**message, "id": request_id})
        end = time.monotonic() + timeout
        cancel_sent = False
        while True:
            if cancel is not None and cancel.cancelled and not cancel_sent:
                worker.send({"op": "cancel", "id": request_id})
                cancel_sent = True
            wait = max(0.0, end - time.monotonic())
            try:
                reply = worker.replies.get(timeout=wait if cancel is None else min(wait, 0.02))
            except queue.Empty:
                if time.monotonic() < end:
                    continue
                worker.process.kill()
                return {"error": f"no answer within {timeout:.0f}s"}
            if reply is _EOF:
                return {"error": f"the model worker {worker.death_message()}"}
            if reply.get("id") == request_id:
                return reply

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def close(self) -> None:
        """Stop the worker process, in bounded time even while a request is stuck in it.

        A running request holds the lock; if it does not let go within ``_CLOSE_WAIT_S``
        the worker is killed, which ends that request with an error and frees the lock.
        """
        if not self._lock.acquire(timeout=_CLOSE_WAIT_S):
            worker = self._worker
            if worker is not None:
                logger.warning("the model worker is busy; killing it to shut down")
                worker.kill()
            if not self._lock.acquire(timeout=_CLOSE_WAIT_S):
                logger.error("a model request did not end after its worker was killed")
                return
        try:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
        finally:
            self._lock.release()

    def reload(self) -> None:
        """Forget a remembered load failure and start afresh on the next request."""
        with self._lock:
            self.close()
            self._load_failure = None

    @property
    def worker_pid(self) -> int | None:
        """The pid of the live worker, if any (tests kill it to prove restarts)."""
        worker = self._worker
        return worker.process.pid if worker is not None and worker.alive() else None

    # -- Backend protocol ------------------------------------------------------

    def info(self) -> ModelInfo:
        """Load the model if needed and describe it."""
        with self._lock:
            self._start()
            assert self._info is not None
            return self._info

    def count_tokens(self, text: str) -> int:
        """Exact token count from the model's own tokenizer."""
        with self._lock:
            worker = self._start()
            reply = self._call(worker, {"op": "count", "text": text}, timeout=30)
            if "count" not in reply:
                raise ModelError(f"tokenizing failed: {reply.get('error')}")
            return int(reply["count"])

    def warm(
        self, prompt: Sequence[str | SpecialToken], cancel: CancelToken | None = None
    ) -> Usage:
        """Evaluate a prompt into the KV cache now, so the next completion only adds its tail.

        ``cancel`` stops it within one prefill chunk; what was evaluated stays cached.
        """
        with self._lock:
            worker = self._start()
            message = {"op": "warm", "prompt": _encode(prompt)}
            reply = self._call(worker, message, timeout=120, cancel=cancel)
            if "error" in reply:
                raise ModelError(f"warming the prompt cache failed: {reply['error']}")
            usage = reply["usage"]
            return Usage(
                model=self._info.name if self._info else "",
                prompt_tokens=usage["prompt_tokens"],
                prompt_tokens_evaluated=usage["prompt_tokens_evaluated"],
                finish_reason="cancelled" if usage.get("finish_reason") == "cancelled" else "stop",
            )

    def cached_tokens(self, prompt: Sequence[str | SpecialToken]) -> tuple[int, int]:
        """(leading tokens of ``prompt`` already in the KV cache, tokens in ``prompt``)."""
        with self._lock:
            worker = self._start()
            reply = self._call(worker, {"op": "cached", "prompt": _encode(prompt)}, timeout=30)
            if "cached" not in reply:
                raise ModelError(f"reading the prompt cache failed: {reply.get('error')}")
            return int(reply["cached"]), int(reply["total"])

    def snapshot_stats(self) -> dict[str, Any]:
        """The worker's KV snapshots (``model.runtime.kv_snapshots``): count, bytes, limit_bytes,
        restores, saves, tokens_saved (prompt tokens restores spared), evictions, and the
        milliseconds all saves and restores took.

        Waits for a running request (the worker answers in order) but starts no worker:
        with none running there are no snapshots.
        """
        with self._lock:
            worker = self._worker
            if worker is None or not worker.alive():
                return _no_snapshots(self.config.snapshot_mb)
            reply = self._call(worker, {"op": "snapshots"}, timeout=30)
            if "snapshots" not in reply:
                raise ModelError(f"reading the KV snapshots failed: {reply.get('error')}")
            return dict(reply["snapshots"])

    def complete(self, request: CompletionRequest) -> CompletionStream:
        """Start a generation in the worker; the stream holds the backend until it ends."""
        usage = Usage()
        return CompletionStream(self._generate(request, usage), usage)

    def _generate(self, request: CompletionRequest, usage: Usage) -> Iterator[str]:
        with self._lock:
            worker = self._start()
            assert self._info is not None
            usage.model = self._info.name
            request_id = self._new_id()
            worker.send(
                {
                    "op": "complete",
                    "id": request_id,
                    "prompt": _encode(request.prompt),
                    "max_tokens": request.max_tokens,
                    "stop": [*request.stop, *self.config.stops],
                    "stop_tokens": [token.text for token in request.stop_tokens],
                    "seconds_left": request.seconds_left(),
                    "temperature": request.temperature,
                    "top_p": request.top_p,
                    "seed": request.seed,
                    **_names_message(request),
                }
            )
            finished = False
            cancel_sent = False
            # The worker stops at the deadline by itself; past this, it is stuck.
            stuck_at = (
                request.deadline + self.config.stuck_after if request.deadline is not None else None
            )
            try:
                while True:
                    if not cancel_sent and request.cancel is not None and request.cancel.cancelled:
                        worker.send({"op": "cancel", "id": request_id})
                        cancel_sent = True
                        cancel_by = time.monotonic() + self.config.stuck_after
                        stuck_at = cancel_by if stuck_at is None else min(stuck_at, cancel_by)
                    try:
                        reply = worker.replies.get(timeout=_POLL_SECONDS)
                    except queue.Empty:
                        if stuck_at is not None and time.monotonic() > stuck_at:
                            worker.kill()
                            raise BackendCrashedError(
                                "the model worker stopped answering while generating; "
                                "it was stopped and restarts on the next request"
                            ) from None
                        continue
                    if reply is _EOF:
                        raise BackendCrashedError(
                            f"the model worker {worker.death_message()} while generating; "
                            "it restarts on the next request"
                        )
                    if reply.get("id") != request_id:
                        continue  # a late reply to an abandoned request
                    if "error" in reply:
                        finished = True
                        raise ModelError(f"generation failed: {reply['error']}")
                    if "piece" in reply:
                        yield reply["piece"]
                        continue
                    if reply.get("done"):
                        finished = True
                        data = reply["usage"]
                        usage.prompt_tokens = int(data["prompt_tokens"])
                        usage.prompt_tokens_evaluated = int(data["prompt_tokens_evaluated"])
                        usage.completion_tokens = int(data["completion_tokens"])
                        usage.finish_reason = data["finish_reason"]
                        usage.seconds = float(data["seconds"])
                        usage.logprobs = TokenLogprobs.from_json(data.get("logprobs"))
                        usage.constrained_tokens = int(data.get("constrained_tokens", 0))
                        if cancel_sent and usage.finish_reason != "stop":
                            usage.finish_reason = "cancelled"
                        return
            finally:
                if not finished and worker.alive():
                    # The consumer stopped early: stop the worker and drain the
                    # request so the next one starts from a quiet pipe.
                    worker.send({"op": "cancel", "id": request_id})
                    self._drain(worker, request_id)

    def _drain(self, worker: _Worker, request_id: int) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                reply = worker.replies.get(timeout=0.5)
            except queue.Empty:
                continue
            if reply is _EOF:
                return
            if reply.get("id") == request_id and ("done" in reply or "error" in reply):
                return
        worker.process.kill()


def _snapshot_bytes(snapshot_mb: int) -> int:
    return max(0, snapshot_mb) * 1024 * 1024


def _no_snapshots(snapshot_mb: int) -> dict[str, Any]:
    """What ``snapshot_stats`` reports while no worker runs."""
    counters = ("count", "bytes", "restores", "saves", "tokens_saved", "evictions")
    return {
        **dict.fromkeys(counters, 0),
        "limit_bytes": _snapshot_bytes(snapshot_mb),
        "save_ms": 0.0,
        "restore_ms": 0.0,
    }


def _names_message(request: CompletionRequest) -> dict[str, Any]:
    """The ``names`` and ``qualified`` entries of a ``complete`` message: absent unless the
    request constrains."""
    names = request.names
    message: dict[str, Any] = {}
    if names is not None:
        message["names"] = {"names": list(names.names), "typed": names.typed, "lead": names.lead}
    qualified = request.qualified
    if qualified is not None:
        message["qualified"] = {
            "names": {qualifier: list(found) for qualifier, found in qualified.attributes},
            "private": sorted(qualified.private),
            "line": qualified.line,
        }
    return message


def _encode(prompt: Sequence[str | SpecialToken]) -> list[list[str]]:
    """Prompt parts as JSON pairs: ["t", text] or ["s", marker]."""
    return [["s", part.text] if isinstance(part, SpecialToken) else ["t", part] for part in prompt]
