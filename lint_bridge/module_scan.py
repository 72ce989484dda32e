"""What a module binds at its top level, read from its syntax tree (every branch, generously)."""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from lint_bridge.class_scan import ClassSummary, scan_class
from lint_bridge.module_getattr import getattr_names, literal_strings

if TYPE_CHECKING:
    from lint_bridge.buffer_parse import Recovered

logger = logging.getLogger(__name__)

# Names every module has without binding them.
MODULE_DUNDERS = frozenset(
    {
        "__name__",
        "__file__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
        "__path__",
        "__builtins__",
        "__cached__",
        "__dict__",
        "__annotations__",
        "__all__",
    }
)


@dataclass(frozen=True)
class ImportBinding:
    """``import a.b as c`` binds ``c`` to module ``a.b``; ``import a.b`` binds ``a`` to ``a``."""

    module: str


@dataclass(frozen=True)
class FromBinding:
    """``from m import n``: whatever ``n`` is in ``m`` (an attribute, else a submodule)."""

    module: str
    name: str


@dataclass(frozen=True, eq=False)
class ClassBinding:
    """A ``class`` statement."""

    node: ast.ClassDef


@dataclass(frozen=True, eq=False)
class ValueBinding:
    """``x = <expr>`` where the expression is a name chain, a call or a subscript of one."""

    expr: ast.expr


@dataclass(frozen=True, eq=False)
class AnnotatedBinding:
    """``x: T`` (a stub's declaration, or an annotated assignment): an instance of ``T``."""

    annotation: ast.expr


class Opaque(Enum):
    """A binding whose value is not worth following (a def, a literal, a loop variable)."""

    OTHER = "other"


OTHER = Opaque.OTHER

Binding = ImportBinding | FromBinding | ClassBinding | ValueBinding | AnnotatedBinding | Opaque


@dataclass(eq=False)
class ModuleSummary:
    """A module's top-level bindings and what makes its namespace open-ended."""

    name: str
    is_package: bool = False
    stub: bool = False
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    star_imports: list[str | None] = field(default_factory=list)
    exported: set[str] = field(default_factory=set)
    open: bool = False
    extends_path: bool = False
    uses_sys_modules: bool = False
    stored_attrs: set[str] = field(default_factory=set)
    damaged_names: set[str] = field(default_factory=set)
    class_cache: dict[ast.ClassDef, ClassSummary] = field(default_factory=dict)
    class_factories: dict[ast.ClassDef, Callable[[], ClassSummary]] = field(default_factory=dict)
    parent: ModuleSummary | None = None

    def bind(self, name: str, binding: Binding) -> None:
        """Record one more binding of ``name``."""
        self.bindings.setdefault(name, []).append(binding)

    def class_summary(self, node: ast.ClassDef) -> ClassSummary:
        """The scanned body of one of this module's classes (cached)."""
        parent = self.parent
        if parent is not None and node in parent.classes():
            return parent.class_summary(node)  # the cached rest of a buffer keeps its scans
        summary = self.class_cache.get(node)
        if summary is None:
            factory = self.class_factories.get(node)
            summary = factory() if factory is not None else scan_class(node)
            self.class_cache[node] = summary
        return summary

    def classes(self) -> set[ast.ClassDef]:
        """The class statements this module binds at its top level."""
        return {
            binding.node
            for found in self.bindings.values()
            for binding in found
            if isinstance(binding, ClassBinding)
        }

    def merged(self, other: ModuleSummary) -> ModuleSummary:
        """This summary plus ``other``'s bindings (the rest of a buffer plus its edited region)."""
        bindings = {name: list(found) for name, found in self.bindings.items()}
        for name, found in other.bindings.items():
            bindings.setdefault(name, []).extend(found)
        return ModuleSummary(
            name=self.name,
            is_package=self.is_package,
            stub=self.stub,
            bindings=bindings,
            star_imports=[*self.star_imports, *other.star_imports],
            exported=self.exported | other.exported,
            open=self.open or other.open,
            extends_path=self.extends_path or other.extends_path,
            uses_sys_modules=self.uses_sys_modules or other.uses_sys_modules,
            stored_attrs=self.stored_attrs | other.stored_attrs,
            damaged_names=self.damaged_names | other.damaged_names,
            class_factories={**self.class_factories, **other.class_factories},
            parent=self,
        )


def absolute_module(module: str | None, level: int, current: str, is_package: bool) -> str | None:
    """The absolute name behind a (possibly relative) ``from`` import; None if it cannot be told."""
    if level == 0:
        return module
    if not current:
        return None
    package = current if is_package else current.rpartition(".")[0]
    for _ in range(level - 1):
        if not package:
            return None
        package = package.rpartition(".")[0]
    if not package:
        return None
    return f"{package}.{module}" if module else package


def scan_module(
    body: Sequence[ast.stmt],
    *,
    name: str,
    is_package: bool = False,
    stub: bool = False,
    walk_functions: bool = True,
    damaged_names: set[str] | None = None,
) -> ModuleSummary:
    """Summarise a module's top level; ``walk_functions`` also looks for ``global`` statements.

    ``damaged_names`` are identifiers on lines dropped to make the module parse: they may
    be bound, so they are never reported missing.
    """
    summary = ModuleSummary(
        name=name, is_package=is_package, stub=stub, damaged_names=set(damaged_names or ())
    )
    scanner = _ModuleScanner(summary, walk_functions=walk_functions and not stub)
    scanner.block(body)
    scanner.finish()
    return summary


def scan_text(
    recovered: Recovered, text: str, *, name: str, is_package: bool = False, stub: bool = False
) -> ModuleSummary:
    """Summarise ``text`` from its recovering parse (``parse_recovering``): the identifiers
    on the lines it dropped are damaged, and function bodies are walked for ``global``
    statements only where the text has one."""
    return scan_module(
        recovered.tree.body,
        name=name,
        is_package=is_package,
        stub=stub,
        walk_functions="global" in text,
        damaged_names=recovered.dropped,
    )


def is_chain(expr: ast.expr) -> bool:
    """A name, or attributes, calls and subscripts of one: a value worth following."""
    while isinstance(expr, ast.Attribute | ast.Call | ast.Subscript):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return isinstance(expr, ast.Name)


def _is_call_to(node: ast.AST, *names: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names


def _is_sys_modules(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "modules"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


class _ModuleScanner:
    def __init__(self, summary: ModuleSummary, *, walk_functions: bool) -> None:
        self.summary = summary
        self.walk_functions = walk_functions
        self.literals: dict[str, set[str]] = {}
        self.getattr_functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.getattr_other = False

    def block(self, statements: Sequence[ast.stmt]) -> None:
        for statement in statements:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        summary = self.summary
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            summary.bind(node.name, OTHER)
            if node.name == "__getattr__":
                self.getattr_functions.append(node)
            if self.walk_functions:
                self.function_body(node)
        elif isinstance(node, ast.ClassDef):
            summary.bind(node.name, ClassBinding(node))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self.target(target, node.value)
                self.special_assignment(target, node.value)
            self.expressions(node.value)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expressions(node.value)
            if isinstance(node.target, ast.Name):
                self.annotated(node.target.id, node.annotation, node.value)
                self.special_assignment(node.target, node.value)
            else:
                self.target(node.target, None)
        elif isinstance(node, ast.AugAssign):
            self.target(node.target, None)
            self.special_assignment(node.target, node.value)
            self.expressions(node.value)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    summary.bind(alias.asname, ImportBinding(alias.name))
                else:
                    top = alias.name.partition(".")[0]
                    summary.bind(top, ImportBinding(top))
        elif isinstance(node, ast.ImportFrom):
            self.import_from(node)
        elif isinstance(node, ast.If | ast.While):
            self.expressions(node.test)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.target(node.target, None)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    self.target(item.optional_vars, None)
            self.block(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            self.block(node.body)
            for handler in node.handlers:
                if handler.name:
                    summary.bind(handler.name, OTHER)
                self.block(handler.body)
            self.block(node.orelse)
            self.block(node.finalbody)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                for name in pattern_names(case.pattern):
                    summary.bind(name, OTHER)
                self.block(case.body)
        elif isinstance(node, ast.Expr):
            self.expressions(node.value)

    def annotated(self, name: str, annotation: ast.expr, value: ast.expr | None) -> None:
        bare = annotation.id if isinstance(annotation, ast.Name) else None
        if isinstance(annotation, ast.Attribute):
            bare = annotation.attr
        if bare in {"TypeAlias", "Final", "ClassVar", "Any"}:
            self.summary.bind(name, ValueBinding(value) if value and is_chain(value) else OTHER)
        else:
            self.summary.bind(name, AnnotatedBinding(annotation))
        strings = literal_strings(value)
        if strings is not None:
            self.literals[name] = strings

    def import_from(self, node: ast.ImportFrom) -> None:
        summary = self.summary
        source = absolute_module(node.module, node.level, summary.name, summary.is_package)
        for alias in node.names:
            if alias.name == "*":
                summary.star_imports.append(source)
                continue
            bound = alias.asname or alias.name
            summary.bind(bound, FromBinding(source, alias.name) if source else OTHER)

    def target(self, target: ast.expr, value: ast.expr | None) -> None:
        summary = self.summary
        if isinstance(target, ast.Name):
            summary.bind(target.id, ValueBinding(value) if value and is_chain(value) else OTHER)
            strings = literal_strings(value)
            if strings is not None:
                self.literals[target.id] = strings
            if target.id == "__getattr__":
                self.getattr_other = True
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.target(element, None)
        elif isinstance(target, ast.Starred):
            self.target(target.value, None)
        elif isinstance(target, ast.Attribute):
            summary.stored_attrs.add(target.attr)
        elif isinstance(target, ast.Subscript):
            if _is_call_to(target.value, "globals", "vars"):
                summary.open = True
            elif _is_sys_modules(target.value):
                summary.uses_sys_modules = True
                key = target.slice
                if isinstance(key, ast.Name) and key.id == "__name__":
                    summary.open = True

    def special_assignment(self, target: ast.expr, value: ast.expr | None) -> None:
        if not isinstance(target, ast.Name):
            return
        if target.id == "__all__":
            self.summary.exported |= literal_strings(value) or set()
        elif target.id == "__path__":
            self.summary.extends_path = True

    def expressions(self, node: ast.expr) -> None:
        summary = self.summary
        for inner in ast.walk(node):
            if isinstance(inner, ast.NamedExpr) and isinstance(inner.target, ast.Name):
                summary.bind(inner.target.id, OTHER)
            elif isinstance(inner, ast.Call):
                self.call(inner)
            elif _is_sys_modules(inner):
                summary.uses_sys_modules = True

    def call(self, node: ast.Call) -> None:
        summary = self.summary
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value
            if isinstance(owner, ast.Name) and owner.id == "__all__":
                for argument in node.args:
                    summary.exported |= literal_strings(argument) or set()
            elif isinstance(owner, ast.Name) and owner.id == "__path__":
                summary.extends_path = True
            elif _is_call_to(owner, "globals", "vars") and func.attr in {
                "update",
                "setdefault",
                "__setitem__",
            }:
                summary.open = True
        elif isinstance(func, ast.Name) and func.id == "setattr" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Subscript) and _is_sys_modules(first.value):
                summary.open = True

    def function_body(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        summary = self.summary
        for inner in ast.walk(node):
            if isinstance(inner, ast.Global):
                for name in inner.names:
                    summary.bind(name, OTHER)
            elif isinstance(inner, ast.Subscript) and isinstance(inner.ctx, ast.Store):
                if _is_call_to(inner.value, "globals"):
                    summary.open = True
            elif isinstance(inner, ast.Call):
                self.call(inner)

    def finish(self) -> None:
        summary = self.summary
        if self.getattr_other:
            summary.open = True
        for function in self.getattr_functions:
            extra = getattr_names(function, self.literals)
            if extra is None:
                summary.open = True
            else:
                summary.exported |= extra


def pattern_names(pattern: ast.pattern) -> list[str]:
    """The names a ``case`` pattern captures."""
    names: list[str] = []
    for node in ast.walk(pattern):
        if isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            names.append(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.append(node.rest)
    return names
