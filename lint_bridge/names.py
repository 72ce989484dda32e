"""Known symbols: every name and attribute chain an inserted Python text references must exist.

Names resolve through the enclosing scopes, the module, builtins and imports; attributes
are checked wherever the value's type is known statically (a module, a class, ``self``,
a parameter annotated with a class, a variable assigned from a constructor). Values of
unknown type are never flagged.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable
from pathlib import Path

from lint_bridge.api import Reason, Splice
from lint_bridge.buffer_parse import ParsedEdit, Positions, parse_edit, parse_shell, parse_whole
from lint_bridge.class_scan import ClassSummary, body_names, extend_class, scan_class
from lint_bridge.module_scan import (
    AnnotatedBinding,
    ClassBinding,
    FromBinding,
    ImportBinding,
    ModuleSummary,
    Opaque,
    ValueBinding,
    absolute_module,
    scan_module,
)
from lint_bridge.resolve import BUILTIN_NAMES, ModuleResolver
from lint_bridge.scopes import (
    LocalClass,
    Param,
    Reference,
    ReferenceKind,
    Scope,
    ScopeBuilder,
    dotted_name,
)
from lint_bridge.values import (
    MISSING,
    UNKNOWN,
    ClassInfo,
    ClassValue,
    InstanceValue,
    ModuleValue,
    Value,
)

logger = logging.getLogger(__name__)

KnownSymbols = Callable[[str], bool | None]


def unknown_symbols(
    after: str,
    splice: Splice,
    *,
    path: Path | None,
    resolver: ModuleResolver,
    module: str | None = None,
    known_symbols: KnownSymbols | None = None,
) -> list[Reason]:
    """Unknown names, attributes and imports in the inserted text of a Python buffer.

    ``after`` is the edited buffer; the inserted text is ``after[splice.start:splice.new_end]``.
    Returns [] when the inserted text does not parse (the syntax check reports that).
    """
    if not splice.text.strip():
        return []
    positions = Positions(after)
    first = positions.line_of(splice.start)
    last = positions.line_of(max(splice.start, splice.new_end - 1))
    name, is_package = _identity(path, module, resolver)

    def shells(source: str, pass_line: int) -> ast.ClassDef | None:
        return resolver.memo(("shell", source, pass_line), lambda: parse_shell(source, pass_line))

    parsed = parse_edit(after, first, last, shell_parser=shells)
    if parsed is None:
        return []
    built = _buffer_summary(after, parsed, resolver, name, is_package)
    if built is None:
        parsed = parse_whole(after, first, last)
        if parsed is None:
            return []
        built = _buffer_summary(after, parsed, resolver, name, is_package)
        if built is None:
            return []
    summary, inside = built
    inside_names: set[str] = set()
    shell = parsed.shell
    if shell is not None:
        inside_names = resolver.memo(
            ("shell-names", parsed.shell_text), lambda: body_names(shell.body)
        )
    checker = _Checker(resolver, summary, positions, splice, known_symbols, name, is_package)
    rest = parsed.outside if parsed.outside is not None else after
    checker.stored |= resolver.memo(("stores", rest), lambda: _stored_attributes(rest))
    return checker.run(parsed, (first + 1, last + 1), inside, inside_names)


_STORE = re.compile(r"\b(?!self\b|cls\b)[A-Za-z_]\w*\.([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)")


def _stored_attributes(text: str) -> set[str]:
    """Attributes the buffer sets on objects other than ``self`` (``app.extra = 1``): values
    of a known class may carry them, so they are never reported."""
    return set(_STORE.findall(text))


def _identity(path: Path | None, module: str | None, resolver: ModuleResolver) -> tuple[str, bool]:
    is_package = path is not None and path.stem == "__init__"
    if module is not None:
        return module, is_package
    if path is not None:
        found = resolver.module_name_for(path)
        if found is not None:
            return found
    return "", is_package


def _buffer_summary(
    after: str, parsed: ParsedEdit, resolver: ModuleResolver, name: str, is_package: bool
) -> tuple[ModuleSummary, ClassInfo | None] | None:
    """The buffer's module summary, and the class the edited statements are members of."""
    walk = "global" in after
    if parsed.body is not None:
        summary = scan_module(
            parsed.body,
            name=name,
            is_package=is_package,
            walk_functions=walk,
            damaged_names=parsed.dropped,
        )
        return summary, None
    outside = resolver.source_summary(parsed.outside or "", name, is_package, seam=parsed.seam)
    if outside is None:
        return None
    shell = parsed.shell
    if shell is None:
        region = scan_module(
            parsed.region,
            name=name,
            is_package=is_package,
            walk_functions=walk,
            damaged_names=parsed.dropped,
        )
        return outside.merged(region), None
    # The class as edited: a new node (so per-node caches never mix one candidate's class
    # with another's) whose scan is the cached shell's plus the edited members', made only
    # if an attribute check needs it.
    combined = ast.ClassDef(
        name=shell.name,
        bases=shell.bases,
        keywords=shell.keywords,
        body=[*shell.body, *parsed.region],
        decorator_list=shell.decorator_list,
    )
    edited = scan_module([combined], name=name, is_package=is_package, damaged_names=parsed.dropped)
    summary = outside.merged(edited)

    def scan() -> ClassSummary:
        scanned = resolver.memo(("shell-scan", parsed.shell_text), lambda: scan_class(shell))
        return extend_class(scanned, parsed.region, shell.name)

    summary.class_factories[combined] = scan
    return summary, ClassInfo(summary, combined, shell.name)


class _ScopeNamespace:
    def __init__(self, checker: _Checker, scope: Scope) -> None:
        self.checker = checker
        self.scope = scope

    def value_of(self, name: str) -> Value:
        return self.checker.name_value(name, self.scope, need_value=True)


def _abstract_self(owner: ClassInfo) -> bool:
    """Protocols and mixins: their methods use attributes that the classes using them define."""
    if "Mixin" in owner.qualname.rpartition(".")[2]:
        return True
    for base in owner.node.bases:
        target = base.value if isinstance(base, ast.Subscript) else base
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "Protocol":
            return True
    return False


def _render(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_render(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_render(node.func)}()"
    if isinstance(node, ast.Subscript):
        return f"{_render(node.value)}[]"
    return "…"


class _Checker:
    def __init__(
        self,
        resolver: ModuleResolver,
        summary: ModuleSummary,
        positions: Positions,
        splice: Splice,
        known_symbols: KnownSymbols | None,
        module: str,
        is_package: bool,
    ) -> None:
        self.resolver = resolver
        self.summary = summary
        self.positions = positions
        self.start = splice.start
        self.end = splice.new_end
        self.known_symbols = known_symbols
        self.module = module
        self.is_package = is_package
        self.values: dict[int, Value] = {}
        self.inferring: set[tuple[int, str]] = set()
        self.stored: set[str] = set(summary.stored_attrs)
        self.reasons: list[Reason] = []
        self.narrowed: set[str] = set()

    def run(
        self,
        parsed: ParsedEdit,
        lines: tuple[int, int],
        inside: ClassInfo | None,
        inside_names: set[str],
    ) -> list[Reason]:
        builder = ScopeBuilder(
            self.summary,
            self.in_edit,
            lines=lines,
            module=self.module,
            is_package=self.is_package,
        )
        references = builder.build(parsed.region, inside, inside_names)
        self.stored |= builder.stored_attributes
        self.narrowed = builder.narrowed
        for reference in references:
            if reference.kind == "name":
                self.check_name(reference)
            elif reference.kind == "attribute":
                self.check_attribute(reference)
            else:
                self.check_import(reference)
        return self.reasons

    def in_edit(self, node: ast.AST, kind: ReferenceKind) -> bool:
        """Whether a reference overlaps the inserted text (an attribute: its name part)."""
        end_lineno = getattr(node, "end_lineno", None)
        end_column = getattr(node, "end_col_offset", None)
        if end_lineno is None or end_column is None:
            return False
        end = self.positions.offset(end_lineno, end_column)
        if isinstance(node, ast.Attribute):
            begin = end - len(node.attr)
        else:
            lineno, column = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
            begin = self.positions.offset(lineno, column)
        return begin < self.end and end > self.start

    # Names -------------------------------------------------------------------------------

    def name_value(self, name: str, scope: Scope, *, need_value: bool) -> Value:
        """What ``name`` means in ``scope``: local, enclosing, module, builtin, or MISSING."""
        current: Scope | None = scope
        while current is not None and current.kind != "module":
            if name in current.declared_global:
                break
            if name in current.sites and name not in current.declared_nonlocal:
                return self.infer(current, name) if need_value else UNKNOWN
            if current.kind == "class" and name in {"__qualname__", "__module__"}:
                return UNKNOWN
            if current.kind == "function" and current.method_of and name == "__class__":
                return ClassValue(current.method_of)
            parent = current.parent
            if current.kind == "function":
                while parent is not None and parent.kind == "class":
                    parent = parent.parent
            current = parent
        value = self.resolver.member(self.summary, name)
        if value is not MISSING:
            return value
        if name in BUILTIN_NAMES and not need_value:
            return UNKNOWN
        return self.resolver.builtin(name)

    def infer(self, scope: Scope, name: str) -> Value:
        """A local's value when every binding agrees (annotations win); UNKNOWN otherwise."""
        key = (id(scope), name)
        if key in self.inferring:
            return UNKNOWN
        self.inferring.add(key)
        try:
            sites = scope.sites[name]
            declared = [
                site
                for site in sites
                if isinstance(site.binding, AnnotatedBinding)
                or (isinstance(site.binding, Param) and site.binding.annotation is not None)
            ]
            values = {self.site_value(site.binding, site.scope) for site in declared or sites}
            return values.pop() if len(values) == 1 else UNKNOWN
        finally:
            self.inferring.discard(key)

    def site_value(self, binding: object, scope: Scope) -> Value:
        namespace = _ScopeNamespace(self, scope)
        if isinstance(binding, Param):
            if binding.annotation is not None:
                return self.resolver.annotation(binding.annotation, namespace)
            owner = binding.owner
            if owner is None or _abstract_self(owner):
                return UNKNOWN
            return ClassValue(owner) if binding.is_class else InstanceValue(owner)
        if isinstance(binding, LocalClass):
            return ClassValue(binding.info)
        if isinstance(binding, AnnotatedBinding):
            return self.resolver.annotation(binding.annotation, namespace)
        if isinstance(binding, ValueBinding):
            value = self.resolver.evaluate(binding.expr, namespace)
            return UNKNOWN if value is MISSING else value
        if isinstance(binding, ImportBinding | FromBinding | ClassBinding):
            return self.resolver.binding_value(self.summary, binding)
        assert isinstance(binding, Opaque)
        return UNKNOWN

    def check_name(self, reference: Reference) -> None:
        node = reference.node
        assert isinstance(node, ast.Name)
        if self.name_value(node.id, reference.scope, need_value=False) is MISSING:
            self.report(node, node.id, f"name '{node.id}' is not defined")

    # Attributes --------------------------------------------------------------------------

    def value(self, node: ast.expr, scope: Scope) -> Value:
        """The value of an expression in the buffer (memoised per node for long chains)."""
        cached = self.values.get(id(node))
        if cached is not None:
            return cached
        value: Value = UNKNOWN
        if dotted_name(node) in self.narrowed:
            value = UNKNOWN  # isinstance() and friends may have narrowed it
        elif isinstance(node, ast.Name):
            value = self.name_value(node.id, scope, need_value=True)
        elif isinstance(node, ast.Attribute):
            value = self.resolver.attribute(self.value(node.value, scope), node.attr)
        elif isinstance(node, ast.Call):
            value = self.resolver.call(self.value(node.func, scope))
        if value is MISSING:
            value = UNKNOWN
        self.values[id(node)] = value
        return value

    def check_attribute(self, reference: Reference) -> None:
        node = reference.node
        assert isinstance(node, ast.Attribute)
        owner = self.value(node.value, reference.scope)
        if self.resolver.attribute(owner, node.attr) is not MISSING:
            return
        if node.attr in self.stored:
            return
        if isinstance(owner, ModuleValue):
            dotted, message = owner.name, f"module '{owner.name}' has no attribute '{node.attr}'"
        elif isinstance(owner, ClassValue):
            dotted = owner.cls.dotted
            message = f"class '{owner.cls.qualname}' has no attribute '{node.attr}'"
        elif isinstance(owner, InstanceValue):
            dotted = owner.cls.dotted
            message = f"'{owner.cls.qualname}' object has no attribute '{node.attr}'"
        else:
            return
        if self.known(f"{dotted}.{node.attr}"):
            return
        if not isinstance(owner, ModuleValue) and self.subclass_defines(owner.cls, node.attr):
            return
        self.report(node, _render(node), message)

    def subclass_defines(self, cls: ClassInfo, name: str) -> bool:
        """Whether a subclass in this module defines ``name``.

        A base class often uses attributes its subclasses define (``self._flavour`` in
        ``PurePath``, mixins' ``self.tk``): such a name is not reported.
        """
        for bindings in self.summary.bindings.values():
            for binding in bindings:
                if not isinstance(binding, ClassBinding) or binding.node is cls.node:
                    continue
                facts = self.resolver.class_facts(
                    ClassInfo(self.summary, binding.node, binding.node.name)
                )
                if cls in facts.ancestors and (facts.open or name in facts.names):
                    return True
        return False

    def known(self, dotted: str) -> bool:
        """Whether the repository's symbol table vouches for a dotted name."""
        return self.known_symbols is not None and self.known_symbols(dotted) is True

    # Imports -----------------------------------------------------------------------------

    def module_exists(self, name: str) -> bool | None:
        exists = self.resolver.module_exists(name)
        if exists is not True and self.known(name):
            return True
        return exists

    def check_import(self, reference: Reference) -> None:
        node = reference.node
        if reference.guarded:
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if self.missing_module(alias.name):
                    self.report(alias, alias.name, f"no module named '{alias.name}'")
            return
        assert isinstance(node, ast.ImportFrom)
        source = absolute_module(node.module, node.level, self.module, self.is_package)
        if source is None:
            return
        exists = self.module_exists(source)
        if exists is False:
            if self.missing_module(source):
                self.report(node, source, f"no module named '{source}'")
            return
        if exists is None:
            return
        summary = self.resolver.summary(source)
        for alias in node.names:
            if alias.name == "*":
                continue
            dotted = f"{source}.{alias.name}"
            if summary is not None:
                found = self.resolver.member(summary, alias.name) is not MISSING
            elif self.resolver.module_exists(source):
                continue
            else:
                # Only the repository's index knows this module: its table decides.
                found = self.known_symbols is None or self.known_symbols(dotted) is not False
            if found or self.known(dotted) or self.module_exists(dotted):
                continue
            self.report(alias, dotted, f"cannot import name '{alias.name}' from '{source}'")

    def missing_module(self, name: str) -> bool:
        """Whether ``import name`` would fail, for a package the rest of the buffer does not
        already import (that one is the user's, only not installed where we look)."""
        if self.module_exists(name) is not False:
            return False
        top = name.partition(".")[0]
        if self.module_exists(top) is not False:
            return True
        rest = self.positions.text[: self.start] + self.positions.text[self.end :]
        pattern = rf"^[ \t]*(?:import|from)[ \t]+{re.escape(top)}\b"
        return re.search(pattern, rest, re.MULTILINE) is None

    def report(self, node: ast.AST, symbol: str, message: str) -> None:
        lineno = getattr(node, "lineno", 1)
        column = self.positions.column(lineno, getattr(node, "col_offset", 0))
        self.reasons.append(
            Reason(
                kind="unknown-symbol",
                code="unknown-symbol",
                message=message,
                symbol=symbol,
                line=lineno - 1,
                column=column,
            )
        )
