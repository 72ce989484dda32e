"""What a module-level ``__getattr__`` answers, when it plainly lists the names (shims)."""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def literal_strings(node: ast.expr | None) -> set[str] | None:
    """The strings of a literal string, tuple, list, set or dict (its keys); None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items: Iterable[ast.expr | None] = node.elts
    elif isinstance(node, ast.Dict):
        items = node.keys
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"frozenset", "set", "tuple", "list"}
        and len(node.args) == 1
    ):
        return literal_strings(node.args[0])
    else:
        return None
    found: set[str] = set()
    for item in items:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            found.add(item.value)
    return found


def getattr_names(
    function: ast.FunctionDef | ast.AsyncFunctionDef, literals: dict[str, set[str]]
) -> set[str] | None:
    """The names a module ``__getattr__`` answers, when it plainly lists them; None otherwise.

    It must end by raising ``AttributeError`` and return only under ``if name == "x"``
    (or ``name in (...)``) tests, as deprecation shims do.
    """
    arguments = [*function.args.posonlyargs, *function.args.args]
    if not arguments or not function.body:
        return None
    parameter = arguments[0].arg
    last = function.body[-1]
    if not (isinstance(last, ast.Raise) and _is_attribute_error(last.exc)):
        return None
    names: set[str] = set()
    for statement in function.body[:-1]:
        found = _guarded_returns(statement, parameter, literals)
        if found is None:
            return None
        names |= found
    return names


def _is_attribute_error(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Name) and node.id == "AttributeError"


def _returns(node: ast.AST) -> bool:
    return any(
        isinstance(inner, ast.Return | ast.Yield | ast.YieldFrom) for inner in ast.walk(node)
    )


def _guarded_returns(
    statement: ast.stmt, parameter: str, literals: dict[str, set[str]]
) -> set[str] | None:
    if not _returns(statement):
        return set()
    if not isinstance(statement, ast.If):
        return None
    names = _guard(statement.test, parameter, literals)
    if names is None:
        return None
    for inner in statement.orelse:
        more = _guarded_returns(inner, parameter, literals)
        if more is None:
            return None
        names |= more
    return names


def _guard(test: ast.expr, parameter: str, literals: dict[str, set[str]]) -> set[str] | None:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        names: set[str] = set()
        for value in test.values:
            found = _guard(value, parameter, literals)
            if found is None:
                return None
            names |= found
        return names
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, right, operator = test.left, test.comparators[0], test.ops[0]
    if isinstance(operator, ast.Eq):
        if isinstance(right, ast.Name) and right.id == parameter:
            left, right = right, left
        named = isinstance(left, ast.Name) and left.id == parameter
        if named and isinstance(right, ast.Constant) and isinstance(right.value, str):
            return {right.value}
        return None
    if isinstance(operator, ast.In) and isinstance(left, ast.Name) and left.id == parameter:
        if isinstance(right, ast.Name):
            return literals.get(right.id)
        return literal_strings(right)
    return None
