"""The server's index service: any failure ends in a clear state, and closing waits
(bounded) for the index thread, so an index is never closed under a commit in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from indexer.index import IndexSettings, RepositoryIndex
from lsp.core.settings import IndexSettingsSchema
from lsp.server.indexing import IndexService


def make_repo(root: Path, files: int = 30) -> Path:
    (root / "pkg").mkdir(parents=True)
    for n in range(files):
        (root / "pkg" / f"mod{n}.py").write_text(f"def func{n}(x):\n    return x + {n}\n")
    return root


def service(root: Path, index_dir: Path, reports: list[tuple[str, str]]) -> IndexService:
    settings = IndexSettingsSchema(location=str(index_dir), embeddings=False)
    return IndexService(root, settings, report=lambda key, message: reports.append((key, message)))


async def test_an_unexpected_error_ends_in_the_error_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: RepositoryIndex, progress: object = None) -> object:
        raise ValueError("a parser bug")

    monkeypatch.setattr(RepositoryIndex, "update", broken)
    reports: list[tuple[str, str]] = []
    index = service(make_repo(tmp_path / "repo", files=2), tmp_path / "index", reports)
    await index.build(lambda stage, done, total: None)
    status = index.status()
    assert status["state"] == "error"
    assert "a parser bug" in str(status["error"])
    assert [key for key, _ in reports] == ["index"]
    index.close()


async def test_close_waits_for_the_build_and_leaves_a_sound_index(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    index = service(root, tmp_path / "index", [])
    working = threading.Event()
    inside: list[int] = []

    def slow_progress(stage: str, done: int, total: int) -> None:
        inside.append(1)
        working.set()
        time.sleep(0.3)  # a slow file: close() arrives while the thread is busy
        inside.pop()

    build = asyncio.ensure_future(index.build(slow_progress))
    while not working.is_set():
        await asyncio.sleep(0.01)
    index.close()
    assert inside == []  # close() returned after the thread's work, not during it
    assert index.status()["state"] == "off"
    await build  # the build ended quietly
    with RepositoryIndex(root, IndexSettings(location=tmp_path / "index")) as reopened:
        assert reopened.store.integrity_check() == []


async def test_close_gives_up_waiting_and_the_thread_closes_the_index(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", files=3)
    index = service(root, tmp_path / "index", [])
    await index.build(lambda stage, done, total: None)
    opened = index.index
    assert opened is not None
    release = threading.Event()
    busy = threading.Event()

    async def occupy() -> None:
        def hold() -> None:
            busy.set()
            release.wait(30)

        await index._submit(hold)

    job = asyncio.ensure_future(occupy())
    while not busy.is_set():
        await asyncio.sleep(0.01)
    index.close(wait_s=0.1)  # returns although the thread is still busy
    assert opened.store._conn is not None  # not closed under the running job
    release.set()
    await job
    assert opened.store._conn is None  # the thread closed it when its job ended


async def test_a_save_without_text_rereads_the_file_instead_of_dropping_it(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", files=3)
    index = service(root, tmp_path / "index", [])
    await index.build(lambda stage, done, total: None)
    assert index.index is not None
    before = index.index.store.file_states()["pkg/mod1.py"][0]
    (root / "pkg" / "mod1.py").write_text("def renamed(x):\n    return x\n")
    await index.update_file("pkg/mod1.py", None)  # a didSave that carries no text
    assert index.status()["files"] == 3
    assert index.index.store.file_states()["pkg/mod1.py"][0] != before  # read again
    (root / "pkg" / "mod2.py").unlink()
    await index.update_file("pkg/mod2.py", None)  # gone from disk: dropped
    assert index.status()["files"] == 2
    index.close()
