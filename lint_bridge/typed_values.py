"""What an annotation or a constructor call says a value is: an instance of a known class."""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable

from lint_bridge.class_scan import decorator_name
from lint_bridge.values import UNKNOWN, ClassInfo, ClassValue, InstanceValue, Namespace, Value

logger = logging.getLogger(__name__)

Evaluate = Callable[[ast.expr, Namespace], Value]

ABSTRACT_MODULES = frozenset(
    {"typing", "typing_extensions", "collections.abc", "_collections_abc", "_typeshed"}
)
_UNWRAP = frozenset({"Optional", "Final", "ClassVar", "Annotated", "Required", "NotRequired"})


def annotation_value(expr: ast.expr, namespace: Namespace, evaluate: Evaluate) -> Value:
    """An instance of the class an annotation names (``Optional[X]`` and ``X | None``: X).

    Unions of several classes, protocols, ABCs and anything else: UNKNOWN.
    """
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        try:
            parsed = ast.parse(expr.value.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError):
            return UNKNOWN
        return annotation_value(parsed, namespace, evaluate)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        parts = [p for p in (expr.left, expr.right) if not _is_none(p)]
        return annotation_value(parts[0], namespace, evaluate) if len(parts) == 1 else UNKNOWN
    if isinstance(expr, ast.Subscript):
        label = decorator_name(expr.value)
        items = expr.slice.elts if isinstance(expr.slice, ast.Tuple) else [expr.slice]
        if label in _UNWRAP and items:
            return annotation_value(items[0], namespace, evaluate)
        if label == "Union":
            kept = [item for item in items if not _is_none(item)]
            return annotation_value(kept[0], namespace, evaluate) if len(kept) == 1 else UNKNOWN
        if label in {"type", "Type"} and len(items) == 1:
            value = annotation_value(items[0], namespace, evaluate)
            return ClassValue(value.cls) if isinstance(value, InstanceValue) else UNKNOWN
    if isinstance(expr, ast.Name | ast.Attribute | ast.Subscript):
        if decorator_name(expr) in {"Any", "Self", "TypeAlias", "Final", "ClassVar"}:
            return UNKNOWN
        value = evaluate(expr, namespace)
        if isinstance(value, ClassValue) and not duck_typed(value.cls):
            return instance_of(value.cls)
    return UNKNOWN


def instance_of(cls: ClassInfo) -> Value:
    """An instance of ``cls``; instances of ``type`` (classes) and ``super`` proxies: unknown."""
    if cls.summary.name == "builtins" and cls.qualname in {"type", "super"}:
        return UNKNOWN
    return InstanceValue(cls)


def duck_typed(cls: ClassInfo) -> bool:
    """``typing``'s and ``collections.abc``'s protocols and ABCs: a value annotated with one
    (``Iterable``, ``Mapping``) is usually a richer concrete type."""
    return cls.summary.name in ABSTRACT_MODULES


def _is_none(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is None
