"""IndexStore and IndexLock: schema round trip, rebuilds, corruption, permissions, kills, locks."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.lock import IndexLock
from indexer.records import (
    Chunk,
    ImportRecord,
    IndexBusyError,
    IndexUnavailableError,
    ParsedFile,
    SourceFile,
    Symbol,
)
from indexer.store import SCHEMA_VERSION, IndexStore, text_sha

ROOT = Path(__file__).resolve().parents[1]
DIM = 4


def _open(directory: Path, model: str = "fake-embedder", dim: int = DIM) -> IndexStore:
    return IndexStore.open(directory, repo_root=ROOT, embedding_model=model, embedding_dim=dim)


def _source(path: str, size: int = 100) -> SourceFile:
    return SourceFile(path, ROOT / path, size, 1_700_000_000_000_000_000, "python")


def _cart(add_body: str = "self.items.append(item)") -> ParsedFile:
    """What the parser makes of a small ``shop/cart.py``."""
    path = "shop/cart.py"
    return ParsedFile(
        chunks=[
            Chunk(path, 1, 3, "python", "module", "import os\nfrom .money import Price as P\n"),
            Chunk(path, 5, 9, "python", "class", "class Cart:\n    pass\n", "shop.cart.Cart"),
            Chunk(
                path,
                10,
                12,
                "python",
                "method",
                f"def add(self, item):\n    {add_body}\n",
                "shop.cart.Cart.add",
                "shop.cart.Cart",
            ),
        ],
        symbols=[
            Symbol("Cart", "shop.cart.Cart", "class", path, 5, "python", "class Cart", "A cart."),
            Symbol(
                "add",
                "shop.cart.Cart.add",
                "method",
                path,
                10,
                "python",
                "def add(self, item: Item) -> None",
                "Add one item.",
            ),
            Symbol("_total", "shop.cart._total", "function", path, 20, "python", exported=False),
        ],
        imports=[
            ImportRecord(path, "os", None, None, 1),
            ImportRecord(path, "money", "Price", "P", 2, level=1),
        ],
        module="shop.cart",
        exports=["Cart", "add_all"],
    )


def _other(path: str, texts: list[str], module: str | None = None) -> ParsedFile:
    chunks = [Chunk(path, i + 1, i + 1, "python", "window", t) for i, t in enumerate(texts)]
    return ParsedFile(chunks=chunks, module=module)


def _vec(sha: str) -> np.ndarray:
    """The fake embedding of a chunk text with this sha256 (the SIGKILL writer's too)."""
    return np.frombuffer(bytes.fromhex(sha)[:DIM], dtype=np.uint8) / np.float32(255)


def test_schema_round_trip(tmp_path: Path) -> None:
    with _open(tmp_path / "idx") as store:
        assert store.rebuilt_reason is None
        ids = store.replace_file(_source("shop/cart.py", 321), "aa" * 32, _cart())
        store.replace_file(
            _source("shop/__init__.py"), "bb" * 32, _other("shop/__init__.py", ["x = 1"], "shop")
        )
        assert len(ids) == 3 and ids == sorted(ids)
        assert store.file_states()["shop/cart.py"] == ("aa" * 32, 321, 1_700_000_000_000_000_000)
        chunks = store.get_chunks([*ids, 999])
        assert set(chunks) == set(ids)
        assert chunks[ids[2]] == _cart().chunks[2]
        assert store.chunks_of("shop/cart.py") == list(zip(ids, _cart().chunks, strict=True))
        assert [c for _, c in store.all_chunks()][:3] == _cart().chunks
        assert store.symbols_named("add") == [_cart().symbols[1]]
        assert store.symbols_by_qualname("shop.cart.Cart") == [_cart().symbols[0]]
        assert [s.qualname for s in store.symbols_with_prefix("shop.cart")] == [
            "shop.cart.Cart",
            "shop.cart.Cart.add",
            "shop.cart._total",
        ]
        assert [s.name for s in store.symbols_with_prefix("shop.cart.Cart.")] == ["add"]
        assert store.symbols_with_prefix("shop.car") == []
        assert not store.symbols_named("_total")[0].exported
        assert store.module_file("shop.cart") == "shop/cart.py"
        assert store.module_file("shop.nothing") is None
        assert store.module_of("shop/cart.py") == "shop.cart"
        assert store.imports_of("shop/cart.py") == _cart().imports
        assert store.exports_of("shop.cart") == ["Cart", "add_all"]
        assert sorted(s.qualname for s in store.all_symbols()) == sorted(
            s.qualname for s in _cart().symbols
        )
        assert store.counts() == {"files": 2, "chunks": 4, "symbols": 3, "embedded": 0}
        store.touch_file("shop/cart.py", 400, 5)
        assert store.file_states()["shop/cart.py"] == ("aa" * 32, 400, 5)
    # Everything survives a close and reopen.
    with _open(tmp_path / "idx") as store:
        assert store.rebuilt_reason is None
        assert store.counts()["chunks"] == 4
        assert store.integrity_check() == []
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["embedding_model"] == "fake-embedder" and meta["embedding_dim"] == DIM
    assert meta["schema_version"] == SCHEMA_VERSION and meta["repo_root"] == str(ROOT)
    assert meta["created"] <= meta["updated"]


def test_replace_and_delete_cascade(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        first = store.replace_file(_source("shop/cart.py"), "a", _cart())
        second = store.replace_file(_source("shop/cart.py"), "b", _other("shop/cart.py", ["y"]))
        assert set(first).isdisjoint(second)  # ids are never reused
        assert store.get_chunks(first) == {}
        assert store.symbols_named("Cart") == [] and store.imports_of("shop/cart.py") == []
        assert store.exports_of("shop.cart") == [] and store.module_file("shop.cart") is None
        store.replace_files(
            [
                (_source("a.py"), "1", _cart()),
                (_source("b.py"), "2", _other("b.py", ["b"])),
            ]
        )
        # Records are stored under the file's path whatever the parser wrote.
        assert {c.path for _, c in store.chunks_of("a.py")} == {"a.py"}
        store.delete_files(["a.py", "shop/cart.py", "missing.py"])
        assert set(store.file_states()) == {"b.py"}
        assert store.counts() == {"files": 1, "chunks": 1, "symbols": 0, "embedded": 0}
        for table in ("chunks", "symbols", "imports", "exports"):
            conn = store._conn
            assert conn is not None
            rows = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE path != 'b.py'").fetchone()
            assert rows == (0,)


def test_vectors_are_keyed_by_chunk_text(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        ids = store.replace_file(_source("shop/cart.py"), "a", _cart())
        store.replace_file(_source("copy.py"), "c", _other("copy.py", [_cart().chunks[1].text]))
        missing = store.missing_vectors(10)
        assert [text for _, text in missing] == [c.text for c in _cart().chunks]  # distinct
        assert store.count_missing_vectors() == 3
        assert store.missing_vectors(2) == missing[:2]
        store.store_vectors([(sha, _vec(sha)) for sha, _ in missing])
        assert store.counts()["embedded"] == 4 and store.missing_vectors(10) == []
        got_ids, matrix = store.all_vectors()
        assert got_ids.dtype == np.int64 and matrix.dtype == np.float32
        assert matrix.shape == (4, DIM) and list(got_ids) == sorted(got_ids)
        assert np.array_equal(matrix[0], _vec(text_sha(_cart().chunks[0].text)))
        # Re-chunking: the unchanged chunks keep their vectors, the changed one loses it.
        new_ids = store.replace_file(_source("shop/cart.py"), "b", _cart("return None"))
        assert store.counts() == {"files": 2, "chunks": 4, "symbols": 3, "embedded": 3}
        assert [text for _, text in store.missing_vectors(10)] == [
            _cart("return None").chunks[2].text
        ]
        sub_ids, sub = store.vectors_for([new_ids[2], new_ids[0], 12345])
        assert list(sub_ids) == [new_ids[0]] and sub.shape == (1, DIM)
        assert store.vectors_for(ids)[0].size == 0
        assert store.prune_vectors() == 1  # the old add() text
        assert store.prune_vectors() == 0
        with pytest.raises(ValueError, match="dimensions"):
            store.store_vectors([("x", np.zeros(DIM + 1))])
        with pytest.raises(ValueError, match="NaN"):
            store.store_vectors([("x", np.full(DIM, np.nan))])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"model": "other-embedder"},
            "embedding model changed from fake-embedder to other-embedder",
        ),
        ({"dim": 8}, "embedding dimension changed from 4 to 8"),
        ({"schema": 0}, f"schema version changed from 0 to {SCHEMA_VERSION}"),
    ],
)
def test_meta_mismatch_rebuilds(tmp_path: Path, change: dict[str, object], reason: str) -> None:
    with _open(tmp_path) as store:
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
        store.store_vectors([(text_sha("a"), _vec(text_sha("a")))])
    (tmp_path / "vectors.faiss").write_bytes(b"derived cache")
    if "schema" in change:
        meta = json.loads((tmp_path / "meta.json").read_text())
        meta["schema_version"] = change["schema"]
        (tmp_path / "meta.json").write_text(json.dumps(meta))
    model = str(change.get("model", "fake-embedder"))
    dim = int(str(change.get("dim", DIM)))
    with _open(tmp_path, model, dim) as store:
        assert store.rebuilt_reason == reason
        assert store.counts() == {"files": 0, "chunks": 0, "symbols": 0, "embedded": 0}
        assert store.embedding_model == model and store.embedding_dim == dim
    assert not (tmp_path / "vectors.faiss").exists()
    with _open(tmp_path, model, dim) as store:
        assert store.rebuilt_reason is None


def test_close_never_writes_its_identity_over_a_rebuilt_index(tmp_path: Path) -> None:
    old = _open(tmp_path)
    old.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
    with _open(tmp_path, model="other-embedder") as new:
        assert new.rebuilt_reason is not None
    old.close()
    assert json.loads((tmp_path / "meta.json").read_text())["embedding_model"] == "other-embedder"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "header_only"])
def test_corrupt_database_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    with _open(tmp_path) as store:
        store.replace_files(
            [(_source(f"f{i}.py"), str(i), _other(f"f{i}.py", ["x" * 3000] * 5)) for i in range(20)]
        )
    db = tmp_path / "index.sqlite"
    blob = db.read_bytes()
    assert len(blob) > 100_000
    if damage == "garbage":
        damaged = np.random.default_rng(0).bytes(len(blob))
    elif damage == "truncated":
        damaged = blob[: len(blob) // 2]
    else:
        damaged = blob[:60]
    db.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="indexer.store"), _open(tmp_path) as store:
        assert store.rebuilt_reason is not None
        assert store.rebuilt_reason.startswith("index database was corrupt")
        assert store.counts()["files"] == 0
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
        assert store.integrity_check() == []
    assert "corrupt" in caplog.text
    aside = list(tmp_path.glob("index.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"schema_version": 1}', b"\xff\xfe"])
def test_unreadable_meta_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    with _open(tmp_path) as store:
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
    (tmp_path / "meta.json").write_bytes(content)
    with _open(tmp_path) as store:
        assert store.rebuilt_reason is not None
        assert store.rebuilt_reason.startswith("meta.json was unreadable")
        assert store.counts()["files"] == 0
    assert [p.read_bytes() for p in tmp_path.glob("meta.json.corrupt-*")] == [content]
    assert len(list(tmp_path.glob("index.sqlite.corrupt-*"))) == 1


def test_missing_meta_beside_database_starts_afresh(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
    (tmp_path / "meta.json").unlink()
    with _open(tmp_path) as store:
        assert (
            store.rebuilt_reason
            == "meta.json was missing beside an existing database; started afresh"
        )
        assert store.counts()["files"] == 0


def test_index_location_under_a_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(IndexUnavailableError) as info:
        _open(blocker / "idx")
    message = str(info.value)
    assert str(blocker / "idx") in message and "set a writable index location" in message
    assert "\n" not in message


# The tests below run the store in a child process. As root (these tests usually are),
# file modes do not stop writes: the child drops CAP_DAC_OVERRIDE from its capability
# bounding set before exec, so the kernel enforces the modes on it as on any user.
_CHILD_PREAMBLE = """
import json, sys
from pathlib import Path
from indexer.store import IndexStore
from indexer.records import IndexerError, ParsedFile, SourceFile, Chunk
def attempt(fn):
    try:
        fn()
        print(json.dumps({"ok": True}))
    except IndexerError as exc:
        print(json.dumps({"ok": False, "kind": type(exc).__name__, "message": str(exc)}))
def open_store(d):
    return IndexStore.open(
        Path(d), repo_root=Path("."), embedding_model="fake-embedder", embedding_dim=4
    )
"""


def _drop_dac_override() -> None:
    if os.geteuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_capbset_drop, cap_dac_override = 24, 1
        if libc.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _can_drop_dac_override() -> bool:
    """Root needs CAP_SETPCAP to shrink its bounding set; anyone else is bound by modes anyway."""
    if os.geteuid() != 0:
        return True
    status = Path("/proc/self/status").read_text()
    effective = int(
        next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16
    )
    cap_setpcap = 8
    return bool(effective & (1 << cap_setpcap))


def _run_child(
    script: str, *args: str, drop_dac: bool = False, limit_fsize: int | None = None
) -> dict[str, object]:
    def setup() -> None:
        if drop_dac:
            _drop_dac_override()
        if limit_fsize is not None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))

    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_PREAMBLE + textwrap.dedent(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=setup,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not _can_drop_dac_override(), reason="root without CAP_SETPCAP")
def test_read_only_locations_are_unavailable(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    with _open(existing) as store:
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
    readonly_parent = tmp_path / "ro"
    readonly_parent.mkdir()
    readonly_file_dir = tmp_path / "rofile"
    with _open(readonly_file_dir):
        pass
    os.chmod(existing, 0o555)
    os.chmod(readonly_parent, 0o555)
    os.chmod(readonly_file_dir / "index.sqlite", 0o444)
    try:
        for directory in (existing, readonly_parent / "idx", readonly_file_dir):
            script = "attempt(lambda: open_store(sys.argv[1]))"
            result = _run_child(script, str(directory), drop_dac=True)
            assert result["ok"] is False, directory
            assert result["kind"] == "IndexUnavailableError"
            message = str(result["message"])
            assert message.startswith(f"cannot write the index at {directory}: ")
            assert message.endswith("; set a writable index location")
    finally:
        os.chmod(existing, 0o755)
        os.chmod(readonly_parent, 0o755)


def test_full_disk_is_unavailable_and_keeps_the_last_good_index(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
    script = """
        store = open_store(sys.argv[1])
        big = ParsedFile(chunks=[Chunk("b.py", 1, 1, "python", "window", "x" * 4_000_000)])
        src = SourceFile("b.py", Path("b.py"), 1, 1, "python")
        attempt(lambda: store.replace_file(src, "2", big))
    """
    # A file-size limit makes the kernel refuse writes past 2 MB, as a full disk would.
    result = _run_child(script, str(tmp_path), limit_fsize=2_000_000)
    assert result["kind"] == "IndexUnavailableError", result
    assert "set a writable index location" in str(result["message"])
    with _open(tmp_path) as store:
        assert set(store.file_states()) == {"a.py"}
        assert store.integrity_check() == []


def test_concurrent_reader_and_writer_threads(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with _open(tmp_path) as store:

        def write() -> None:
            try:
                for i in range(60):
                    store.replace_file(
                        _source(f"w{i % 7}.py"), str(i), _other(f"w{i % 7}.py", [f"t{i}", "same"])
                    )
                    store.store_vectors([(sha, _vec(sha)) for sha, _ in store.missing_vectors(4)])
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        while writer.is_alive():
            counts = store.counts()
            assert counts["chunks"] == 2 * counts["files"] >= counts["embedded"]
            ids, matrix = store.all_vectors()
            assert len(ids) == len(matrix) and list(ids) == sorted(set(ids.tolist()))
            # A file is replaced in one transaction: never seen half-written.
            assert all(len(store.chunks_of(p)) == 2 for p in store.file_states())
        writer.join()
        assert errors == []
        assert store.counts()["files"] == 7 and store.integrity_check() == []


# ---- crash safety: SIGKILL a writer at random moments ------------------------------------


def _writer_parsed(path: str, n: int, gen: int) -> ParsedFile:
    chunks = [
        Chunk(path, j + 1, j + 1, "python", "function", f"def f{j}(): return {gen}  # {path}")
        for j in range(n)
    ]
    chunks.append(Chunk(path, 99, 99, "python", "module", "CONSTANT = 1"))  # shared by all
    symbols = [Symbol(f"f{j}", f"{path}.f{j}", "function", path, j + 1, "python") for j in range(n)]
    return ParsedFile(chunks=chunks, symbols=symbols, module=path[:-3])


def _write_generations(directory: Path, target: int) -> int:
    """The writer that gets killed: rewrites every file once per generation, then embeds."""
    store = _open_fake(directory)
    states = store.file_states()
    gen = int(states["f0.py"][0]) if "f0.py" in states else 0
    while gen < target:
        gen += 1
        store.replace_files(
            [
                (_source(f"f{i}.py", 10), str(gen), _writer_parsed(f"f{i}.py", i % 4 + 1, gen))
                for i in range(12)
            ]
        )
        store.delete_files([p for p in store.file_states() if p.startswith("extra")])
        extra = f"extra{gen}.py"
        store.replace_file(_source(extra, 10), str(gen), _writer_parsed(extra, 2, gen))
        while missing := store.missing_vectors(7):
            store.store_vectors([(sha, _vec(sha)) for sha, _ in missing])
        store.prune_vectors()
    store.close()
    return gen


def _fork_writer(directory: Path) -> int:
    """A writer in a forked child: no interpreter start-up, so many kills fit in seconds."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        try:
            _write_generations(directory, 10**9)
        finally:
            os._exit(1)
    return pid


def _check_consistent(directory: Path) -> int:
    """Assert the invariants the writer's transactions promise; return its generation."""
    with IndexStore.open(
        directory, repo_root=directory, embedding_model="fake", embedding_dim=4
    ) as store:
        assert store.rebuilt_reason is None
        assert store.integrity_check() == []
        states = store.file_states()
        main = {p: s for p, s in states.items() if p.startswith("f")}
        extras = [p for p in states if p.startswith("extra")]
        gens = {sha for sha, _, _ in main.values()}
        assert len(gens) <= 1, gens  # one batch is one transaction
        assert len(main) in (0, 12) and len(extras) <= 1
        gen = int(gens.pop()) if gens else 0
        for path in states:
            n = int(path[1:-3]) % 4 + 1 if path in main else 2
            chunks = store.chunks_of(path)
            assert len(chunks) == n + 1
            assert all(f"return {states[path][0]}" in c.text for _, c in chunks[:n])
            assert len(store.symbols_with_prefix(path)) == n
        ids, matrix = store.all_vectors()
        by_id = store.get_chunks(ids.tolist())
        for chunk_id, row in zip(ids.tolist(), matrix, strict=True):
            assert np.array_equal(
                row, _vec(text_sha(by_id[chunk_id].text))
            )  # no torn or stray vectors
        counts = store.counts()
        assert counts["files"] == len(states) and counts["embedded"] == len(ids)
        assert counts["chunks"] == sum(len(store.chunks_of(p)) for p in states)
        return gen


def test_sigkill_at_random_moments_leaves_a_consistent_index(tmp_path: Path) -> None:
    rng = random.Random(20240521)
    generations = []
    for _ in range(15):
        pid = _fork_writer(tmp_path)
        time.sleep(rng.choice([0.0, 0.001, 0.005]) if rng.random() < 0.3 else rng.uniform(0, 0.25))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        generations.append(_check_consistent(tmp_path))
    assert generations == sorted(generations) and generations[-1] > 0
    # A further run, in a fresh interpreter, completes the work from where the last one stopped.
    final = generations[-1] + 3
    script = (
        "import sys; from pathlib import Path; from tests.test_store import _write_generations;"
        " print(_write_generations(Path(sys.argv[1]), int(sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(final)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.split() == [str(final)], done.stderr
    assert _check_consistent(tmp_path) == final
    with _open_fake(tmp_path) as store:
        counts = store.counts()
        assert counts["embedded"] == counts["chunks"] > 0


def _open_fake(directory: Path) -> IndexStore:
    return IndexStore.open(directory, repo_root=directory, embedding_model="fake", embedding_dim=4)


# ---- the process lock ------------------------------------------------------------------------

_HOLDER = """
import sys
from pathlib import Path
from indexer.lock import IndexLock
with IndexLock(Path(sys.argv[1]), repo_root="/home/dev/shop"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _holder(directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(directory)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_contention_between_processes(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    busy = f"another apprentice process is indexing /home/dev/shop (pid {holder.pid})"
    try:
        with pytest.raises(IndexBusyError) as info, IndexLock(tmp_path):
            pass
        assert str(info.value) == f"{busy}; try again when it has finished"
        with (
            pytest.raises(IndexBusyError, match=r"gave up after 0\.2 s"),
            IndexLock(tmp_path, wait_s=0.2, poll_s=0.05),
        ):
            pass
        # Waiting: the holder lets go while we poll.
        messages: list[str] = []
        assert holder.stdin is not None
        timer = threading.Timer(0.2, lambda: (holder.stdin.write("\n"), holder.stdin.flush()))  # type: ignore[union-attr]
        timer.start()
        with IndexLock(tmp_path, wait_s=30, on_wait=messages.append, repo_root="/x") as lock:
            assert lock.held
            assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n/x\n"
        assert messages == [f"{busy}; waiting..."]
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "lock").read_text() == ""


def test_rebuild_waits_for_the_lock_holder(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        store.replace_file(_source("a.py"), "1", _other("a.py", ["a"]))
    holder = _holder(tmp_path)
    try:
        with pytest.raises(IndexBusyError, match=f"pid {holder.pid}"):
            _open(tmp_path, model="other-embedder")
        with _open(tmp_path) as store:  # no rebuild needed: the holder is no obstacle
            assert store.counts()["files"] == 1
    finally:
        holder.kill()
        holder.wait()
    # A process that holds the lock itself may rebuild under it.
    with IndexLock(tmp_path), _open(tmp_path, model="other-embedder") as store:
        assert store.rebuilt_reason is not None and store.counts()["files"] == 0


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with IndexLock(tmp_path) as lock:
        assert lock.held
    assert not lock.held


def test_lock_conflicts_within_one_process_and_releases(tmp_path: Path) -> None:
    first = IndexLock(tmp_path / "new" / "dir")
    first.acquire()
    with (
        pytest.raises(IndexBusyError, match=f"pid {os.getpid()}"),
        IndexLock(tmp_path / "new" / "dir"),
    ):
        pass
    first.release()
    first.release()
    with IndexLock(tmp_path / "new" / "dir"):
        pass


def test_sqlite_sees_our_pragmas(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
