"""The model side of the server: backend, verifier and pipeline, loaded off the event loop.

One worker thread runs everything that touches the model (loading, warming, completions,
fixes) in order, so a ``Llama`` is never used from two threads and a cancelled request
frees the model for the next one as soon as generation stops between tokens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from indexer.quarantine import Quarantine
from lint_bridge.names import KnownSymbols
from lsp.core.factory import backend_settings, build_pipeline
from lsp.core.pipeline import (
    CompletionPipeline,
    CompletionResult,
    ContextSource,
    Cursor,
)
from lsp.core.settings import ServerSettings
from model.factory import BackendSettings, create_backend
from model.runtime.api import (
    Backend,
    BackendCrashedError,
    BackendPausedError,
    CancelToken,
    ModelError,
    ModelInfo,
)
from model.runtime.breaker import CircuitBreaker
from model.runtime.hardware import interactive_threads
from model.runtime.prompt import Snippet

logger = logging.getLogger(__name__)

ModelState = Literal["idle", "loading", "ready", "error"]
BackendFactory = Callable[[BackendSettings], Backend]
Report = Callable[[str, str], None]  # (key, message): shown to the user once per key
T = TypeVar("T")
# How often a remote server that did not answer is tried again (on a completion request).
REMOTE_RETRY_S = 30.0


def fix_for(error: ModelError, settings: ServerSettings) -> str:
    """What the user should do about a model error, in one sentence."""
    if settings.model.remote_url:
        return (
            f"Check that the server at {settings.model.remote_url} is running, or clear "
            "apprentice.model.remoteUrl to use the local model."
        )
    if settings.model.path:
        return (
            "Fix apprentice.model.path (a GGUF file, checkpoint directory or installed name), "
            "or clear it to use the embedded model; `apprentice model verify PATH` checks it."
        )
    return "Reinstall Apprentice (`make setup`) to restore the embedded model."


@dataclass
class ModelStatus:
    """What ``apprentice.status`` reports about the model."""

    state: ModelState = "idle"
    name: str = ""
    architecture: str = ""
    error: str | None = None
    load_seconds: float | None = None
    # The serving model's checkpoint (name, version, signer, verified...; ResolvedModel.describe)
    checkpoint: dict[str, object] = field(default_factory=dict)
    # Why the last switch to another model was refused while this one kept serving.
    refused: str | None = None


class Engine:
    """Owns the backend and the pipeline; everything that uses the model runs on one thread."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        root: Path | None,
        report: Report,
        factory: BackendFactory = create_backend,
    ) -> None:
        self.settings = settings
        self.root = root
        self.report = report
        self.factory = factory
        self.status = ModelStatus()
        self.backend: Backend | None = None
        self.pipeline: CompletionPipeline | None = None
        self.context: ContextSource | None = None
        self.known_symbols: KnownSymbols | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apprentice-model")
        self._generation = 0  # bumped by every reload, so a stale load never installs itself
        self._warm_seq = 0
        # The running or queued warm-up's cancel: a completion that needs the model fires it.
        self._warming = CancelToken()
        self._failed_at = 0.0
        self._serving: BackendSettings | None = None  # what the serving backend was made from
        # Told about every finished completion, cancelled ones included (token accounting).
        self.on_result: Callable[[CompletionResult], None] | None = None
        self._lock = threading.Lock()
        # Files that crashed the model worker or the pipeline three times get no completions.
        self.quarantine = Quarantine()
        # The file whose prompt the model thread is warming now (None: not warming).
        self.warming: str | None = None
        # Warm-ups run, stopped for a completion, and the prompt tokens they evaluated.
        self.warm_stats = {"runs": 0, "stopped": 0, "evaluated": 0}
        # The worker's KV snapshots as last read on the model thread (status never waits
        # for the model: a generation holds it).
        self.snapshots: dict[str, object] = {}
        # Told (from any thread) whenever ``status`` or ``warming`` changes: the server
        # pushes its state to the client from here.
        self.on_change: Callable[[], None] | None = None

    def _changed(self) -> None:
        listener = self.on_change
        if listener is not None:
            try:
                listener()
            except Exception:  # a listener's fault must not stop a load or a warm-up
                logger.exception("status listener failed")

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> asyncio.Future[None]:
        """Load the model in the background (never on a keystroke)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            if self.backend is None:
                self.status = ModelStatus(state="loading")
            # else the serving model goes on serving until its successor has loaded
        self._changed()
        return asyncio.get_running_loop().run_in_executor(self._executor, self._load, generation)

    def _load(self, generation: int) -> None:
        started = time.monotonic()
        settings = self.settings
        chosen = backend_settings(settings)
        checkpoint: dict[str, object] = {}
        try:
            if not chosen.remote_url and chosen.model_path:
                # Verified (and refused) before llama.cpp or the old model are touched.
                chosen = replace(chosen, resolved=chosen.resolve())
                checkpoint = chosen.resolve().describe()
            backend = self.factory(chosen)
            info: ModelInfo = backend.info()
        except ModelError as error:
            self._failed(error, settings, generation)
            return
        except Exception as error:  # a broken backend must not take the server down
            logger.exception("loading the model failed")
            failure = ModelError(f"the model could not be loaded: {error}")
            self._failed(failure, settings, generation)
            return
        with self._lock:
            if generation != self._generation:
                backend.close()
                return
            if self.backend is not None:
                self.backend.close()
            self.backend = backend
            self._serving = chosen
            self.pipeline = self._pipeline(backend)
            self.status = ModelStatus(
                state="ready",
                name=info.name,
                architecture=info.architecture,
                load_seconds=time.monotonic() - started,
                checkpoint=checkpoint,
            )
        logger.info("model %s ready in %.2fs", info.name, time.monotonic() - started)
        self._changed()

    def _failed(self, error: ModelError, settings: ServerSettings, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a newer load is under way: this outcome no longer matters
            serving = self.backend is not None and self.status.state == "ready"
            if serving:
                # A refused switch (a tampered checkpoint, a bad signature...) leaves the
                # model that was serving in place, and says so.
                message = (
                    f"Apprentice: model not switched, {self.status.name} keeps serving: "
                    f"{error}. {fix_for(error, settings)}"
                )
                self.status = replace(self.status, refused=str(error))
            else:
                message = f"Apprentice: no completions: {error}. {fix_for(error, settings)}"
                self.status = ModelStatus(state="error", error=str(error))
                self._failed_at = time.monotonic()
        self._changed()
        logger.error("%s", message)
        self.report("model", message)

    def retry_if_due(self) -> None:
        """A remote server that was down is tried again now and then (a local file is not:
        it will not fix itself; a settings change reloads it)."""
        if self.status.state != "error" or not self.settings.model.remote_url:
            return
        if time.monotonic() - self._failed_at < REMOTE_RETRY_S:
            return
        logger.info("trying the remote model server again")
        self.start()

    def _pipeline(self, backend: Backend) -> CompletionPipeline:
        return build_pipeline(
            self.settings,
            backend,
            root=self.root,
            context=self._context,
            known_symbols=self.known_symbol,
        )

    def _context(self, cursor: Cursor) -> list[Snippet]:
        source = self.context
        return list(source(cursor)) if source is not None else []

    def known_symbol(self, dotted: str) -> bool | None:
        """Whether the repository's index defines ``dotted`` (None: the index cannot say)."""
        lookup = self.known_symbols
        return lookup(dotted) if lookup is not None else None

    def reconfigure(self, settings: ServerSettings) -> asyncio.Future[None] | None:
        """Apply new settings; reload the model only when its own settings changed."""
        old, self.settings = self.settings, settings
        if old.model != settings.model or self.status.state == "error" or self.status.refused:
            return self.start()
        with self._lock:
            if self.backend is not None:
                self.pipeline = self._pipeline(self.backend)
        return None

    def close(self) -> None:
        """Stop the model worker; pending work is abandoned."""
        with self._lock:
            self._generation += 1
            backend, self.backend, self.pipeline = self.backend, None, None
        self._executor.shutdown(wait=False, cancel_futures=True)
        if backend is not None:
            backend.close()

    # -- work --------------------------------------------------------------------------

    async def run(self, work: Callable[[], T]) -> T:
        """Run model work on the model thread, in arrival order."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def complete(
        self,
        cursor: Cursor,
        cancel: CancelToken,
        *,
        budget: bool = True,
        started: float | None = None,
    ) -> CompletionResult | None:
        """One suggestion, or None while the model is loading or unusable.

        ``budget`` False (an explicit request) lets generation run past the time budget.
        """
        pipeline = self.pipeline
        if pipeline is None or self.status.state != "ready":
            return None
        if self.quarantine.blocked(cursor.path):
            return None
        self._warming.cancel()  # a warm-up never makes a completion wait
        # The pipeline current when the model thread gets to it: a switch may have closed
        # the one current now.
        return await self.run(
            lambda: self._complete(self.pipeline or pipeline, cursor, cancel, budget, started)
        )

    def _complete(
        self,
        pipeline: CompletionPipeline,
        cursor: Cursor,
        cancel: CancelToken,
        budget: bool,
        started: float | None,
    ) -> CompletionResult | None:
        if cancel.cancelled:  # superseded while it waited for the model
            return None
        try:
            result = pipeline.complete(cursor, cancel=cancel, budget=budget, started=started)
            if self.on_result is not None:
                self.on_result(result)
            self._executor.submit(self._read_snapshots)  # after this answer, not before
            if pipeline.cold.take_warm() == cursor.path:
                # It was served from a small first prompt: the full one is warmed next,
                # unless a completion comes first.
                self._warming = token = CancelToken()
                self._executor.submit(self._warm, cursor, self._warm_seq, token)
            return result
        except BackendPausedError as error:  # a failing server is left alone a while
            logger.debug("no completion: %s", error)
            return None
        except ModelError as error:
            if isinstance(error, BackendCrashedError):
                self.quarantine.crashed(cursor.path, "the model worker")
            logger.error("completion failed: %s", error)
            self.report("model", f"Apprentice: {error}. {fix_for(error, self.settings)}")
            return None
        except Exception:  # a parser or verifier fault on this buffer: no suggestion, counted
            logger.exception("completion for %s failed", cursor.path)
            self.quarantine.crashed(cursor.path, "the parser or the verifier")
            return None

    async def warm(self, cursor: Cursor) -> None:
        """Fill the model's prompt cache for a document just opened.

        Queued behind the model load when it is still running; only the latest document
        is warmed (opening ten files must not queue ten prompt evaluations).
        """
        self._warm_seq += 1
        self._warming.cancel()
        self._warming = token = CancelToken()
        await self.run(lambda: self._warm(cursor, self._warm_seq, token))

    def _warm(self, cursor: Cursor, seq: int, cancel: CancelToken) -> None:
        """On the model thread: warm unless a newer warm-up or a completion came first."""
        pipeline = self.pipeline
        if pipeline is None or seq != self._warm_seq or cancel.cancelled:
            return
        self.warming = cursor.path
        self._changed()
        try:
            usage = pipeline.warm(cursor, cancel)
        except ModelError as error:
            logger.warning("warming the prompt cache failed: %s", error)
            return
        finally:
            self.warming = None
            self._changed()
        self._read_snapshots()
        if usage is not None:
            self.warm_stats["runs"] += 1
            self.warm_stats["stopped"] += usage.finish_reason == "cancelled"
            self.warm_stats["evaluated"] += usage.prompt_tokens_evaluated
            logger.info(
                "warmed the prompt cache for %s: %d tokens (%d evaluated%s)",
                cursor.path,
                usage.prompt_tokens,
                usage.prompt_tokens_evaluated,
                ", stopped for a completion" if usage.finish_reason == "cancelled" else "",
            )

    def _read_snapshots(self) -> None:
        """On the model thread, between requests: the worker's KV snapshot figures."""
        read = getattr(self.backend, "snapshot_stats", None)
        if not callable(read):
            return
        try:
            self.snapshots = dict(read())
        except ModelError as error:
            logger.debug("no KV snapshot figures: %s", error)

    def describe_backend(self) -> str:
        """The backend in words (the serving one), for ``apprentice.status``."""
        serving = self._serving or backend_settings(self.settings)
        if serving.remote_url:
            breaker = getattr(self.backend, "breaker", None)
            if isinstance(breaker, CircuitBreaker) and breaker.state != "closed":
                paused = f"{breaker.failures} failures in a row; asked again after a pause"
                return f"remote {serving.remote_url} (not answering: {paused})"
            return f"remote {serving.remote_url}"
        threads = serving.n_threads or interactive_threads()
        most = max(threads, serving.n_threads_max or threads)
        count = f"{threads} thread(s)" if most == threads else f"{threads}-{most} threads"
        return f"llama.cpp ({serving.model_path or 'embedded default model'}, {count})"
