"""Files written whole or not at all: a temp file beside the target, fsynced, then renamed.

A crash or a full disk leaves the previous file (or none) at the final path, never a
truncated one; the temp file is removed on any failure.

The one atomic writer of model.checkpoints and model.training (manifests, signatures,
training state). The indexer keeps its own (indexer.store: the index's JSON files and
``fsync_directory``): by the layer table the indexer imports nothing of model, and
model.runtime and model.checkpoints import nothing of the indexer, so neither side can
hold the one that the other imports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from model.runtime.api import ModelError


class WriteError(ModelError):
    """A file could not be written (full disk, no permission); nothing was left half-written."""


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only when the block ends without an error."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide data meant to share
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise
    fsync_directory(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _write_error(path: Path, error: OSError) -> WriteError:
    if error.errno == errno.ENOSPC:
        return WriteError(f"no space left on the device writing {path}; nothing was written")
    return WriteError(f"cannot write {path}: {error.strerror or error}")
