"""VectorIndex: exact search against numpy, HNSW recall, removal, and safe save/load."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer.vectors import VectorIndex


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Vectors around a few dozen centres, like embeddings of related code."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    return _unit(centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dim)))


def _brute(ids: np.ndarray, matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = matrix @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(ids[i]) for i in order]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    matrix = _clustered(600, 32, seed=1)
    ids = np.arange(600, dtype=np.int64) * 7 + 100  # ids unrelated to positions
    return ids, matrix


def test_exact_search_matches_numpy(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex.build(ids, matrix)
    assert not index.approximate and len(index) == 600 and index.dim == 32
    queries = _clustered(25, 32, seed=2)
    for query in queries:
        got = index.search(query, 10)
        assert [i for i, _ in got] == _brute(ids, matrix, query, 10)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        by_id = dict(zip(ids.tolist(), matrix @ query, strict=True))
        for chunk_id, score in got:
            assert score == pytest.approx(float(by_id[chunk_id]), abs=1e-5)


def test_search_edges(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex.build(ids[:3], matrix[:3])
    assert len(index.search(matrix[0], 10)) == 3
    assert index.search(matrix[0], 0) == []
    empty = VectorIndex.build(np.zeros(0, np.int64), np.zeros((0, 32), np.float32))
    assert len(empty) == 0 and empty.search(matrix[0], 5) == []
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(31, np.float32), 1)
    with pytest.raises(ValueError, match="2 ids for 3 vectors"):
        VectorIndex.build(np.array([1, 2]), matrix[:3])
    with pytest.raises(ValueError, match="repeat"):
        VectorIndex.build(np.array([1, 1]), matrix[:2])


def test_exact_remove_and_replace(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex.build(ids, matrix)
    target = int(ids[10])
    assert index.search(matrix[10], 1)[0][0] == target
    assert index.remove(np.array([target, 999_999])) == 1
    assert len(index) == 599
    assert target not in [i for i, _ in index.search(matrix[10], 50)]
    # Re-adding an id that exists replaces its vector rather than duplicating it.
    index.add(np.array([target]), matrix[10:11])
    index.add(np.array([int(ids[11])]), matrix[10:11])
    assert len(index) == 600
    top = index.search(matrix[10], 2)
    assert {i for i, _ in top} == {target, int(ids[11])}
    found = [i for i, _ in index.search(matrix[0], 1000)]
    assert len(found) == len(set(found)) == 600


def test_save_load_roundtrip(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, matrix = data
    index = VectorIndex.build(ids, matrix)
    path = tmp_path / "vectors.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, expected_count=600, expected_dim=32)
    assert loaded is not None and len(loaded) == 600 and not loaded.approximate
    query = matrix[42]
    assert loaded.search(query, 5) == index.search(query, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.faiss"]  # no temp file left


def test_load_rejects_missing_and_mismatched(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    ids, matrix = data
    path = tmp_path / "vectors.faiss"
    caplog.set_level(logging.INFO, logger="indexer.vectors")
    assert VectorIndex.load(path) is None
    VectorIndex.build(ids, matrix).save(path)
    assert VectorIndex.load(path, expected_count=599) is None
    assert VectorIndex.load(path, expected_dim=384) is None
    assert VectorIndex.load(path, expected_count=600) is not None
    assert "holds 600 vectors, not 599" in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "random", "flip", "empty", "raw_faiss"])
def test_load_rejects_corrupt_files(
    tmp_path: Path,
    data: tuple[np.ndarray, np.ndarray],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    ids, matrix = data
    path = tmp_path / "vectors.faiss"
    VectorIndex.build(ids, matrix).save(path)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(3).bytes(len(blob)))
    elif damage == "flip":
        middle = len(blob) // 2
        path.write_bytes(blob[:middle] + bytes([blob[middle] ^ 0xFF]) + blob[middle + 1 :])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a FAISS file written by something else: no trailer, no checksum
        inner = faiss.IndexIDMap2(faiss.IndexFlatIP(32))
        inner.add_with_ids(matrix, ids)
        faiss.write_index(inner, str(path))
    with caplog.at_level(logging.WARNING, logger="indexer.vectors"):
        assert VectorIndex.load(path, expected_count=600) is None
    assert "unusable" in caplog.text


def test_approximate_index_finds_true_neighbours(tmp_path: Path) -> None:
    matrix = _clustered(3000, 32, seed=4)
    ids = np.arange(3000, dtype=np.int64) + 1
    index = VectorIndex.build(ids, matrix, approximate_above=1000)
    assert index.approximate
    rng = np.random.default_rng(5)
    queries = _unit(
        matrix[rng.choice(3000, 100, replace=False)] + 0.2 * rng.standard_normal((100, 32))
    )
    hits = sum(index.search(q, 1)[0][0] == _brute(ids, matrix, q, 1)[0] for q in queries)
    assert hits >= 90, f"recall@1 {hits}/100"
    path = tmp_path / "hnsw.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, expected_count=3000, approximate_above=1000)
    assert loaded is not None and loaded.approximate
    assert loaded.search(queries[0], 5) == index.search(queries[0], 5)


def test_approximate_remove_uses_tombstones_then_compacts(tmp_path: Path) -> None:
    matrix = _clustered(1500, 16, seed=6)
    ids = np.arange(1500, dtype=np.int64) + 1
    index = VectorIndex.build(ids, matrix, approximate_above=1000)
    gone = ids[:100]
    assert index.remove(gone) == 100 and index.remove(gone) == 0
    assert len(index) == 1400 and index.approximate
    for row in range(100):
        assert not set(i for i, _ in index.search(matrix[row], 10)) & set(gone.tolist())
    # Tombstones survive a save and load.
    path = tmp_path / "v.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, expected_count=1400, approximate_above=1000)
    assert loaded is not None
    assert all(i > 100 for i, _ in loaded.search(matrix[0], 20))
    # Re-adding a removed id brings back its new vector only.
    loaded.add(np.array([1]), matrix[700:701])
    assert loaded.search(matrix[700], 2)[0][1] == pytest.approx(1.0, abs=1e-4)
    assert {i for i, _ in loaded.search(matrix[700], 2)} == {1, 701}
    # Removing past a fifth of the index compacts it; below the threshold it is exact again.
    index.remove(ids[100:600])
    assert len(index) == 900 and not index.approximate
    assert index.search(matrix[900], 1)[0][0] == 901


def test_add_past_threshold_switches_to_approximate() -> None:
    matrix = _clustered(300, 16, seed=7)
    ids = np.arange(300, dtype=np.int64)
    index = VectorIndex.build(ids[:200], matrix[:200], approximate_above=250)
    assert not index.approximate
    index.add(ids[200:], matrix[200:])
    assert index.approximate and len(index) == 300
    assert index.search(matrix[250], 1)[0][0] == 250
