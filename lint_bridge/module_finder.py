"""Where a Python module lives on disk: search paths, typeshed's stdlib stubs, stub packages."""

from __future__ import annotations

import ast
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

ModuleKind = Literal["source", "stub", "extension", "namespace", "builtin"]
# typeshed: its stdlib stubs only; prefer-stubs: a .pyi before a .py; sources: no stubs.
_Mode = Literal["typeshed", "prefer-stubs", "sources"]

_EXTENSION_SUFFIXES = (*EXTENSION_SUFFIXES, ".pyd")
_VENV_NAMES = (".venv", "venv", "env")


@dataclass(frozen=True)
class ModuleLocation:
    """One module found on disk. ``file`` is what to parse (a stub before a source), if any."""

    name: str
    kind: ModuleKind
    file: Path | None
    package_dirs: tuple[Path, ...] = ()

    @property
    def is_package(self) -> bool:
        """Whether submodules can live under it."""
        return bool(self.package_dirs)


class _Listings:
    """Directory listings (name -> is a directory), re-read when a directory's mtime changes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, dict[str, bool]]] = {}

    def entries(self, directory: Path) -> dict[str, bool]:
        key = os.fspath(directory)
        try:
            mtime = os.stat(key).st_mtime_ns
        except OSError:
            return {}
        hit = self._cache.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        entries: dict[str, bool] = {}
        try:
            with os.scandir(key) as scan:
                for entry in scan:
                    try:
                        entries[entry.name] = entry.is_dir()
                    except OSError:
                        continue
        except OSError:
            return {}
        self._cache[key] = (mtime, entries)
        return entries


class _Typeshed:
    """typeshed's stdlib directory and its VERSIONS file (which modules exist in which Python)."""

    def __init__(self, root: Path, version: tuple[int, int]) -> None:
        self.root = root
        self.version = version
        self.ranges: dict[str, tuple[tuple[int, int], tuple[int, int] | None]] = {}
        try:
            text = (root / "VERSIONS").read_text(encoding="utf-8")
        except OSError:
            text = ""
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            name, _, span = line.partition(":")
            low, _, high = span.strip().partition("-")
            try:
                first = _version(low)
                last = _version(high) if high.strip() else None
            except ValueError:
                continue
            self.ranges[name.strip()] = (first, last)

    def covers(self, name: str) -> bool:
        """Whether typeshed speaks for ``name`` in this Python version."""
        parts = name.split(".")
        for count in range(len(parts), 0, -1):
            span = self.ranges.get(".".join(parts[:count]))
            if span is not None:
                first, last = span
                return first <= self.version and (last is None or self.version <= last)
        return False


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor)


class ModuleFinder:
    """Finds modules the way the import system would, without importing anything."""

    def __init__(
        self,
        search_paths: Sequence[Path],
        typeshed_stdlib: Path | None = None,
        *,
        version: tuple[int, int] | None = None,
    ) -> None:
        self._listings = _Listings()
        self.typeshed = (
            _Typeshed(typeshed_stdlib, version or sys.version_info[:2])
            if typeshed_stdlib is not None and (typeshed_stdlib / "VERSIONS").is_file()
            else None
        )
        paths: list[Path] = []
        editable: dict[str, Path] = {}
        for path in search_paths:
            _add_unique(paths, path)
            for extra in _pth_directories(path, editable):
                _add_unique(paths, extra)
        self.search_paths: tuple[Path, ...] = tuple(paths)
        self.editable: Mapping[str, Path] = editable

    def find(self, name: str) -> ModuleLocation | None:
        """The module called ``name`` (dotted), or None when nothing on the path provides it."""
        parts = _parts(name)
        if parts is None:
            return None
        if self.typeshed is not None and self.typeshed.covers(name):
            found = self._find_parts(parts, "typeshed")
            if found is not None:
                return found
        return self._find_parts(parts, "prefer-stubs")

    def in_typeshed(self, name: str) -> bool:
        """Whether typeshed has a stub for ``name`` in any Python version."""
        parts = _parts(name)
        return parts is not None and self._find_parts(parts, "typeshed") is not None

    def find_runtime(self, name: str) -> ModuleLocation | None:
        """The module's own source, ignoring every stub (None when it has no source)."""
        parts = _parts(name)
        location = None if parts is None else self._find_parts(parts, "sources")
        return location if location is not None and location.kind == "source" else None

    def _find_parts(self, parts: list[str], mode: _Mode) -> ModuleLocation | None:
        top = parts[0]
        if mode == "typeshed":
            if self.typeshed is None:
                return None
            location = self._find_in(top, top, (self.typeshed.root,), mode)
        else:
            location = self._find_top(top, mode)
        for depth in range(1, len(parts)):
            if location is None or not location.package_dirs:
                return None
            dotted = ".".join(parts[: depth + 1])
            location = self._find_in(dotted, parts[depth], location.package_dirs, mode)
        return location

    def _find_top(self, name: str, mode: _Mode) -> ModuleLocation | None:
        runtime = self._find_in(name, name, self.search_paths, mode)
        if runtime is None and name in self.editable:
            runtime = self._find_in(name, name, (self.editable[name].parent,), mode)
        if runtime is None and name in sys.builtin_module_names:
            runtime = ModuleLocation(name, "builtin", None)
        if mode == "sources":
            return runtime
        stub_dir = next(
            (
                path / f"{name}-stubs"
                for path in self.search_paths
                if self._listings.entries(path).get(f"{name}-stubs") is True
            ),
            None,
        )
        if stub_dir is None or not (stub_dir / "__init__.pyi").is_file():
            return runtime
        dirs = (stub_dir, *(runtime.package_dirs if runtime else ()))
        return ModuleLocation(name, "stub", stub_dir / "__init__.pyi", dirs)

    def _find_in(
        self, dotted: str, leaf: str, directories: Sequence[Path], mode: _Mode
    ) -> ModuleLocation | None:
        stubs, sources = mode != "sources", mode != "typeshed"
        portions: list[Path] = []
        for directory in directories:
            entries = self._listings.entries(directory)
            if not entries:
                continue
            if entries.get(leaf) is True:
                package = directory / leaf
                inner = self._listings.entries(package)
                if stubs and "__init__.pyi" in inner:
                    return ModuleLocation(dotted, "stub", package / "__init__.pyi", (package,))
                if sources and "__init__.py" in inner:
                    return ModuleLocation(dotted, "source", package / "__init__.py", (package,))
                if sources and any(f"__init__{s}" in inner for s in _EXTENSION_SUFFIXES):
                    return ModuleLocation(dotted, "extension", None, (package,))
                portions.append(package)
            if stubs and entries.get(f"{leaf}.pyi") is False:
                return ModuleLocation(dotted, "stub", directory / f"{leaf}.pyi")
            if not sources:
                continue
            if entries.get(f"{leaf}.py") is False:
                return ModuleLocation(dotted, "source", directory / f"{leaf}.py")
            if any(entries.get(f"{leaf}{suffix}") is False for suffix in _EXTENSION_SUFFIXES):
                return ModuleLocation(dotted, "extension", None)
        if portions and sources:
            return ModuleLocation(dotted, "namespace", None, tuple(portions))
        return None

    def submodule_names(self, location: ModuleLocation) -> set[str]:
        """Names of the modules and packages directly inside a package."""
        names: set[str] = set()
        for directory in location.package_dirs:
            for entry, is_dir in self._listings.entries(directory).items():
                if is_dir:
                    if entry.isidentifier() and entry != "__pycache__":
                        names.add(entry)
                    continue
                stem = _module_stem(entry)
                if stem is not None and stem != "__init__":
                    names.add(stem)
        return names

    def module_name_for(self, path: Path) -> tuple[str, bool] | None:
        """The dotted module name of a file (and whether it is a package's ``__init__``)."""
        best: tuple[int, str, bool] | None = None
        resolved = path.resolve()
        for root in self.search_paths:
            try:
                relative = resolved.relative_to(root.resolve())
            except (ValueError, OSError):
                continue
            parts = list(relative.parts)
            if not parts:
                continue
            stem = _module_stem(parts[-1])
            if stem is None:
                continue
            is_package = stem == "__init__"
            parts = parts[:-1] if is_package else [*parts[:-1], stem]
            if parts and all(part.isidentifier() for part in parts):
                depth = len(root.resolve().parts)
                if best is None or depth > best[0]:
                    best = (depth, ".".join(parts), is_package)
        return None if best is None else (best[1], best[2])


def _parts(name: str) -> list[str] | None:
    parts = name.split(".")
    return parts if all(part.isidentifier() for part in parts) else None


def _module_stem(filename: str) -> str | None:
    for suffix in (".pyi", ".py", *_EXTENSION_SUFFIXES):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            return stem if stem.isidentifier() else None
    return None


def _add_unique(paths: list[Path], path: Path) -> None:
    if path not in paths:
        paths.append(path)


def _pth_directories(directory: Path, editable: dict[str, Path]) -> list[Path]:
    """Directories named by ``.pth`` files (read, never run) and setuptools' editable finders."""
    found: list[Path] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        if name.endswith(".pth"):
            try:
                lines = (directory / name).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                entry = line.strip()
                if entry and not entry.startswith(("#", "import ", "import\t")):
                    candidate = (directory / entry).resolve()
                    if candidate.is_dir():
                        found.append(candidate)
        elif name.startswith("__editable__") and name.endswith("_finder.py"):
            editable.update(_editable_mapping(directory / name))
    return found


def _editable_mapping(path: Path) -> dict[str, Path]:
    """The ``MAPPING`` literal of a setuptools editable finder: top-level name -> directory."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    for node in tree.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "MAPPING" and value is not None:
            try:
                mapping = ast.literal_eval(value)
            except ValueError:
                return {}
            if isinstance(mapping, dict):
                return {str(k): Path(str(v)) for k, v in mapping.items()}
    return {}


def find_typeshed_stdlib(paths: Sequence[str] | None = None) -> Path | None:
    """typeshed's stdlib stubs as bundled with mypy, found on ``sys.path`` without importing it."""
    for entry in paths if paths is not None else sys.path:
        if not entry:
            continue
        candidate = Path(entry) / "mypy" / "typeshed" / "stdlib"
        if (candidate / "VERSIONS").is_file():
            return candidate
    return None


def default_search_paths(workspace_root: Path | None) -> list[Path]:
    """The workspace, its ``src``, its virtualenv, then this interpreter's own path."""
    paths: list[Path] = []
    if workspace_root is not None:
        root = workspace_root.resolve()
        paths.append(root)
        if (root / "src").is_dir():
            paths.append(root / "src")
        for venv in _VENV_NAMES:
            lib = root / venv / "lib"
            if lib.is_dir():
                paths.extend(sorted(lib.glob("python3*/site-packages")))
            windows = root / venv / "Lib" / "site-packages"
            if windows.is_dir():
                paths.append(windows)
    try:
        cwd: Path | None = Path.cwd().resolve()
    except OSError:
        cwd = None
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if path == cwd or not path.is_dir():
            continue
        _add_unique(paths, path)
    return paths
