"""A class's attributes with its bases' and metaclass's: what ``self.x`` and ``Cls.x`` may name."""

from __future__ import annotations

import ast
import builtins
import logging
from collections.abc import Callable
from typing import Protocol

from lint_bridge.class_scan import decorator_name
from lint_bridge.module_scan import ModuleSummary
from lint_bridge.values import ClassFacts, ClassInfo, ClassValue, Namespace, Value

logger = logging.getLogger(__name__)

OBJECT_ATTRS = frozenset(dir(builtins.object)) | {
    "__dict__",
    "__module__",
    "__weakref__",
    "__slots__",
}
_NO_BASE = frozenset({"object", "Generic", "Protocol"})
_DICT_BASES = frozenset({"TypedDict"})
_PLAIN_METACLASSES = frozenset({"type", "ABCMeta", "EnumMeta", "EnumType"})


class Evaluator(Protocol):
    """What computing a class's facts needs from the resolver."""

    def namespace(self, summary: ModuleSummary) -> Namespace:
        """Names as the class's module sees them."""
        ...

    def evaluate(self, expr: ast.expr, namespace: Namespace) -> Value:
        """The value of a base-class or metaclass expression."""
        ...

    def builtin(self, name: str) -> Value:
        """A builtin's value."""
        ...


def compute_facts(
    cls: ClassInfo,
    resolver: Evaluator,
    facts_of: Callable[[ClassInfo], ClassFacts],
    origin: tuple[str, int, int] | None,
) -> ClassFacts:
    """The facts of ``cls``: its body's names, its bases' (through ``facts_of``), its metaclass's.

    ``origin`` (path, mtime, size) is the class's file when it may change under us.
    """
    scanned = cls.summary.class_summary(cls.node)
    stub = cls.summary.stub
    names = set(scanned.names) | OBJECT_ATTRS
    is_open = scanned.open
    plain = not scanned.custom_new
    dynamic = scanned.init_subclass and not stub
    deps: set[tuple[str, int, int]] = {origin} if origin is not None else set()
    nested: dict[str, ClassInfo] = {}
    declared: dict[str, tuple[ClassInfo, ast.expr | None]] = {}
    stubbed: set[ClassInfo] = {cls} if stub else set()
    ancestors: set[ClassInfo] = set()
    namespace = resolver.namespace(cls.summary)
    for base in scanned.bases:
        target = base.value if isinstance(base, ast.Subscript) else base
        label = decorator_name(target)
        if label in _NO_BASE and isinstance(target, ast.Name | ast.Attribute):
            continue
        if label in _DICT_BASES:
            value = resolver.builtin("dict")
        else:
            value = resolver.evaluate(target, namespace)
        if not isinstance(value, ClassValue):
            is_open = True
            continue
        if value.cls.qualname == "type" and value.cls.summary.name == "builtins":
            is_open = True
        inherited = facts_of(value.cls)
        names |= inherited.names
        is_open |= inherited.open or inherited.dynamic_subclassing
        plain &= inherited.plain_constructor
        stubbed |= inherited.stubbed
        nested.update(inherited.nested)
        for name, declaration in inherited.declared.items():
            declared.setdefault(name, declaration)  # the first base wins, as in the MRO
        deps.update(inherited.deps)
        ancestors |= {value.cls, *inherited.ancestors}
    if scanned.metaclass is not None:
        meta = resolver.evaluate(scanned.metaclass, namespace)
        if isinstance(meta, ClassValue):
            meta_facts = facts_of(meta.cls)
            names |= meta_facts.names
            plain &= not meta_facts.defines_call
            deps.update(meta_facts.deps)
            if not stub and meta.cls.qualname not in _PLAIN_METACLASSES:
                is_open = True
        else:
            is_open = True
    declared.update((name, (cls, expr)) for name, expr in scanned.declared.items())
    for name, node in scanned.nested.items():
        nested[name] = ClassInfo(cls.summary, node, f"{cls.qualname}.{name}")
    return ClassFacts(
        names=frozenset(names),
        open=is_open,
        nested=nested,
        plain_constructor=plain,
        dynamic_subclassing=dynamic,
        defines_call=scanned.defines_call,
        stubbed=frozenset(stubbed),
        ancestors=frozenset(ancestors),
        declared=declared,
        deps=tuple(sorted(deps)),
    )
