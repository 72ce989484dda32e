"""Which documents the server works on: files inside the workspace folders, nothing else.

A client can name any URI, and a URI can dress a path up: ``..`` segments, percent-encoded
dots and slashes, another host (``file://server/share/...``), a different letter case, a
symlink inside the workspace that points out of it. Completions, code actions and the
repository context they read are only for documents whose real path lies inside one of the
workspace folders; everything else is refused (and logged). Without any workspace folder
(a single file opened), local files are served, with no repository context.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from lsp.server import uris

# Buffers the editor has not saved yet: no path, nothing to read outside the buffer.
_UNSAVED_SCHEMES = frozenset({"untitled"})


def refusal(uri: str, roots: Sequence[Path]) -> str | None:
    """Why the server does not work on ``uri`` (None: it does)."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme in _UNSAVED_SCHEMES:
        return None
    path = uris.path_of(uri)
    if path is None:
        return "not a file on this machine"
    if not roots:
        return None
    if any(uris.relative_path(uri, root) is not None for root in roots):
        return None
    return "outside the workspace folders"
