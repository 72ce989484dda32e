"""RepositoryIndex: walk, parse, store and search one repository, incrementally and crash-safely.

Two stages, fast first. ``update()`` walks the repository, re-parses only added
and changed files (content hash per file) and commits per batch, so the symbol
table and the lexical index serve queries within seconds and a killed run leaves
the last consistent state. ``embed_pending()`` then embeds the chunks that have
no vector yet (vectors are keyed by chunk text, so unchanged chunks are never
embedded twice); queries fuse lexical and vector ranks as soon as vectors exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.chunking import parse_file
from indexer.embed import Embedder, create_embedder
from indexer.lexical import LexicalIndex, reciprocal_rank_fusion
from indexer.lock import IndexLock
from indexer.quarantine import Quarantine
from indexer.records import Chunk, IndexerError, ParsedFile, SourceFile
from indexer.secrets import indexable_text
from indexer.store import IndexStore
from indexer.symbols import python_module_names
from indexer.vectors import VectorIndex
from indexer.walk import read_source_text, walk_repository

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; stages: ``files``, ``embeddings``."""

_BATCH_FILES = 64
_EMBED_BATCH = 32


@dataclass(frozen=True)
class IndexSettings:
    """Where the index lives and how it is built; every field defaulted."""

    location: Path | None = None
    max_file_bytes: int = 1_000_000
    embedder: str = "default"
    # None: the embedder's own default (one thread here, so completions keep a core);
    # a foreground `apprentice index` passes every physical core.
    embed_threads: int | None = None
    approximate_above: int = 100_000
    lock_wait_s: float = 30.0


@dataclass
class IndexReport:
    """What one ``update``/``embed_pending`` run did."""

    files: int = 0
    chunks: int = 0
    symbols: int = 0
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    rebuilt_reason: str | None = None

    def as_json(self) -> dict[str, object]:
        """The ``apprentice index --json`` object."""
        return {
            "files": self.files,
            "chunks": self.chunks,
            "symbols": self.symbols,
            "seconds": round(self.seconds, 3),
            "embedded": self.embedded,
            "reused": self.reused,
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class SearchHit:
    """One ranked chunk."""

    chunk_id: int
    chunk: Chunk
    score: float

    def as_json(self) -> dict[str, object]:
        """The ``apprentice search --json`` hit."""
        return {
            "path": self.chunk.path,
            "start_line": self.chunk.start_line,
            "end_line": self.chunk.end_line,
            "score": round(self.score, 5),
            "symbol": self.chunk.symbol,
        }


def default_index_root() -> Path:
    """``$XDG_CACHE_HOME/apprentice/index`` (never inside the user's repository)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "apprentice" / "index"


def index_dir_for(repo_root: Path, base: Path | None = None) -> Path:
    """The index directory of a repository: keyed by a hash of its resolved root path."""
    key = hashlib.sha256(str(repo_root.resolve()).encode()).hexdigest()[:16]
    return (base or default_index_root()) / f"{repo_root.resolve().name}-{key}"


EXISTING = "existing"
"""``IndexSettings.embedder`` value: whatever embedder the index was built with."""


def _built_with(directory: Path) -> tuple[str, int] | None:
    """(embedding model, dimension) named by an index's meta.json, if it has one."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        return str(meta["embedding_model"]), int(meta["embedding_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class RepositoryIndex:
    """The index of one repository: store, lexical index and (once embedded) vectors."""

    def __init__(
        self,
        root: Path,
        settings: IndexSettings | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise IndexerError(f"{root}: not a directory")
        self.settings = settings or IndexSettings()
        self.directory = index_dir_for(self.root, self.settings.location)
        self.quarantine = Quarantine()
        self._embedder = embedder
        self._embedder_kind = self.settings.embedder
        self._embedder_lock = threading.Lock()
        self._lock = threading.RLock()
        embedder_name, dim = self._embedder_identity()
        self.store = IndexStore.open(
            self.directory,
            repo_root=self.root,
            embedding_model=embedder_name,
            embedding_dim=dim,
        )
        if self.store.rebuilt_reason:
            logger.warning("index of %s rebuilt: %s", self.root, self.store.rebuilt_reason)
        self.lexical = LexicalIndex()
        self.lexical.add_many(
            (chunk_id, chunk.text, chunk.symbol, chunk.path)
            for chunk_id, chunk in self.store.all_chunks()
        )
        self.vectors: VectorIndex | None = None
        self._vectors_dirty = False
        self._load_vectors()

    # -- embedder ----------------------------------------------------------------

    def _embedder_identity(self) -> tuple[str, int]:
        """Name and dimension of the embedder without loading its weights."""
        if self._embedder is not None:
            return self._embedder.name, self._embedder.dim
        from indexer.embed import KINDS, embedder_identity

        if self.settings.embedder == EXISTING:
            # A reader (completion, check, search) takes the index as it was built:
            # opening it with another embedder would rebuild, that is wipe, it.
            built = _built_with(self.directory)
            for kind in KINDS:
                if built is not None and embedder_identity(kind) == built:
                    self._embedder_kind = kind
                    return built
            self._embedder_kind = "default"
            return built or embedder_identity("default")
        self._embedder_kind = self.settings.embedder
        return embedder_identity(self.settings.embedder)

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use (this imports torch or ONNX Runtime)."""
        with self._embedder_lock:
            if self._embedder is None:
                embedder = create_embedder(self._embedder_kind, threads=self.settings.embed_threads)
                if embedder.name != self.store.embedding_model:
                    # A fallback (ONNX unavailable, say) gives other vectors: never mix them.
                    raise IndexerError(
                        f"the embedder is {embedder.name} but this index holds "
                        f"{self.store.embedding_model} vectors; re-run `apprentice index` "
                        "to rebuild it for this embedder"
                    )
                self._embedder = embedder
            return self._embedder

    def _lock_index(self) -> IndexLock:
        """The cross-process write lock; a second indexer waits, saying so, then gives up."""
        return IndexLock(
            self.directory,
            wait_s=self.settings.lock_wait_s,
            repo_root=self.root,
            on_wait=logger.warning,
        )

    # -- stage 1: files, chunks, symbols, lexical ---------------------------------

    def update(self, progress: Progress | None = None) -> IndexReport:
        """Bring chunks, symbols and the lexical index up to date with the files on disk."""
        started = time.monotonic()
        report = IndexReport(rebuilt_reason=self.store.rebuilt_reason)
        with self._lock_index():
            known = self.store.file_states()
            # Files whose size and mtime match the index are trusted without a read.
            walk = walk_repository(
                self.root,
                max_file_bytes=self.settings.max_file_bytes,
                known={path: (size, mtime) for path, (_, size, mtime) in known.items()},
            )
            report.skipped = dict(walk.skipped)
            present = {file.path: file for file in walk.files}
            deleted = sorted(set(known) - set(present))
            if deleted:
                self._drop(deleted)
                report.deleted = len(deleted)
            modules = python_module_names(p for p in present if p.endswith((".py", ".pyi")))
            todo = [
                file
                for file in walk.files
                if known.get(file.path, ("", -1, -1))[1:] != (file.size, file.mtime_ns)
            ]
            report.unchanged = len(walk.files) - len(todo)
            batch: list[tuple[SourceFile, str, ParsedFile]] = []
            for done, file in enumerate(todo, start=1):
                parsed = self._parse(file, known, modules)
                if parsed is None:
                    report.unchanged += 1
                else:
                    report.added += file.path not in known
                    report.changed += file.path in known
                    batch.append(parsed)
                if len(batch) >= _BATCH_FILES:
                    report.reused += self._commit(batch)
                    batch = []
                if progress:
                    progress("files", done, len(todo))
            if batch:
                report.reused += self._commit(batch)
        counts = self.store.counts()
        report.files, report.chunks, report.symbols = (
            counts["files"],
            counts["chunks"],
            counts["symbols"],
        )
        report.seconds = time.monotonic() - started
        return report

    def _parse(
        self,
        file: SourceFile,
        known: dict[str, tuple[str, int, int]],
        modules: dict[str, str],
    ) -> tuple[SourceFile, str, ParsedFile] | None:
        """Read and parse one changed file; None when its content is in fact unchanged."""
        text = read_source_text(file.abs_path, self.settings.max_file_bytes)
        if text is None:
            return None
        digest = _sha256(text)
        if known.get(file.path, ("",))[0] == digest:
            # Same content, new mtime (a checkout, a touch): refresh the stat only.
            self.store.touch_file(file.path, file.size, file.mtime_ns)
            return None
        parsed = self._parse_safely(file, text, digest, modules.get(file.path))
        return None if parsed is None else (file, digest, parsed)

    def _parse_safely(
        self, file: SourceFile, text: str, digest: str, module: str | None
    ) -> ParsedFile | None:
        """``parse_file``, except that a file the parser fails on is skipped (not the whole
        update), and after ``quarantine.limit`` failures at this content not tried again."""
        if self.quarantine.blocked(file.path, digest):
            return None
        try:
            return parse_file(file.path, text, file.language, module=module)
        except Exception as error:  # a parser fault on one file must not stop the index
            logger.warning(
                "parsing %s failed; skipped: %s: %s", file.path, type(error).__name__, error
            )
            self.quarantine.crashed(file.path, "the parser", digest)
            return None

    def _commit(self, batch: Sequence[tuple[SourceFile, str, ParsedFile]]) -> int:
        """Store a batch of parsed files and mirror it in memory; returns chunks reusing vectors."""
        with self._lock:
            paths = [file.path for file, _, _ in batch]
            old = [chunk_id for chunk_id, _ in self._chunks_of(paths)]
            for chunk_id in old:
                self.lexical.remove(chunk_id)
            if self.vectors is not None and old:
                self.vectors.remove(np.array(old, dtype=np.int64))
            self._invalidate_vector_cache()
            self.store.replace_files(batch)
            new = list(self._chunks_of(paths))
            for chunk_id, chunk in new:
                self.lexical.add(chunk_id, chunk.text, symbol=chunk.symbol, path=chunk.path)
            # Chunks whose text already had a vector (unchanged functions of an edited
            # file) are searchable by meaning at once, without embedding anything.
            return self._add_vectors([chunk_id for chunk_id, _ in new])

    def _add_vectors(self, chunk_ids: Sequence[int]) -> int:
        """Put the stored vectors of these chunks into the in-memory vector index."""
        ids, matrix = self.store.vectors_for(chunk_ids)
        if len(ids) == 0:
            return 0
        with self._lock:
            if self.vectors is None:
                self.vectors = VectorIndex.build(
                    ids, matrix, approximate_above=self.settings.approximate_above
                )
            else:
                self.vectors.add(ids, matrix)
        return len(ids)

    def _chunks_of(self, paths: Sequence[str]) -> Iterator[tuple[int, Chunk]]:
        for path in paths:
            yield from self.store.chunks_of(path)

    def _drop(self, paths: Sequence[str]) -> None:
        with self._lock:
            ids = [chunk_id for chunk_id, _ in self._chunks_of(paths)]
            for chunk_id in ids:
                self.lexical.remove(chunk_id)
            if self.vectors is not None and ids:
                self.vectors.remove(np.array(ids, dtype=np.int64))
            self._invalidate_vector_cache()
            self.store.delete_files(paths)

    def update_file(self, rel_path: str, text: str | None) -> bool:
        """Re-index one file from in-memory text (the server calls this on save).

        ``text`` None means the file was deleted. Returns False when the file is not
        indexable (named as credentials, binary, too large, ignored): it is then dropped.
        Secrets in ``text`` are redacted before anything of it is stored.
        """
        path = self.root / rel_path
        if text is None or not path.exists():
            self._drop([rel_path])
            return False
        from indexer.languages import language_for
        from indexer.walk import listed_by_walk, skip_reason

        reason = skip_reason(
            rel_path,
            text.encode("utf-8", "surrogatepass"),
            max_file_bytes=self.settings.max_file_bytes,
        )
        if reason is None and not listed_by_walk(self.root, rel_path):
            reason = "ignored (.gitignore)"
        # Saved text is stored as the walk stores read text: its secrets redacted.
        redacted = None if reason is not None else indexable_text(text, rel_path)
        if redacted is None:
            logger.info("not indexing %s: %s", rel_path, reason or "the secret scan failed")
            self._drop([rel_path])
            return False
        text = redacted
        stat = path.stat()
        file = SourceFile(
            path=rel_path,
            abs_path=path,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            language=language_for(rel_path),
        )
        module = None
        if rel_path.endswith((".py", ".pyi")):
            module = python_module_names([*self.store.file_states(), rel_path]).get(rel_path)
        digest = _sha256(text)
        parsed = self._parse_safely(file, text, digest, module)
        if parsed is None:
            return False
        with self._lock_index():
            self._commit([(file, digest, parsed)])
        return True

    # -- stage 2: embeddings -------------------------------------------------------

    def embed_pending(
        self, progress: Progress | None = None, stop: threading.Event | None = None
    ) -> tuple[int, int]:
        """Embed every chunk text that has no vector; returns (texts embedded, chunks served).

        Commits per batch, so a kill loses at most one batch of work, and each batch
        joins the in-memory vector index at once: queries fuse semantic ranks while
        the rest is still being embedded. Stops early when ``stop`` is set.
        """
        with self._lock_index():
            total = self.store.count_missing_vectors()
            done = served = 0
            while not (stop is not None and stop.is_set()):
                pending = self.store.missing_vectors(_EMBED_BATCH)
                if not pending:
                    break
                matrix = self.embedder.embed([text for _, text in pending])
                shas = [sha for sha, _ in pending]
                self.store.store_vectors(list(zip(shas, matrix, strict=True)))
                served += self._add_vectors(self.store.chunk_ids_with_text(shas))
                done += len(pending)
                if progress:
                    progress("embeddings", done, total)
            if done:
                self._save_vectors()
        return done, served

    def _load_vectors(self) -> None:
        expected = self.store.counts()["embedded"]
        if expected == 0:
            return
        self.vectors = VectorIndex.load(self.store.vectors_path, expected_count=expected)
        if self.vectors is None:
            # Missing, stale or damaged cache: SQLite holds every vector, rebuild from it.
            self._add_vectors_from_store()
            self._save_vectors()

    def _add_vectors_from_store(self) -> None:
        ids, matrix = self.store.all_vectors()
        if len(ids):
            with self._lock:
                self.vectors = VectorIndex.build(
                    ids, matrix, approximate_above=self.settings.approximate_above
                )

    def _invalidate_vector_cache(self) -> None:
        """Remove the FAISS cache file before the chunk ids it maps change.

        Its ids must match SQLite's exactly; a count check alone would accept a cache
        whose ids were replaced one for one. Saved again by embed_pending and close.
        """
        if not self._vectors_dirty:
            self._vectors_dirty = True
            self.store.vectors_path.unlink(missing_ok=True)

    def _save_vectors(self) -> None:
        """Write the FAISS cache file (atomically); a failure only costs a rebuild later."""
        with self._lock:
            vectors = self.vectors
            if vectors is None:
                return
            try:
                vectors.save(self.store.vectors_path)
                self._vectors_dirty = False
            except (IndexerError, OSError) as error:  # disk full, read-only: SQLite has it all
                logger.warning("could not save the vector index cache: %s", error)

    # -- queries -----------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        exclude_path: str | None = None,
        semantic: bool = True,
    ) -> list[SearchHit]:
        """Hybrid search: lexical ranks fused (RRF) with vector ranks when vectors exist."""
        depth = max(k * 4, 20)
        with self._lock:
            lexical = [
                cid for cid, _ in self.lexical.search(query, depth, exclude_path=exclude_path)
            ]
            vectors = self.vectors
        rankings = [lexical]
        if semantic and vectors is not None and len(vectors) > 0:
            query_vector = self.embedder.embed_query(query)
            dense = [cid for cid, _ in vectors.search(query_vector, depth)]
            if exclude_path is not None:
                chunks = self.store.get_chunks(dense)
                dense = [cid for cid in dense if cid in chunks and chunks[cid].path != exclude_path]
            rankings.append(dense)
        fused = reciprocal_rank_fusion(rankings)[:k]
        chunks = self.store.get_chunks([cid for cid, _ in fused])
        return [SearchHit(cid, chunks[cid], score) for cid, score in fused if cid in chunks]

    def has_vectors(self) -> bool:
        """True once at least one chunk has been embedded."""
        return self.vectors is not None and len(self.vectors) > 0

    def close(self) -> None:
        """Save the vector cache if it changed, then close the store (whatever the save did)."""
        try:
            if self._vectors_dirty:
                self._save_vectors()
        finally:
            self.store.close()

    def __enter__(self) -> RepositoryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
