"""The index's SQLite store: files, chunks, symbols, imports and vectors, with crash-safe writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from indexer.lock import IndexLock, lock_holder
from indexer.records import (
    Chunk,
    ImportRecord,
    IndexBusyError,
    IndexerError,
    IndexUnavailableError,
    ParsedFile,
    SourceFile,
    Symbol,
)

logger = logging.getLogger(__name__)

# 2: stored text has its secrets redacted; an index from before may hold what the older,
# pattern-based check let through, so it is rebuilt rather than trusted.
SCHEMA_VERSION = 2
DB_NAME = "index.sqlite"
META_NAME = "meta.json"
VECTORS_NAME = "vectors.faiss"
# The index is private to its owner (it holds the repository's code).
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_DB_FILES = (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm")
_BATCH = 500  # ids per IN (...) query, well under SQLite's bound-variable limit
_BUSY_TIMEOUT_MS = 5000

# SQLite primary result codes (exc.sqlite_errorcode & 0xFF).
_BUSY_CODES = {5, 6}  # BUSY, LOCKED
_UNAVAILABLE_CODES = {3, 8, 10, 13, 14, 23}  # PERM, READONLY, IOERR, FULL, CANTOPEN, AUTH
_CORRUPT_CODES = {11, 26}  # CORRUPT, NOTADB

# AUTOINCREMENT: chunk ids are FAISS ids, so a deleted id must never come back for new text.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, language TEXT NOT NULL, module TEXT);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, language TEXT NOT NULL,
    kind TEXT NOT NULL, symbol TEXT NOT NULL, scope TEXT NOT NULL,
    text TEXT NOT NULL, text_sha TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS symbols(
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    name TEXT NOT NULL, qualname TEXT NOT NULL, kind TEXT NOT NULL, line INTEGER NOT NULL,
    language TEXT NOT NULL, signature TEXT NOT NULL, doc TEXT NOT NULL,
    exported INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS imports(
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    module TEXT NOT NULL, name TEXT, alias TEXT, line INTEGER NOT NULL, level INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS exports(
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors(text_sha TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE INDEX IF NOT EXISTS chunks_text_sha ON chunks(text_sha);
CREATE INDEX IF NOT EXISTS symbols_name ON symbols(name);
CREATE INDEX IF NOT EXISTS symbols_qualname ON symbols(qualname);
CREATE INDEX IF NOT EXISTS symbols_path ON symbols(path);
CREATE INDEX IF NOT EXISTS imports_path ON imports(path);
CREATE INDEX IF NOT EXISTS exports_path ON exports(path);
CREATE INDEX IF NOT EXISTS files_module ON files(module);
"""
_CHUNK_COLUMNS = "id, path, start_line, end_line, language, kind, symbol, scope, text"
_SYMBOL_COLUMNS = "name, qualname, kind, path, line, language, signature, doc, exported"


class _CorruptDatabase(Exception):
    """The SQLite file is not a database or fails its quick check."""


def text_sha(text: str) -> str:
    """The key a chunk's vector is stored under: sha256 of its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class IndexStore:
    """One repository's index on disk; one connection, shared by threads under a lock.

    Reads and writes are serialised by ``self._lock``: SQLite writes are short (one
    batch of files or vectors), so a reader waits milliseconds at most, and one
    connection keeps every transaction's view simple.
    """

    def __init__(
        self, directory: Path, conn: sqlite3.Connection, meta: dict[str, Any], reason: str | None
    ) -> None:
        self.directory = directory
        self.rebuilt_reason = reason
        self.embedding_model: str = meta["embedding_model"]
        self.embedding_dim: int = meta["embedding_dim"]
        self._meta = meta
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        self._dirty = False
        self._missing_from = 0  # no chunk below this id lacks a vector

    @classmethod
    def open(
        cls, directory: Path, *, repo_root: Path, embedding_model: str, embedding_dim: int
    ) -> IndexStore:
        """Open or create the index in ``directory``; rebuild it when it cannot be trusted."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
            make_private(directory)
            _probe_writable(directory)
        except OSError as exc:
            raise _unavailable(directory, exc.strerror or str(exc)) from exc
        wanted: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "embedding_model": embedding_model,
            "embedding_dim": int(embedding_dim),
            "repo_root": os.fspath(Path(repo_root).resolve()),
        }
        # Rebuilding deletes files another process may be writing: only the lock holder may.
        lock = IndexLock(directory, repo_root=repo_root)
        try:
            lock.acquire()
            busy: IndexBusyError | None = None
        except IndexBusyError as exc:
            busy = None if lock_holder(directory) == os.getpid() else exc
        try:
            meta, reason = _settle_meta(directory, wanted, busy)
            try:
                conn = _connect(directory / DB_NAME)
            except _CorruptDatabase as exc:
                if busy is not None:
                    raise busy from exc
                _move_aside(directory, _DB_FILES)
                _remove(directory, (VECTORS_NAME,))
                reason = f"index database was corrupt ({exc}); moved it aside and started afresh"
                logger.warning("%s: %s", directory, reason)
                conn = _connect(directory / DB_NAME)
        except OSError as exc:
            raise _unavailable(directory, exc.strerror or str(exc)) from exc
        except sqlite3.Error as exc:
            translated = _translate(directory, exc)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            lock.release()
        return cls(directory, conn, meta, reason)

    @property
    def vectors_path(self) -> Path:
        """Where the FAISS cache derived from this store's vectors lives."""
        return self.directory / VECTORS_NAME

    def file_states(self) -> dict[str, tuple[str, int, int]]:
        """Every indexed file: path -> (sha256, size, mtime_ns)."""
        with self._reading() as conn:
            rows = conn.execute("SELECT path, sha256, size, mtime_ns FROM files").fetchall()
        return {path: (sha, size, mtime) for path, sha, size, mtime in rows}

    def replace_file(self, file: SourceFile, sha256: str, parsed: ParsedFile) -> list[int]:
        """Replace everything stored for one file in one transaction; return its chunk ids."""
        return self.replace_files([(file, sha256, parsed)])[0]

    def replace_files(self, batch: Sequence[tuple[SourceFile, str, ParsedFile]]) -> list[list[int]]:
        """Replace several files in one transaction; return each file's chunk ids, in order.

        Rows are stored under ``file.path`` whatever path the parsed records carry.
        """
        with self._writing() as conn:
            return [_insert_file(conn, file, sha, parsed) for file, sha, parsed in batch]

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        """Record a new size and mtime for a file whose content did not change."""
        with self._writing() as conn:
            sql = "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?"
            conn.execute(sql, (size, mtime_ns, path))

    def delete_files(self, paths: Iterable[str]) -> None:
        """Forget files (their chunks, symbols, imports and exports cascade) in one transaction."""
        with self._writing() as conn:
            conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def all_chunks(self) -> list[tuple[int, Chunk]]:
        """Every chunk with its id, in id order."""
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY id").fetchall()
        return [(row[0], _chunk(row)) for row in rows]

    def get_chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        """The chunks with these ids (missing ids are left out)."""
        out: dict[int, Chunk] = {}
        with self._reading() as conn:
            for part in _batches(ids):
                marks = ",".join("?" * len(part))
                sql = f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})"
                out.update((row[0], _chunk(row)) for row in conn.execute(sql, part))
        return out

    def chunks_of(self, path: str) -> list[tuple[int, Chunk]]:
        """One file's chunks with their ids, in line order."""
        sql = f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = ? ORDER BY start_line, id"
        with self._reading() as conn:
            return [(row[0], _chunk(row)) for row in conn.execute(sql, (path,))]

    def symbols_named(self, name: str) -> list[Symbol]:
        """Definitions whose short name is ``name``."""
        return self._symbols("WHERE name = ? ORDER BY path, line", (name,))

    def symbols_by_qualname(self, qualname: str) -> list[Symbol]:
        """Definitions whose qualified name is exactly ``qualname``."""
        return self._symbols("WHERE qualname = ? ORDER BY path, line", (qualname,))

    def symbols_with_prefix(self, qualname_prefix: str) -> list[Symbol]:
        """Everything defined inside a module or class: qualnames under ``prefix.``, nested too."""
        prefix = qualname_prefix.rstrip(".")
        # A range on the qualname index instead of LIKE, which would need escaping of _ and %.
        where = "WHERE qualname >= ? AND qualname < ? ORDER BY qualname, path, line"
        return self._symbols(where, (prefix + ".", prefix + "/"))

    def all_symbols(self) -> Iterator[Symbol]:
        """Every definition, fetched page by page so the lock is never held across a yield."""
        last = 0
        while True:
            with self._reading() as conn:
                sql = f"SELECT rowid, {_SYMBOL_COLUMNS} FROM symbols WHERE rowid > ? "
                rows = conn.execute(sql + "ORDER BY rowid LIMIT 1000", (last,)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for row in rows:
                yield _symbol(row[1:])

    def module_file(self, module: str) -> str | None:
        """The file that defines a module (the first by path if several claim it)."""
        with self._reading() as conn:
            sql = "SELECT path FROM files WHERE module = ? ORDER BY path LIMIT 1"
            row = conn.execute(sql, (module,)).fetchone()
        return row[0] if row else None

    def module_of(self, path: str) -> str | None:
        """The module name a file was indexed under (None for non-modules and unknown files)."""
        with self._reading() as conn:
            row = conn.execute("SELECT module FROM files WHERE path = ?", (path,)).fetchone()
        return row[0] if row else None

    def imports_of(self, path: str) -> list[ImportRecord]:
        """One file's imports in source order."""
        sql = "SELECT path, module, name, alias, line, level FROM imports WHERE path = ?"
        with self._reading() as conn:
            rows = conn.execute(sql + " ORDER BY line, rowid", (path,)).fetchall()
        return [ImportRecord(*row) for row in rows]

    def exports_of(self, module: str) -> list[str]:
        """The names a module exports, in source order, without repeats."""
        sql = (
            "SELECT e.name FROM exports e JOIN files f ON f.path = e.path"
            " WHERE f.module = ? ORDER BY f.path, e.rowid"
        )
        with self._reading() as conn:
            names = [row[0] for row in conn.execute(sql, (module,))]
        return list(dict.fromkeys(names))

    def counts(self) -> dict[str, int]:
        """Sizes: files, chunks, symbols, and embedded (chunks that have a vector)."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM files), (SELECT COUNT(*) FROM chunks),"
                " (SELECT COUNT(*) FROM symbols), (SELECT COUNT(*) FROM chunks c"
                "  WHERE EXISTS (SELECT 1 FROM vectors v WHERE v.text_sha = c.text_sha))"
            ).fetchone()
        return dict(zip(("files", "chunks", "symbols", "embedded"), row, strict=True))

    def missing_vectors(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` distinct (text_sha, text) of chunks without a vector, oldest first."""
        sql = (
            "SELECT c.id, c.text_sha, c.text FROM chunks c WHERE c.id >= ?"
            " AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.text_sha = c.text_sha) ORDER BY c.id"
        )
        found: dict[str, str] = {}
        if limit <= 0:
            return []
        with self._reading() as conn:
            cursor = conn.execute(sql, (self._missing_from,))
            for chunk_id, sha, text in cursor:
                if not found:
                    # Vectors are never taken from live chunks and new chunks get larger ids,
                    # so the next scan may start here instead of at the first chunk.
                    self._missing_from = chunk_id
                found.setdefault(sha, text)
                if len(found) >= limit:
                    break
            cursor.close()
        return list(found.items())

    def count_missing_vectors(self) -> int:
        """How many distinct chunk texts have no vector yet."""
        sql = (
            "SELECT COUNT(DISTINCT c.text_sha) FROM chunks c"
            " WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.text_sha = c.text_sha)"
        )
        with self._reading() as conn:
            return int(conn.execute(sql).fetchone()[0])

    def store_vectors(self, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store vectors keyed by chunk text sha256, in one transaction (float32, little-endian)."""
        data = [(sha, self._vector_blob(vector)) for sha, vector in rows]
        with self._writing() as conn:
            conn.executemany("INSERT OR REPLACE INTO vectors(text_sha, data) VALUES (?, ?)", data)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids int64, float32 matrix): one row per chunk that has a vector, in id order."""
        sql = (
            "SELECT c.id, v.data FROM chunks c JOIN vectors v ON v.text_sha = c.text_sha"
            " ORDER BY c.id"
        )
        with self._reading() as conn:
            return self._matrix(conn.execute(sql).fetchall())

    def vectors_for(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Like ``all_vectors`` for these chunk ids only (ids without a vector are left out)."""
        rows: list[tuple[int, bytes]] = []
        with self._reading() as conn:
            for part in _batches(ids):
                marks = ",".join("?" * len(part))
                sql = (
                    "SELECT c.id, v.data FROM chunks c JOIN vectors v ON v.text_sha = c.text_sha"
                    f" WHERE c.id IN ({marks})"
                )
                rows.extend(conn.execute(sql, part))
        rows.sort()
        return self._matrix(rows)

    def chunk_ids_with_text(self, shas: Iterable[str]) -> list[int]:
        """Ids of the chunks whose text has one of these sha256s."""
        ids: list[int] = []
        with self._reading() as conn:
            for part in _text_batches(shas):
                marks = ",".join("?" * len(part))
                sql = f"SELECT id FROM chunks WHERE text_sha IN ({marks})"
                ids.extend(row[0] for row in conn.execute(sql, part))
        return sorted(ids)

    def prune_vectors(self) -> int:
        """Delete vectors that no chunk references; return how many went."""
        with self._writing() as conn:
            cur = conn.execute(
                "DELETE FROM vectors WHERE NOT EXISTS"
                " (SELECT 1 FROM chunks c WHERE c.text_sha = vectors.text_sha)"
            )
            return cur.rowcount

    def integrity_check(self) -> list[str]:
        """SQLite's full integrity check plus foreign keys; an empty list means sound."""
        with self._reading() as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            problems = [p for p in problems if p != "ok"]
            problems += [f"foreign key: {row}" for row in conn.execute("PRAGMA foreign_key_check")]
        return problems

    def close(self) -> None:
        """Record the update time if anything was written, and close the connection."""
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()
            if self._dirty:
                self._record_update()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _record_update(self) -> None:
        path = self.directory / META_NAME
        try:
            current = _read_meta(path)
            # Another process may have rebuilt the index since: never write our identity over it.
            if current.get("created") != self._meta["created"] or _mismatch(current, self._meta):
                return
            _write_json_atomic(path, {**current, "updated": _now()})
        except (OSError, ValueError) as exc:
            logger.warning("could not update %s: %s", path, exc)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise IndexerError(f"the index at {self.directory} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                translated = _translate(self.directory, exc)
                if translated is exc:
                    raise
                raise translated from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._reading() as conn:
            # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
            # instead of failing when a read transaction tries to upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            self._dirty = True

    def _symbols(self, where: str, params: tuple[Any, ...]) -> list[Symbol]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_SYMBOL_COLUMNS} FROM symbols {where}", params)
            return [_symbol(row) for row in rows]

    def _vector_blob(self, vector: np.ndarray) -> bytes:
        flat = np.asarray(vector, dtype="<f4").reshape(-1)
        if flat.size != self.embedding_dim:
            raise ValueError(f"vector has {flat.size} dimensions, the index {self.embedding_dim}")
        if not np.isfinite(flat).all():
            raise ValueError("vector has NaN or infinite components")
        return flat.tobytes()

    def _matrix(self, rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        width = self.embedding_dim * 4
        good = [(cid, blob) for cid, blob in rows if len(blob) == width]
        if len(good) != len(rows):
            logger.warning(
                "%s: skipped %d malformed vectors", self.directory, len(rows) - len(good)
            )
        ids = np.fromiter((cid for cid, _ in good), dtype=np.int64, count=len(good))
        matrix = np.empty((len(good), self.embedding_dim), dtype=np.float32)
        for i, (_, blob) in enumerate(good):
            matrix[i] = np.frombuffer(blob, dtype="<f4")
        return ids, matrix


def _insert_file(
    conn: sqlite3.Connection, file: SourceFile, sha: str, parsed: ParsedFile
) -> list[int]:
    path = file.path
    conn.execute("DELETE FROM files WHERE path = ?", (path,))
    conn.execute(
        "INSERT INTO files(path, sha256, size, mtime_ns, language, module) VALUES (?,?,?,?,?,?)",
        (path, sha, file.size, file.mtime_ns, file.language, parsed.module),
    )
    ids: list[int] = []
    for c in parsed.chunks:
        cur = conn.execute(
            "INSERT INTO chunks(path, start_line, end_line, language, kind, symbol, scope, text,"
            " text_sha) VALUES (?,?,?,?,?,?,?,?,?)",
            (path, c.start_line, c.end_line, c.language, c.kind, c.symbol, c.scope, c.text,
             text_sha(c.text)),
        )  # fmt: skip
        ids.append(int(cur.lastrowid or 0))
    conn.executemany(
        f"INSERT INTO symbols({_SYMBOL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
        [(s.name, s.qualname, s.kind, path, s.line, s.language, s.signature, s.doc,
          int(s.exported)) for s in parsed.symbols],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO imports(path, module, name, alias, line, level) VALUES (?,?,?,?,?,?)",
        [(path, i.module, i.name, i.alias, i.line, i.level) for i in parsed.imports],
    )
    conn.executemany(
        "INSERT INTO exports(path, name) VALUES (?, ?)", [(path, n) for n in parsed.exports]
    )
    return ids


def _chunk(row: Sequence[Any]) -> Chunk:
    _, path, start, end, language, kind, symbol, scope, text = row
    return Chunk(path, start, end, language, kind, text, symbol, scope)


def _symbol(row: Sequence[Any]) -> Symbol:
    name, qualname, kind, path, line, language, signature, doc, exported = row
    return Symbol(name, qualname, kind, path, line, language, signature, doc, bool(exported))


def _batches(ids: Iterable[int]) -> Iterator[list[int]]:
    items = [int(i) for i in ids]
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _text_batches(values: Iterable[str]) -> Iterator[list[str]]:
    items = list(values)
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _connect(path: Path) -> sqlite3.Connection:
    """Open the database read-write (never silently read-only), set it up and check it."""
    # mode=rwc makes an unwritable file fail here instead of opening read-only and failing later.
    uri = "file:" + urllib.parse.quote(os.fspath(path)) + "?mode=rwc"
    # Created private: SQLite gives its -wal and -shm files the database file's mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL journaling (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        verdict = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if verdict != ["ok"]:
            raise _CorruptDatabase("; ".join(verdict[:3]))
        conn.executescript(_SCHEMA)
        # SQLite opens a write-protected file read-only without a word; a real write finds out.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES:
            raise _CorruptDatabase(str(exc)) from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def _settle_meta(
    directory: Path, wanted: dict[str, Any], busy: IndexBusyError | None
) -> tuple[dict[str, Any], str | None]:
    """Read meta.json and decide whether the stored index may be used; start afresh if not.

    ``busy`` is the error to raise instead of touching files another process holds.
    """
    meta_path = directory / META_NAME
    reason: str | None = None
    try:
        meta: dict[str, Any] | None = _read_meta(meta_path)
    except FileNotFoundError:
        meta = None
        if any((directory / name).exists() for name in _DB_FILES):
            if busy is not None:
                raise busy from None
            reason = "meta.json was missing beside an existing database; started afresh"
            _remove(directory, (*_DB_FILES, VECTORS_NAME))
    except (OSError, ValueError) as exc:
        if busy is not None:
            raise busy from exc
        meta = None
        reason = f"meta.json was unreadable ({exc}); moved it aside and started afresh"
        logger.warning("%s: %s", directory, reason)
        _move_aside(directory, (META_NAME, *_DB_FILES))
        _remove(directory, (VECTORS_NAME,))
    if meta is not None:
        reason = _mismatch(meta, wanted)
        if reason is None:
            return meta, None
        if busy is not None:
            raise busy
        logger.info("%s: rebuilding the index: %s", directory, reason)
        _remove(directory, (*_DB_FILES, VECTORS_NAME))
    # The old database files are gone before the new meta lands, so a crash between the two
    # leaves either the old meta with no database (a rebuild again) or the new one with none.
    now = _now()
    fresh = {**wanted, "created": now, "updated": now}
    _write_json_atomic(meta_path, fresh)
    return fresh, reason


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8") from exc
    if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    kinds = {"schema_version": int, "embedding_model": str, "embedding_dim": int, "repo_root": str}
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ValueError(f"{key} is missing or not a {kind.__name__}")
    return meta


def _mismatch(meta: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    labels = {
        "schema_version": "schema version",
        "embedding_model": "embedding model",
        "embedding_dim": "embedding dimension",
        "repo_root": "repository root",
    }
    for key, label in labels.items():
        if meta[key] != wanted[key]:
            return f"{label} changed from {meta[key]} to {wanted[key]}"
    return None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so a reader sees the old file or the new one, never a torn one."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def make_private(directory: Path) -> None:
    """Only the owner may read the index: the directory 0700, the files in it 0600.

    The index holds the repository's code; a shared machine's other users must not read it.
    Indexes written before this rule are tightened when opened: group and other lose their
    bits, the owner gains none (a read-only index stays read-only).
    """
    _tighten(directory, PRIVATE_DIR)
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    _tighten(Path(entry.path), PRIVATE_FILE)


def _tighten(path: Path, allowed: int) -> None:
    current = stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
    if current & ~allowed:
        os.chmod(path, current & allowed)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every filesystem allows it).

    model.checkpoints.atomic_io has the same for model's files: the layer table lets
    neither the indexer nor model.runtime/checkpoints import the other, so each keeps one.
    """
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _probe_writable(directory: Path) -> None:
    """Fail now, with the OS's reason, if files cannot be created in ``directory``."""
    probe = directory / f".write-probe-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    probe.unlink()


def _move_aside(directory: Path, names: Iterable[str]) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for name in names:
        src = directory / name
        if not src.exists():
            continue
        dst = directory / f"{name}.corrupt-{stamp}"
        n = 1
        while dst.exists():
            n += 1
            dst = directory / f"{name}.corrupt-{stamp}-{n}"
        os.replace(src, dst)
        logger.warning("moved %s aside to %s", src, dst.name)


def _remove(directory: Path, names: Iterable[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _unavailable(directory: Path, reason: str) -> IndexUnavailableError:
    return IndexUnavailableError(
        f"cannot write the index at {directory}: {reason}; set a writable index location"
    )


def _translate(directory: Path, exc: sqlite3.Error) -> Exception:
    """Turn an SQLite failure into the indexer's error for it; leave programming errors alone."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in _BUSY_CODES:
        return IndexBusyError(f"the index at {directory} is locked by another process; try again")
    if code in _UNAVAILABLE_CODES:
        hint = " (is the disk full?)" if code == 10 else ""
        return _unavailable(directory, f"{exc}{hint}")
    if code in _CORRUPT_CODES:
        return IndexerError(
            f"the index database at {directory} is corrupt ({exc}); it is rebuilt when reopened"
        )
    return exc
