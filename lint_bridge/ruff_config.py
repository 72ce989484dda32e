"""Which ruff configuration a file is linted with: one from inside the workspace, or none.

Left to itself ruff looks for a configuration in every directory above the file, then in the
user's configuration directory, and follows ``extend`` wherever it points. A workspace is
untrusted input: its configuration may be used, but nothing outside it may be pulled in
through it, and a directory above the workspace (``/tmp``, a shared checkout) has no say.
So ruff gets ``--config FILE`` when the nearest configuration inside the workspace is
self-contained, and ``--isolated`` (ruff's defaults) otherwise.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

logger = logging.getLogger(__name__)

# Ruff's own order of preference within one directory.
_NAMES = (".ruff.toml", "ruff.toml", "pyproject.toml")
# An ``extend`` chain longer than this is refused (ruff would report a cycle or recurse).
_MAX_EXTENDS = 8


def config_args(target: Path, root: Path | None) -> list[str]:
    """The ruff arguments choosing the configuration for ``target`` (an absolute path).

    ``root`` None: no workspace to confine to, ruff finds its configuration as usual.
    """
    if root is None:
        return []
    root = root.resolve()
    directory = target.parent.resolve()
    if not directory.is_relative_to(root):
        return ["--isolated"]
    found = _nearest(directory, root)
    if found is None:
        return ["--isolated"]
    problem = _escapes(found, root)
    if problem is not None:
        logger.warning("ruff configuration %s ignored: %s", found, problem)
        return ["--isolated"]
    return ["--config", str(found)]


def _nearest(directory: Path, root: Path) -> Path | None:
    """The configuration ruff would use, searching ``directory`` up to ``root`` only."""
    for folder in (directory, *directory.parents):
        for name in _NAMES:
            candidate = folder / name
            if candidate.is_file() and (name != "pyproject.toml" or _has_ruff_table(candidate)):
                return candidate
        if folder == root:
            return None
    return None


def _escapes(config: Path, root: Path) -> str | None:
    """Why ``config`` reaches outside ``root`` (itself, or through ``extend``), or None."""
    seen: set[Path] = set()
    current: Path | None = config
    while current is not None:
        real = current.resolve()
        if not real.is_relative_to(root):
            return f"it leads outside the workspace ({current})"
        if real in seen or len(seen) >= _MAX_EXTENDS:
            return "its extend chain loops or is too long"
        seen.add(real)
        table = _ruff_table(real)
        if table is None:
            return f"{current} cannot be read"
        extend = table.get("extend")
        if extend is None:
            return None
        if not isinstance(extend, str):
            return "its extend is not a path"
        if "$" in extend or "~" in extend:
            # ruff expands these ($VAR, ${VAR:-default}, ~) where this check cannot follow.
            return f"its extend uses a shell expansion ({extend})"
        current = real.parent / extend
    return None


def _has_ruff_table(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("ruff"), dict)


def _ruff_table(path: Path) -> dict[str, object] | None:
    """The ruff settings of a configuration file (``[tool.ruff]`` of a pyproject)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if path.name == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("ruff") if isinstance(tool, dict) else None
        return table if isinstance(table, dict) else None
    return data
