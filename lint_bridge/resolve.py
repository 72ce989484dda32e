"""Static resolution of modules, module attributes and class attributes (nothing is imported).

Sources and stubs are read with ``ast``; the standard library is read from typeshed's
stubs as bundled with mypy. Whenever something cannot be told (a C extension with no
stub, a module ``__getattr__``, a base class that does not resolve) the answer is
"unknown", never "missing": a false alarm costs more than a miss.
"""

from __future__ import annotations

import ast
import builtins
import logging
import os
import re
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from lint_bridge.buffer_parse import parse_recovering
from lint_bridge.class_facts import OBJECT_ATTRS, compute_facts
from lint_bridge.class_scan import decorator_name
from lint_bridge.module_finder import (
    ModuleFinder,
    default_search_paths,
    find_typeshed_stdlib,
)
from lint_bridge.module_scan import (
    MODULE_DUNDERS,
    AnnotatedBinding,
    Binding,
    ClassBinding,
    FromBinding,
    ImportBinding,
    ModuleSummary,
    ValueBinding,
    scan_text,
)
from lint_bridge.typed_values import ABSTRACT_MODULES, annotation_value, instance_of
from lint_bridge.values import (
    MISSING,
    UNKNOWN,
    Attributes,
    ClassFacts,
    ClassInfo,
    ClassValue,
    InstanceValue,
    ModuleValue,
    Namespace,
    Value,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

BUILTIN_NAMES = frozenset(dir(builtins)) | MODULE_DUNDERS | {"WindowsError", "reveal_type"}
TYPE_ATTRS = frozenset(dir(type))
_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+\(?([\w, \t]*)|import[ \t]+([\w.]+))",
    re.MULTILINE,
)
_STAR_DEPTH = 6
_MEMO_SIZE = 32


@dataclass
class _Loaded:
    stamp: tuple[int, int]
    name: str
    summary: ModuleSummary | None


@dataclass
class _ModuleNamespace:
    resolver: ModuleResolver
    summary: ModuleSummary
    guard: frozenset[tuple[int, str]] = field(default_factory=frozenset)

    def value_of(self, name: str) -> Value:
        value = self.resolver.member(self.summary, name, self.guard)
        return self.resolver.builtin(name) if value is MISSING else value


class ModuleResolver:
    """Answers "does this module / attribute exist?" by reading sources and stubs statically."""

    def __init__(
        self, search_paths: Sequence[Path], *, typeshed_stdlib: Path | None = None
    ) -> None:
        self.finder = ModuleFinder(search_paths, typeshed_stdlib)
        self.parse_count = 0
        self._files: dict[str, _Loaded] = {}
        self._namespaces: dict[str, ModuleSummary] = {}
        self._memo: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self._stable: weakref.WeakSet[ModuleSummary] = weakref.WeakSet()
        self._facts: weakref.WeakKeyDictionary[ModuleSummary, dict[ast.ClassDef, ClassFacts]] = (
            weakref.WeakKeyDictionary()
        )
        self._origins: weakref.WeakKeyDictionary[ModuleSummary, tuple[str, int, int]] = (
            weakref.WeakKeyDictionary()
        )

    # Modules -------------------------------------------------------------------------

    def module_exists(self, name: str) -> bool | None:
        """Whether ``import name`` would find a module; None when it cannot be told."""
        if self.finder.find(name) is not None:
            return True
        if name in sys.stdlib_module_names or self.finder.in_typeshed(name):
            return None  # standard in another Python version or on another platform
        parent, _, leaf = name.rpartition(".")
        if not parent:
            return False
        parent_exists = self.module_exists(parent)
        if not parent_exists:
            return parent_exists
        summary = self.summary(parent)
        if summary is None or summary.open or summary.extends_path or summary.uses_sys_modules:
            return None
        return leaf in summary.bindings

    def summary(self, name: str) -> ModuleSummary | None:
        """The parsed top level of module ``name``; None if missing or not readable (C code)."""
        location = self.finder.find(name)
        if location is None:
            return None
        if location.kind == "namespace":
            summary = self._namespaces.get(name)
            if summary is None:
                summary = ModuleSummary(name=name, is_package=True)
                self._namespaces[name] = summary
            return summary
        if location.file is None:
            return None
        return self._file_summary(location.file, name, location.is_package)

    def _file_summary(self, path: Path, name: str, is_package: bool) -> ModuleSummary | None:
        key = os.fspath(path)
        try:
            status = os.stat(key)
        except OSError:
            return None
        stamp = (status.st_mtime_ns, status.st_size)
        hit = self._files.get(key)
        if hit is not None and hit.stamp == stamp and hit.name == name:
            return hit.summary
        stub = key.endswith(".pyi")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        self.parse_count += 1
        recovered = parse_recovering(text)
        summary = None
        if recovered is not None:
            summary = scan_text(recovered, text, name=name, is_package=is_package, stub=stub)
            self._origins[summary] = (key, *stamp)
            if stub or "site-packages" in key:
                self._stable.add(summary)
        else:
            logger.debug("cannot parse %s; its names are unknown", key)
        self._files[key] = _Loaded(stamp, name, summary)
        return summary

    def source_summary(
        self, text: str, name: str, is_package: bool, *, seam: int | None = None
    ) -> ModuleSummary | None:
        """Summarise module text held in memory (the rest of a buffer); cached by content.

        ``seam`` (a 0-based line) is where a region was cut out: None is returned when a
        statement spans it, since the cut then fell inside a string or brackets.
        """

        def summarise() -> ModuleSummary | None:
            recovered = parse_recovering(text)
            if recovered is None or _spans(recovered.tree.body, seam):
                return None
            return scan_text(recovered, text, name=name, is_package=is_package)

        return self.memo(("source", text, name, is_package, seam), summarise)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A small shared cache for work that repeats across candidates at one cursor."""
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return cast(T, self._memo[key])
        value = compute()
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return value

    def preload(self, source: str) -> int:
        """Read ahead of the first check (on opening a file, off the event loop) the stubs and
        sources a buffer's imports name, and builtins; returns how many modules were read."""
        names = {"builtins"}
        for match in _IMPORT_LINE.finditer(source):
            module, items, plain = match.groups()
            if plain:
                names.add(plain)
            elif module:
                names.add(module)
                names.update(f"{module}.{i.strip()}" for i in (items or "").split(",") if i.strip())
        before = self.parse_count
        for name in sorted(names):
            parts = name.split(".")
            for count in range(1, len(parts) + 1):
                self.summary(".".join(parts[:count]))
        return self.parse_count - before

    def module_name_for(self, path: Path) -> tuple[str, bool] | None:
        """The dotted module name of a file on the search path, and whether it is a package."""
        return self.finder.module_name_for(path)

    def module_attributes(self, name: str) -> Attributes | None:
        """Everything module ``name`` binds, plus its submodules; None when it cannot be read."""
        summary = self.summary(name)
        if summary is None:
            return None
        names: set[str] = set()
        is_open = self._collect_names(summary, names, set(), 0)
        return Attributes(frozenset(names), is_open)

    def _collect_names(
        self, summary: ModuleSummary, names: set[str], seen: set[str], depth: int
    ) -> bool:
        seen.add(summary.name)
        names.update(summary.bindings, summary.exported, MODULE_DUNDERS)
        is_open = summary.open
        if summary.is_package and summary.name:
            location = self.finder.find(summary.name)
            if location is not None:
                names |= self.finder.submodule_names(location)
        for star in summary.star_imports:
            target = self.summary(star) if star else None
            if target is None or depth >= _STAR_DEPTH:
                is_open = True
            elif target.name not in seen:
                is_open |= self._collect_names(target, names, seen, depth + 1)
        return is_open

    def class_attributes(self, module: str, class_name: str) -> Attributes | None:
        """The attributes of class ``module.class_name`` with its bases'; None if not a class."""
        summary = self.summary(module)
        if summary is None:
            return None
        first, *rest = class_name.split(".")
        value = self.member(summary, first)
        for part in rest:
            value = self.attribute(value, part)
        if not isinstance(value, ClassValue):
            return None
        facts = self.class_facts(value.cls)
        return Attributes(facts.names, facts.open)

    # Values ----------------------------------------------------------------------------

    def member(
        self, summary: ModuleSummary, name: str, guard: frozenset[tuple[int, str]] = frozenset()
    ) -> Value:
        """What ``name`` is in a module: a binding, submodule, star-imported name, or MISSING."""
        key = (id(summary), name)
        if key in guard or len(guard) > 32:
            return self._submodule(summary, name) or UNKNOWN
        guard = guard | {key}
        found = summary.bindings.get(name)
        if found:
            values = {self.binding_value(summary, binding, guard) for binding in found}
            return values.pop() if len(values) == 1 else UNKNOWN
        submodule = self._submodule(summary, name)
        if submodule is not None:
            return submodule
        for star in summary.star_imports:
            target = self.summary(star) if star else None
            if target is None:
                return UNKNOWN
            value = self.member(target, name, guard)
            if value is not MISSING:
                return value
        if name in summary.exported or name in summary.damaged_names:
            return UNKNOWN
        if name in MODULE_DUNDERS or summary.open:
            return UNKNOWN
        if summary.stub:
            runtime = self._runtime_summary(summary.name)
            if runtime is not None and self._binds(runtime, name, 0):
                return UNKNOWN  # stubs leave private and undocumented names out
            if runtime is None and name.startswith("_"):
                return UNKNOWN  # a C module's private names: nothing to check them against
        return MISSING

    def _binds(self, summary: ModuleSummary, name: str, depth: int) -> bool:
        """Whether a module binds ``name`` itself or may through a star import of C code."""
        if name in summary.bindings or name in summary.exported:
            return True
        if depth < _STAR_DEPTH:
            for star in summary.star_imports:
                target = self.summary(star) if star else None
                if target is None or self._binds(target, name, depth + 1):
                    return True  # a star import from C code with no stub: anything
        return False

    def _runtime_summary(self, module: str) -> ModuleSummary | None:
        location = self.finder.find_runtime(module)
        if location is None or location.file is None:
            return None
        return self._file_summary(location.file, module, location.is_package)

    def _in_runtime_class(self, cls: ClassInfo, name: str) -> bool:
        """Whether the source behind a stubbed class defines ``name`` (stubs omit private names)."""
        runtime = self._runtime_summary(cls.summary.name)
        if runtime is None:
            # C code: its private names cannot be checked (builtins' are well described).
            return name.startswith("_") and cls.summary.name != "builtins"
        first, *rest = cls.qualname.split(".")
        # Every class statement of that name counts (``Future`` is a class and, when the C
        # accelerator imports, something else).
        for binding in runtime.bindings.get(first, []):
            if not isinstance(binding, ClassBinding):
                continue
            value: Value = ClassValue(ClassInfo(runtime, binding.node, first))
            for part in rest:
                value = self.attribute(value, part)
            if isinstance(value, ClassValue) and name in self.class_facts(value.cls).names:
                return True
        return False

    def _submodule(self, summary: ModuleSummary, name: str) -> ModuleValue | None:
        if not (summary.is_package and summary.name):
            return None
        dotted = f"{summary.name}.{name}"
        return ModuleValue(dotted) if self.finder.find(dotted) is not None else None

    def binding_value(
        self,
        summary: ModuleSummary,
        binding: Binding,
        guard: frozenset[tuple[int, str]] = frozenset(),
    ) -> Value:
        """The value a module-level binding gives its name (UNKNOWN when it cannot be told)."""
        if isinstance(binding, ImportBinding):
            return ModuleValue(binding.module) if self.finder.find(binding.module) else UNKNOWN
        if isinstance(binding, FromBinding):
            dotted = f"{binding.module}.{binding.name}"
            if binding.module == summary.name and self.finder.find(dotted) is not None:
                return ModuleValue(dotted)
            source = self.summary(binding.module)
            if source is None:
                return ModuleValue(dotted) if self.finder.find(dotted) is not None else UNKNOWN
            value = self.member(source, binding.name, guard)
            return UNKNOWN if value is MISSING else value
        if isinstance(binding, ClassBinding):
            return ClassValue(ClassInfo(summary, binding.node, binding.node.name))
        namespace = _ModuleNamespace(self, summary, guard)
        if isinstance(binding, ValueBinding):
            value = self.evaluate(binding.expr, namespace)
            return UNKNOWN if value is MISSING else value
        if isinstance(binding, AnnotatedBinding):
            return self.annotation(binding.annotation, namespace)
        return UNKNOWN

    def namespace(self, summary: ModuleSummary) -> Namespace:
        """Look names up as module code would: the module's bindings, then builtins."""
        return _ModuleNamespace(self, summary)

    def builtin(self, name: str) -> Value:
        """A builtin name's value (typeshed's ``builtins`` read lazily); MISSING if not builtin."""
        summary = self.summary("builtins")
        if summary is None or name not in summary.bindings:
            # This interpreter's builtins, or typeshed's (a newer Python's) explicitly.
            return UNKNOWN if name in BUILTIN_NAMES else MISSING
        return self.member(summary, name)

    def evaluate(self, expr: ast.expr, namespace: Namespace) -> Value:
        """The value of a name chain, a call of one (a constructor) or a generic alias."""
        if isinstance(expr, ast.Name):
            return namespace.value_of(expr.id)
        if isinstance(expr, ast.Attribute):
            return self.attribute(self.evaluate(expr.value, namespace), expr.attr)
        if isinstance(expr, ast.Call):
            return self.call(self.evaluate(expr.func, namespace))
        if isinstance(expr, ast.Subscript):
            value = self.evaluate(expr.value, namespace)
            return value if isinstance(value, ClassValue) else UNKNOWN
        return UNKNOWN

    def annotation(self, expr: ast.expr, namespace: Namespace) -> Value:
        """An instance of the class an annotation names (``Optional[X]`` and ``X | None``: X)."""
        return annotation_value(expr, namespace, self.evaluate)

    def attribute(self, value: Value, name: str) -> Value:
        """``value.name``: MISSING only when the value's type is known and lacks the name."""
        if isinstance(value, ModuleValue):
            summary = self.summary(value.name)
            return UNKNOWN if summary is None else self.member(summary, name)
        if isinstance(value, ClassValue | InstanceValue):
            facts = self.class_facts(value.cls)
            if isinstance(value, ClassValue) and name in facts.nested:
                return ClassValue(facts.nested[name])
            if name in facts.names and isinstance(value, InstanceValue):
                owner, declared = facts.declared.get(name, (value.cls, None))
                if declared is None:
                    return UNKNOWN
                return annotation_value(declared, self.namespace(owner.summary), self.evaluate)
            if facts.open or name in facts.names:
                return UNKNOWN
            if isinstance(value, ClassValue) and name in TYPE_ATTRS:
                return UNKNOWN
            if isinstance(value, ClassValue) and value.cls.summary.name in ABSTRACT_MODULES:
                return UNKNOWN  # ABCs: ``register`` and friends come from ABCMeta
            if any(self._in_runtime_class(stubbed, name) for stubbed in facts.stubbed):
                return UNKNOWN
            return MISSING
        return UNKNOWN

    def call(self, value: Value) -> Value:
        """Calling a class makes an instance of it (unless its metaclass or ``__new__`` differ)."""
        if isinstance(value, ClassValue) and self.class_facts(value.cls).plain_constructor:
            return instance_of(value.cls)
        return UNKNOWN

    # Classes ---------------------------------------------------------------------------

    def class_facts(self, cls: ClassInfo) -> ClassFacts:
        """Attributes of a class with its bases' (cached; revalidated when a file changes)."""
        return self._class_facts(cls, frozenset())

    def _class_facts(self, cls: ClassInfo, seen: frozenset[ClassInfo]) -> ClassFacts:
        cached = self._facts.get(cls.summary, {}).get(cls.node)
        if cached is not None and self._still_valid(cached):
            return cached
        if cls in seen or len(seen) > 40:
            return ClassFacts(OBJECT_ATTRS, True, {}, False, False, False)
        origin = self._origins.get(cls.summary)
        if cls.summary in self._stable:
            origin = None  # installed code: not worth a stat per lookup
        inner = seen | {cls}
        facts = compute_facts(cls, self, lambda base: self._class_facts(base, inner), origin)
        self._facts.setdefault(cls.summary, {})[cls.node] = facts
        return facts

    def _still_valid(self, facts: ClassFacts) -> bool:
        for path, mtime, size in facts.deps:
            try:
                status = os.stat(path)
            except OSError:
                return False
            if (status.st_mtime_ns, status.st_size) != (mtime, size):
                return False
        return True


def _spans(body: list[ast.stmt], seam: int | None) -> bool:
    """Whether a top-level statement runs from before line ``seam`` (0-based) to after it."""
    if seam is None:
        return False
    for statement in body:
        if statement.lineno <= seam < (statement.end_lineno or statement.lineno):
            return True
    return False


def _last_name(expr: ast.expr) -> str:
    return decorator_name(expr)


def default_resolver(workspace_root: Path | None) -> ModuleResolver:
    """A resolver over the workspace, its virtualenv, this interpreter's path and typeshed."""
    return ModuleResolver(
        default_search_paths(workspace_root), typeshed_stdlib=find_typeshed_stdlib()
    )
