"""The workspace index behind the server: built in the background, updated on save.

Completions never wait for it: until the lexical index is ready they run without
repository context. Embedding (the slow part) runs after that, in small batches, and
pauses while the user is getting completions so the two never fight for the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from indexer.index import IndexReport, IndexSettings, RepositoryIndex
from indexer.records import IndexerError
from indexer.retrieval import Retriever
from lsp.core.pipeline import Cursor, index_context
from lsp.core.settings import IndexSettingsSchema
from model.runtime.hardware import physical_cores
from model.runtime.prompt import Snippet

logger = logging.getLogger(__name__)

IndexState = Literal["off", "waiting", "indexing", "embedding", "ready", "error"]
Progress = Callable[[str, int, int], None]
Report = Callable[[str, str], None]

# Embedding waits until completions have been quiet this long.
_QUIET_S = 1.0
# Repository context is looked up again when the cursor moves this many lines away.
_CONTEXT_REACH = 40
# close() waits this long for the index thread to finish the file or batch it is on.
CLOSE_WAIT_S = 10.0


class _Closing(Exception):
    """Raised from the progress callback to stop a build between two files."""


class IndexService:
    """One workspace's index, its retriever, and the thread that keeps them up to date."""

    def __init__(self, root: Path, settings: IndexSettingsSchema, *, report: Report) -> None:
        self.root = root
        self.settings = settings
        self.report = report
        self.state: IndexState = "off" if not settings.enabled else "waiting"
        self.error: str | None = None
        self.index: RepositoryIndex | None = None
        self.retriever: Retriever | None = None
        self.last_report: IndexReport | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apprentice-index")
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._last_activity = 0.0
        self._sticky: dict[str, tuple[int, int, list[Snippet]]] = {}
        self._generation = 0
        # Set while no job runs on the index thread; close() waits on it (bounded).
        self._idle = threading.Event()
        self._idle.set()
        self._jobs = 0
        self._jobs_lock = threading.Lock()
        self._closed = False

    # -- building ----------------------------------------------------------------------

    async def build(self, progress: Progress) -> None:
        """Index the workspace (then embed it, when enabled); reports go to ``progress``."""
        if not self.settings.enabled:
            return
        await self._submit(lambda: self._build(progress))

    async def _submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the index thread; close() knows whether one is running."""
        if self._closed:
            return
        with self._jobs_lock:
            self._jobs += 1
            self._idle.clear()

        def run() -> None:
            try:
                if not self._closed:
                    job()
            finally:
                with self._jobs_lock:
                    self._jobs -= 1
                    if self._jobs == 0:
                        self._idle.set()
                if self._closed and self._idle.is_set():
                    self._close_index()  # close() gave up waiting: the last job closes it

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except RuntimeError:  # the executor shut down before the job started
            with self._jobs_lock:
                self._jobs -= 1
                if self._jobs == 0:
                    self._idle.set()

    def _build(self, progress: Progress) -> None:
        """Index, then embed; whatever goes wrong ends in "error" (or "off" when closing)."""
        try:
            self._build_stages(self._stoppable(progress))
        except _Closing:
            self.state = "off"
            logger.info("indexing %s stopped: the server is shutting down", self.root)
        except (IndexerError, OSError) as error:
            self._failed(error)
        except Exception as error:  # a bug or an unexpected fault must not leave "indexing"
            logger.exception("indexing %s failed", self.root)
            self._failed(error)

    def _stoppable(self, progress: Progress) -> Progress:
        """``progress`` that also stops the build between two files once close() is called."""

        def report(stage: str, done: int, total: int) -> None:
            if self._stop.is_set():
                raise _Closing()
            progress(stage, done, total)

        return report

    def _build_stages(self, progress: Progress) -> None:
        self.state = "indexing"
        started = time.monotonic()
        if self.index is None:
            location = Path(self.settings.location).expanduser() if self.settings.location else None
            # Half the physical cores embed in the background; the rest stay with the model.
            threads = max(1, physical_cores() // 2)
            settings = IndexSettings(location=location, embed_threads=threads)
            self.index = RepositoryIndex(self.root, settings)
        report = self.index.update(progress=progress)
        report.seconds = time.monotonic() - started
        self.last_report = report
        self.retriever = Retriever(self.index)
        self._changed()
        logger.info(
            "indexed %s: %d files, %d chunks, %d symbols in %.2fs%s",
            self.root,
            report.files,
            report.chunks,
            report.symbols,
            report.seconds,
            f" (rebuilt: {report.rebuilt_reason})" if report.rebuilt_reason else "",
        )
        if self.settings.embeddings:
            self.state = "embedding"
            self._embed(progress)
        self.state = "off" if self._stop.is_set() else "ready"

    def _embed(self, progress: Progress) -> None:
        index = self.index
        assert index is not None
        while not self._stop.is_set():
            quiet_for = time.monotonic() - self._last_activity
            if quiet_for < _QUIET_S:
                self._stop.wait(_QUIET_S - quiet_for)
                continue
            self._pause.clear()
            try:
                done, _ = index.embed_pending(progress=progress, stop=self._pause)
            except _Closing:
                return
            except Exception as error:  # embeddings are an extra: lexical retrieval goes on
                logger.warning("embedding the workspace failed; lexical context only: %s", error)
                return
            if not self._pause.is_set() and (done == 0 or index.store.count_missing_vectors() == 0):
                self._changed()
                return

    def _failed(self, error: Exception) -> None:
        self.state = "error"
        self.error = str(error)
        where = self.index.directory if self.index is not None else "the index directory"
        message = (
            f"Apprentice: the repository index is unusable ({error}); completions go on "
            f"without repository context. Delete {where} or run `apprentice index` "
            "in the workspace to rebuild it."
        )
        logger.error("%s", message)
        self.report("index", message)

    def user_active(self) -> None:
        """A completion is running: background embedding yields the CPU for a while."""
        self._last_activity = time.monotonic()
        self._pause.set()

    async def update_file(self, rel_path: str, text: str | None) -> None:
        """Re-index one saved (or deleted) file; ``text`` None: read it from disk, if it is
        still there (a save notification without text must not drop the file)."""
        index = self.index
        if index is None or self.state in ("off", "error"):
            return

        def work() -> None:
            try:
                current = text if text is not None else _read(self.root / rel_path)
                index.update_file(rel_path, current)
            except (IndexerError, OSError) as error:
                logger.warning("re-indexing %s failed: %s", rel_path, error)
                return
            except Exception:  # one file must not take the index thread down
                logger.exception("re-indexing %s failed", rel_path)
                return
            self._changed()

        await self._submit(work)

    async def rescan(self) -> None:
        """Files changed outside the editor (a branch switch, a stash, a delete): walk again.

        Cheap: only files whose size or modification time changed are read, only changed ones
        re-parsed, and deleted files leave the index (and with them their chunks). Queued
        behind a build in progress; before the first build there is nothing to update.
        """
        index = self.index
        if index is None or self.state in ("off", "error"):
            return

        def work() -> None:
            try:
                report = index.update()
            except (IndexerError, OSError) as error:
                logger.warning("re-scanning %s failed: %s", self.root, error)
                return
            except Exception:  # the index thread must go on serving
                logger.exception("re-scanning %s failed", self.root)
                return
            if report.added or report.changed or report.deleted:
                logger.info(
                    "re-scanned %s: %d added, %d changed, %d deleted",
                    self.root,
                    report.added,
                    report.changed,
                    report.deleted,
                )
                self._changed()

        await self._submit(work)

    def _changed(self) -> None:
        self._generation += 1
        self._sticky.clear()

    # -- serving -----------------------------------------------------------------------

    def context(self, cursor: Cursor) -> list[Snippet]:
        """Repository snippets for a cursor, kept while the cursor stays near where they were
        looked up.

        The snippets open the prompt, so changing them makes llama.cpp evaluate the whole
        prompt again (hundreds of tokens: seconds on a laptop CPU, measured 2.3 s for 359
        tokens on one thread here). They are looked up again only when the cursor moves
        more than ``_CONTEXT_REACH`` lines away or the index changes.
        """
        retriever = self.retriever
        if retriever is None:
            return []
        line = cursor.text.count("\n", 0, cursor.offset)
        kept = self._sticky.get(cursor.path)
        if (
            kept is not None
            and kept[0] == self._generation
            and abs(kept[1] - line) <= _CONTEXT_REACH
        ):
            return kept[2]
        index = self.index
        semantic = index is not None and index.has_vectors() and self.state == "ready"
        found = list(index_context(retriever, semantic=semantic)(cursor))
        if len(self._sticky) > 64:
            self._sticky.clear()
        self._sticky[cursor.path] = (self._generation, line, found)
        return found

    def known_symbol(self, dotted: str) -> bool | None:
        """Whether the repository defines ``dotted`` (None: not known from the index)."""
        retriever = self.retriever
        return retriever.lookup(dotted).found if retriever is not None else None

    def status(self) -> dict[str, object]:
        """The ``index`` part of ``apprentice.status``."""
        result: dict[str, object] = {"state": self.state, "root": str(self.root)}
        index = self.index
        if index is not None:
            result.update(index.store.counts())
            result["directory"] = str(index.directory)
            result["vectors"] = len(index.vectors) if index.vectors is not None else 0
        if self.last_report is not None:
            result["seconds"] = round(self.last_report.seconds, 3)
        if self.error:
            result["error"] = self.error
        return result

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop background work and close the index.

        The index thread stops at the next file or batch boundary; its commit in flight
        finishes first (up to ``wait_s``), so the index is never closed under it. If it
        does not stop in time, close() returns and the thread closes the index when done.
        """
        self._closed = True
        self._stop.set()
        self._pause.set()
        # Queued jobs are not cancelled: each sees ``_closed`` and returns at once, so the
        # idle flag stays true to what runs.
        self._executor.shutdown(wait=False)
        if not self._idle.wait(wait_s):
            logger.warning(
                "the index thread did not stop within %.0f s; it closes the index when it does",
                wait_s,
            )
            return
        self._close_index()

    def _close_index(self) -> None:
        with self._jobs_lock:
            index, self.index = self.index, None
        if index is None:
            return
        try:
            index.close()
        except Exception:  # closing must finish shutting down whatever the index says
            logger.exception("closing the index of %s failed", self.root)


def _read(path: Path) -> str | None:
    """A file's text as the indexer reads it, or None when it is gone (then it is dropped)."""
    from indexer.walk import read_source_text

    if not path.is_file():
        return None
    return read_source_text(path)
