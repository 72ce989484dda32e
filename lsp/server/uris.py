"""Document URIs in one place: the key a document is stored under, and the file it names.

Editors percent-encode URIs (VS Code sends ``file:///a/my%20file.py``); pygls stores open
documents under the *unquoted* URI, and a client may not encode the same path the same way
in every message. Every lookup, cache key and path computed from a URI goes through here,
so a file whose path has a space or a non-ASCII character is found like any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Hosts that name this machine in a ``file:`` URI (``file:///x`` has none).
_LOCAL_HOSTS = frozenset({"", "localhost"})


def document_key(uri: str) -> str:
    """The key an open document is stored under (pygls's: the URI percent-decoded)."""
    return unquote(uri)


def path_of(uri: str) -> Path | None:
    """The local file a URI names, lexically normalised; None for other schemes or hosts.

    ``untitled:`` buffers and ``file://otherhost/...`` name no file on this machine.
    The path is made absolute without touching the disk (``..`` segments folded), so it
    can be compared with a workspace root; use ``relative_path`` for that.
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return None
    if unquote(parts.netloc).lower() not in _LOCAL_HOSTS:
        return None
    text = unquote(parts.path)
    if not text.startswith("/") or "\x00" in text:
        return None
    return Path(os.path.normpath(text))


def relative_path(uri: str, root: Path) -> str | None:
    """The POSIX path of the URI's file below ``root`` (both resolved), or None outside it."""
    path = path_of(uri)
    if path is None:
        return None
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        return None
