"""A full disk while the vector file is written: the index goes on, and close() still closes it.

The disk is really full for that one file: the temporary file the vector index writes is
made a symlink to /dev/full, where every write fails with ENOSPC.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from indexer.embed import FakeEmbedder
from indexer.index import IndexSettings, RepositoryIndex

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


def open_index(root: Path, tmp_path: Path) -> RepositoryIndex:
    return RepositoryIndex(
        root, IndexSettings(location=tmp_path / "index"), embedder=FakeEmbedder()
    )


def make_repo(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    for n in range(4):
        (root / "pkg" / f"mod{n}.py").write_text(f"def func{n}(x):\n    return x + {n}\n")
    return root


def fill_disk_for(path: Path) -> Path:
    """Make the next save of ``path`` from this thread write to /dev/full."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.symlink_to("/dev/full")
    return tmp


def test_close_survives_a_full_disk_and_closes_the_store(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    index = RepositoryIndex(
        root, IndexSettings(location=tmp_path / "index"), embedder=FakeEmbedder()
    )
    index.update()
    index.embed_pending()
    assert index.store.vectors_path.exists()
    (root / "pkg" / "mod0.py").write_text("def func0(x):\n    return x * 10\n")
    index.update_file("pkg/mod0.py", (root / "pkg" / "mod0.py").read_text())  # vectors dirty
    fill_disk_for(index.store.vectors_path)

    index.close()  # the save fails with ENOSPC; the store closes all the same

    assert index.store._conn is None
    assert not index.store.vectors_path.exists()  # no torn file left behind
    with open_index(root, tmp_path) as reopened:  # the vectors are rebuilt from SQLite
        assert reopened.has_vectors()
        assert reopened.store.integrity_check() == []


def test_embedding_goes_on_when_the_vector_file_cannot_be_written(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    index = RepositoryIndex(
        root, IndexSettings(location=tmp_path / "index"), embedder=FakeEmbedder()
    )
    index.update()
    fill_disk_for(index.store.vectors_path)
    done, _ = index.embed_pending()  # the cache save at the end hits the full disk
    assert done > 0 and index.has_vectors()
    assert [hit.chunk.path for hit in index.search("func2", k=1)] == ["pkg/mod2.py"]
    index.close()
    assert index.store._conn is None
