"""Scopes of the edited statements: what each function, class and comprehension binds.

Binding is flow-insensitive: a name assigned anywhere in a function is local to all of
it, as Python's compiler decides. The builder also collects the references that lie in
the inserted text, for the checker to resolve once every binding is known.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lint_bridge.class_scan import is_class_method, is_static_method
from lint_bridge.module_scan import (
    OTHER,
    AnnotatedBinding,
    Binding,
    FromBinding,
    ImportBinding,
    ModuleSummary,
    ValueBinding,
    absolute_module,
    is_chain,
    pattern_names,
)
from lint_bridge.values import ClassInfo

logger = logging.getLogger(__name__)

ScopeKind = Literal["module", "class", "function", "comprehension"]
ReferenceKind = Literal["name", "attribute", "import"]

_BARE_ANNOTATIONS = frozenset({"TypeAlias", "Final", "ClassVar", "Any"})


@dataclass(frozen=True)
class Param:
    """A function parameter; ``owner`` is set for the ``self``/``cls`` of a method."""

    annotation: ast.expr | None
    owner: ClassInfo | None = None
    is_class: bool = False


@dataclass(frozen=True)
class LocalClass:
    """A class statement inside a function or class."""

    info: ClassInfo


SiteBinding = Binding | Param | LocalClass


@dataclass(eq=False)
class Scope:
    """One scope's bindings; ``method_of`` is the class a function is a method of."""

    kind: ScopeKind
    parent: Scope | None = None
    sites: dict[str, list[Site]] = field(default_factory=dict)
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)
    class_info: ClassInfo | None = None
    method_of: ClassInfo | None = None

    def bind(self, name: str, binding: SiteBinding, where: Scope | None = None) -> None:
        """Record a binding; its expressions are evaluated in ``where`` (default: here)."""
        self.sites.setdefault(name, []).append(Site(binding, where or self))


@dataclass(frozen=True, eq=False)
class Site:
    """One binding of a name, with the scope its expressions are evaluated in."""

    binding: SiteBinding
    scope: Scope


@dataclass(frozen=True, eq=False)
class Reference:
    """A name, attribute or import in the inserted text, and the scope it is in.

    ``guarded``: an import inside ``try: ... except ImportError`` (an optional dependency).
    """

    kind: ReferenceKind
    node: ast.AST
    scope: Scope
    guarded: bool = False


InEdit = Callable[[ast.AST, ReferenceKind], bool]


_VERSION_FLAG = re.compile(r"(?i)^_?(PY|PYTHON)_?\d|^(IS_)?(WIN|WINDOWS|MACOS|LINUX|POSIX)$")
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
# Calls after which a name may hold a narrower type than its annotation or constructor says.
_NARROWING = frozenset({"isinstance", "issubclass", "hasattr", "type", "callable"})


def _catches_import_error(handler: ast.expr | None) -> bool:
    if handler is None:
        return True
    names = handler.elts if isinstance(handler, ast.Tuple) else [handler]
    return any(
        (node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", ""))
        in _IMPORT_ERRORS
        for node in names
    )


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of plain attribute lookups on a name; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted_name(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def _is_version_test(test: ast.expr) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr in {"version_info", "platform"}:
            return True
        if isinstance(node, ast.Name) and _VERSION_FLAG.match(node.id):
            return True
    return False


def _suppresses_import_error(expr: ast.expr) -> bool:
    if not isinstance(expr, ast.Call):
        return False
    func = expr.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "suppress" and any(_catches_import_error(arg) for arg in expr.args)


class ScopeBuilder(ast.NodeVisitor):
    """Walks the edited statements once, building scopes and collecting references."""

    def __init__(
        self,
        summary: ModuleSummary,
        in_edit: InEdit,
        *,
        lines: tuple[int, int],
        module: str,
        is_package: bool,
    ) -> None:
        self.summary = summary
        self.in_edit = in_edit
        self.first_line, self.last_line = lines
        self.module = module
        self.is_package = is_package
        self.module_scope = Scope("module")
        self.scope = self.module_scope
        self.references: list[Reference] = []
        self.stored_attributes: set[str] = set()
        self.narrowed: set[str] = set()
        self.guarded = 0

    def build(
        self,
        statements: Sequence[ast.stmt],
        inside: ClassInfo | None = None,
        inside_names: set[str] | None = None,
    ) -> list[Reference]:
        """Visit the statements; returns the references found in the inserted text.

        With ``inside``, the statements are members of that class, whose other members
        bind ``inside_names``.
        """
        if inside is not None:
            self.scope = Scope("class", parent=self.module_scope, class_info=inside)
            for name in inside_names or ():
                self.scope.bind(name, OTHER)
        for statement in statements:
            self.visit(statement)
        return self.references

    def _untouched(self, node: ast.stmt | ast.expr) -> bool:
        """Whether a definition lies wholly outside the edited lines (1-based, inclusive)."""
        first = node.lineno
        for decorator in getattr(node, "decorator_list", ()):
            first = min(first, decorator.lineno)
        return first > self.last_line or (node.end_lineno or node.lineno) < self.first_line

    def _bind(self, name: str, binding: SiteBinding) -> None:
        if self.scope.kind != "module":
            self.scope.bind(name, binding)

    def _visit_all(self, nodes: Sequence[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def _enter(self, scope: Scope, body: Sequence[ast.AST]) -> None:
        outer, self.scope = self.scope, scope
        try:
            self._visit_all(body)
        finally:
            self.scope = outer

    # Definitions -------------------------------------------------------------------------

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if self._untouched(node):
            # Nothing in its body is checked, and its locals are not visible outside it.
            self._bind(node.name, OTHER)
            return
        arguments = node.args
        self._visit_all(node.decorator_list)
        self._visit_all([*arguments.defaults, *arguments.kw_defaults])
        annotated = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        annotated += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        self._visit_all([*(a.annotation for a in annotated), node.returns])
        self._bind(node.name, OTHER)
        owner = self.scope.class_info if self.scope.kind == "class" else None
        if is_static_method(node):
            owner = None
        scope = Scope("function", parent=self.scope, method_of=owner)
        self._parameters(scope, arguments, owner, classy=is_class_method(node), annotated=True)
        self._enter(scope, node.body)

    def _parameters(
        self,
        scope: Scope,
        arguments: ast.arguments,
        owner: ClassInfo | None,
        *,
        classy: bool,
        annotated: bool,
    ) -> None:
        """Bind parameters; the first positional one of a method is ``self`` (or ``cls``)."""
        for index, argument in enumerate([*arguments.posonlyargs, *arguments.args]):
            annotation = argument.annotation if annotated else None
            first = owner if index == 0 else None
            scope.bind(argument.arg, Param(annotation, first, classy), self.scope)
        for argument in arguments.kwonlyargs:
            scope.bind(argument.arg, Param(argument.annotation if annotated else None), self.scope)
        for rest in (arguments.vararg, arguments.kwarg):
            if rest is not None:
                scope.bind(rest.arg, Param(None), self.scope)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_all([*node.args.defaults, *node.args.kw_defaults])
        scope = Scope("function", parent=self.scope)
        self._parameters(scope, node.args, None, classy=False, annotated=False)
        self._enter(scope, [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer = self.scope.class_info if self.scope.kind == "class" else None
        qualname = f"{outer.qualname}.{node.name}" if outer else node.name
        info = ClassInfo(self.summary, node, qualname)
        self._bind(node.name, LocalClass(info))
        if self._untouched(node):
            return
        self._visit_all([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)])
        self._enter(Scope("class", parent=self.scope, class_info=info), node.body)

    def _comprehension(
        self, generators: list[ast.comprehension], results: Sequence[ast.expr]
    ) -> None:
        self.visit(generators[0].iter)
        scope = Scope("comprehension", parent=self.scope)
        outer, self.scope = self.scope, scope
        try:
            for index, generator in enumerate(generators):
                if index:
                    self.visit(generator.iter)
                self.visit(generator.target)
                self._visit_all(generator.ifs)
            self._visit_all(results)
        finally:
            self.scope = outer

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node.generators, [node.elt])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node.generators, [node.elt])

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node.generators, [node.elt])

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node.generators, [node.key, node.value])

    # Bindings ----------------------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._bind(target.id, ValueBinding(node.value) if is_chain(node.value) else OTHER)
            else:
                self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._visit_all([node.annotation, node.value])
        target = node.target
        if not isinstance(target, ast.Name):
            self.visit(target)
            return
        bare = node.annotation
        label = bare.attr if isinstance(bare, ast.Attribute) else getattr(bare, "id", None)
        if label in _BARE_ANNOTATIONS:
            value = node.value
            self._bind(target.id, ValueBinding(value) if value and is_chain(value) else OTHER)
        else:
            self._bind(target.id, AnnotatedBinding(node.annotation))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._bind(node.target.id, OTHER)
        else:
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        binding = ValueBinding(node.value) if is_chain(node.value) else OTHER
        scope = self.scope
        while scope.kind == "comprehension" and scope.parent is not None:
            scope.bind(node.target.id, OTHER)
            scope = scope.parent
        if scope.kind != "module":
            scope.bind(node.target.id, binding, self.scope)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name, OTHER)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.declared_global.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.declared_nonlocal.update(node.names)

    def _patterns(self, node: ast.pattern) -> None:
        for name in pattern_names(node):
            self._bind(name, OTHER)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._patterns(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self._patterns(node)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._patterns(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self._bind(alias.asname, ImportBinding(alias.name))
            else:
                top = alias.name.partition(".")[0]
                self._bind(top, ImportBinding(top))
        if self.in_edit(node, "import"):
            self.references.append(Reference("import", node, self.scope, self.guarded > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = absolute_module(node.module, node.level, self.module, self.is_package)
        for alias in node.names:
            if alias.name != "*":
                bound = alias.asname or alias.name
                self._bind(bound, FromBinding(source, alias.name) if source else OTHER)
        if self.in_edit(node, "import"):
            self.references.append(Reference("import", node, self.scope, self.guarded > 0))

    def _guarded_visit(self, body: Sequence[ast.AST], guarded: bool) -> None:
        self.guarded += guarded
        try:
            self._visit_all(body)
        finally:
            self.guarded -= guarded

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        test = node.test
        label = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
        # Imports only type checkers run, or only some Python versions or platforms run:
        # what they name need not be installed here.
        gated = _is_version_test(test)
        self._guarded_visit(node.body, gated or label == "TYPE_CHECKING")
        self._guarded_visit(node.orelse, gated)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(handler.type) for handler in node.handlers)
        self._guarded_visit(node.body, guarded)
        self._visit_all([*node.handlers, *node.orelse, *node.finalbody])

    def visit_TryStar(self, node: ast.TryStar) -> None:
        guarded = any(_catches_import_error(handler.type) for handler in node.handlers)
        self._guarded_visit(node.body, guarded)
        self._visit_all([*node.handlers, *node.orelse, *node.finalbody])

    def visit_With(self, node: ast.With) -> None:
        self._visit_all(node.items)
        suppressing = any(_suppresses_import_error(item.context_expr) for item in node.items)
        self._guarded_visit(node.body, suppressing)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _NARROWING and node.args:
            subject = dotted_name(node.args[0])
            if subject is not None:
                self.narrowed.add(subject)
        self.generic_visit(node)

    def visit_Match(self, node: ast.Match) -> None:
        subject = dotted_name(node.subject)
        if subject is not None:
            self.narrowed.add(subject)
        self.generic_visit(node)

    # References --------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if self.in_edit(node, "name"):
                self.references.append(Reference("name", node, self.scope))
        else:
            self._bind(node.id, OTHER)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Store):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in {"self", "cls"}):
                self.stored_attributes.add(node.attr)
        elif self.in_edit(node, "attribute"):
            self.references.append(Reference("attribute", node, self.scope))
        self.visit(node.value)
