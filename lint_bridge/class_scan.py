"""What a class statement binds: body names, ``self.x`` assignments, ``__slots__``, decorators."""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

logger = logging.getLogger(__name__)

# Class decorators known to return the class they get, with no attributes beyond these.
_PLAIN_DECORATORS = frozenset(
    {
        "final",
        "runtime_checkable",
        "total_ordering",
        "unique",
        "type_check_only",
        "dataclass_transform",
        "deprecated",
        "disjoint_base",
        "verify",
        "override",
    }
)
_DATACLASS_DECORATORS = frozenset({"dataclass", "s", "attrs", "define", "frozen", "mutable"})
DATACLASS_NAMES = frozenset(
    {
        "__dataclass_fields__",
        "__dataclass_params__",
        "__match_args__",
        "__attrs_attrs__",
        "__attrs_own_setattr__",
    }
)
_CLASS_METHOD_NAMES = frozenset({"__new__", "__init_subclass__", "__class_getitem__"})


@dataclass(eq=False)
class ClassSummary:
    """One class body, scanned: what it binds and what makes it open-ended."""

    names: set[str] = field(default_factory=set)
    nested: dict[str, ast.ClassDef] = field(default_factory=dict)
    bases: list[ast.expr] = field(default_factory=list)
    metaclass: ast.expr | None = None
    open: bool = False
    dataclass_like: bool = False
    init_subclass: bool = False
    custom_new: bool = False
    defines_call: bool = False
    # Declared types of attributes (None where two declarations disagree).
    declared: dict[str, ast.expr | None] = field(default_factory=dict)

    def declare(self, name: str, annotation: ast.expr) -> None:
        """Record ``name``'s declared type; two different declarations cancel out."""
        known = self.declared.get(name, annotation)
        same = known is annotation or (
            known is not None and ast.dump(known) == ast.dump(annotation)
        )
        self.declared[name] = annotation if same else None


def decorator_name(node: ast.expr) -> str:
    """The last identifier of a decorator (``functools.total_ordering()`` -> total_ordering)."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def scan_class(node: ast.ClassDef) -> ClassSummary:
    """Scan a class statement (its body, methods, decorators and bases)."""
    summary = ClassSummary(bases=list(node.bases))
    for keyword in node.keywords:
        if keyword.arg == "metaclass":
            summary.metaclass = keyword.value
    for decorator in node.decorator_list:
        name = decorator_name(decorator)
        if name in _DATACLASS_DECORATORS:
            summary.dataclass_like = True
        elif name not in _PLAIN_DECORATORS:
            summary.open = True
    _scan_body(node.body, node.name, summary)
    if summary.dataclass_like:
        summary.names |= DATACLASS_NAMES
    return summary


def extend_class(
    summary: ClassSummary, statements: Sequence[ast.stmt], class_name: str
) -> ClassSummary:
    """A copy of ``summary`` with more body statements scanned in (an edited member)."""
    extended = replace(
        summary,
        names=set(summary.names),
        nested=dict(summary.nested),
        declared=dict(summary.declared),
    )
    _scan_body(statements, class_name, extended)
    if extended.dataclass_like:
        extended.names |= DATACLASS_NAMES
    return extended


def body_names(statements: Sequence[ast.stmt]) -> set[str]:
    """Names a class body binds at its own level (not ``self.x``): cheap, no method walks."""
    summary = ClassSummary()
    _scan_body(statements, "", summary, methods=False)
    return summary.names


def _scan_body(
    statements: Sequence[ast.stmt], class_name: str, summary: ClassSummary, *, methods: bool = True
) -> None:
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            if methods:
                _scan_method(statement, class_name, summary)
            else:
                summary.names.add(statement.name)
        elif isinstance(statement, ast.ClassDef):
            summary.names.add(statement.name)
            summary.nested[statement.name] = statement
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                _bind_target(target, summary)
                if isinstance(target, ast.Name) and target.id == "__slots__":
                    summary.names |= _slot_names(statement.value)
        elif isinstance(statement, ast.AnnAssign):
            _bind_target(statement.target, summary)
            if isinstance(statement.target, ast.Name):
                summary.declare(statement.target.id, statement.annotation)
        elif isinstance(statement, ast.AugAssign):
            _bind_target(statement.target, summary)
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            for alias in statement.names:
                summary.names.add((alias.asname or alias.name).partition(".")[0])
        elif isinstance(statement, ast.If | ast.While):
            _scan_body(statement.body, class_name, summary, methods=methods)
            _scan_body(statement.orelse, class_name, summary, methods=methods)
        elif isinstance(statement, ast.For | ast.AsyncFor):
            _bind_target(statement.target, summary)
            _scan_body(statement.body, class_name, summary, methods=methods)
            _scan_body(statement.orelse, class_name, summary, methods=methods)
        elif isinstance(statement, ast.With | ast.AsyncWith):
            for item in statement.items:
                if item.optional_vars is not None:
                    _bind_target(item.optional_vars, summary)
            _scan_body(statement.body, class_name, summary, methods=methods)
        elif isinstance(statement, ast.Try | ast.TryStar):
            for block in (statement.body, statement.orelse, statement.finalbody):
                _scan_body(block, class_name, summary, methods=methods)
            for handler in statement.handlers:
                if handler.name:
                    summary.names.add(handler.name)
                _scan_body(handler.body, class_name, summary, methods=methods)


def _bind_target(target: ast.expr, summary: ClassSummary) -> None:
    if isinstance(target, ast.Name):
        summary.names.add(target.id)
        if target.id in {"__getattr__", "__getattribute__"}:
            summary.open = True
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            _bind_target(element, summary)
    elif isinstance(target, ast.Starred):
        _bind_target(target.value, summary)


def _slot_names(value: ast.expr) -> set[str]:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return {value.value}
    items: list[ast.expr | None] = []
    if isinstance(value, ast.Tuple | ast.List | ast.Set):
        items = list(value.elts)
    elif isinstance(value, ast.Dict):
        items = list(value.keys)
    return {
        item.value
        for item in items
        if isinstance(item, ast.Constant) and isinstance(item.value, str)
    }


def _scan_method(
    function: ast.FunctionDef | ast.AsyncFunctionDef, class_name: str, summary: ClassSummary
) -> None:
    name = function.name
    summary.names.add(name)
    if name in {"__getattr__", "__getattribute__"}:
        summary.open = True
    elif name == "__init_subclass__":
        summary.init_subclass = True
    elif name == "__call__":
        summary.defines_call = True
    elif name == "__new__" and not _returns_own_instance(function, class_name):
        summary.custom_new = True
    decorators = {decorator_name(d) for d in function.decorator_list}
    if decorators & {"property", "cached_property"} and function.returns is not None:
        summary.declare(name, function.returns)
    if "staticmethod" in decorators:
        return
    arguments = [*function.args.posonlyargs, *function.args.args]
    if not arguments:
        return
    owner = arguments[0].arg
    if name == "__new__" or "classmethod" in decorators:
        owner = ""  # constructors build the instance in a local: ``self = super().__new__(cls)``
    typed = {
        argument.arg: argument.annotation
        for argument in (*arguments, *function.args.kwonlyargs)
        if argument.annotation is not None
    }
    # Statements only (not every expression node): a class's methods are most of a module.
    pending: list[ast.stmt] = list(function.body)
    while pending:
        statement = pending.pop()
        for target in _targets(statement):
            _bind_owner_target(target, owner, summary)
        if owner:
            _declare_owner_target(statement, owner, typed, summary)
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            _dynamic_call(statement.value, owner, summary)
        for field_name in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(statement, field_name, ()):
                if isinstance(child, ast.stmt):
                    pending.append(child)
                else:
                    pending.extend(getattr(child, "body", ()))


def _declare_owner_target(
    statement: ast.stmt, owner: str, typed: dict[str, ast.expr], summary: ClassSummary
) -> None:
    """``self.x: T = ...`` and ``self.x = param`` (``param: T``) declare ``x`` a ``T``."""
    target: ast.expr
    if isinstance(statement, ast.AnnAssign):
        target, annotation = statement.target, statement.annotation
    elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        value = statement.value
        target = statement.targets[0]
        if not (isinstance(value, ast.Name) and value.id in typed):
            return
        annotation = typed[value.id]
    else:
        return
    if (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == owner
    ):
        summary.declare(target.attr, annotation)


def _targets(statement: ast.stmt) -> list[ast.expr]:
    if isinstance(statement, ast.Assign):
        return statement.targets
    if isinstance(statement, ast.AnnAssign | ast.AugAssign | ast.For | ast.AsyncFor):
        return [statement.target]
    if isinstance(statement, ast.With | ast.AsyncWith):
        return [item.optional_vars for item in statement.items if item.optional_vars is not None]
    return []


def _bind_owner_target(target: ast.expr, owner: str, summary: ClassSummary) -> None:
    """Record ``owner.x = ...`` (any ``name.x = ...`` when ``owner`` is empty)."""
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            _bind_owner_target(element, owner, summary)
    elif isinstance(target, ast.Starred):
        _bind_owner_target(target.value, owner, summary)
    elif isinstance(target, ast.Attribute):
        if isinstance(target.value, ast.Name) and target.value.id == (owner or target.value.id):
            summary.names.add(target.attr)
    elif isinstance(target, ast.Subscript) and _is_owner_dict(target.value, owner):
        summary.open = True  # self.__dict__[key] = value


def _is_owner_dict(node: ast.expr, owner: str) -> bool:
    """``self.__dict__`` or ``vars(self)``."""
    if isinstance(node, ast.Attribute) and node.attr == "__dict__":
        return isinstance(node.value, ast.Name) and node.value.id == owner
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars":
        first = node.args[0] if node.args else None
        return isinstance(first, ast.Name) and first.id == owner
    return False


def _dynamic_call(call: ast.Call, owner: str, summary: ClassSummary) -> None:
    """``setattr(self, ...)``, ``self.__dict__.update(...)``: names set at run time."""
    if _is_setattr_on(call, owner):
        attribute = call.args[1] if len(call.args) > 1 else None
        if isinstance(attribute, ast.Constant) and isinstance(attribute.value, str):
            summary.names.add(attribute.value)
        else:
            summary.open = True
    elif isinstance(call.func, ast.Attribute) and _is_owner_dict(call.func.value, owner):
        summary.open = True


def _is_setattr_on(call: ast.Call, owner: str) -> bool:
    func = call.func
    is_setattr = (isinstance(func, ast.Name) and func.id == "setattr") or (
        isinstance(func, ast.Attribute) and func.attr == "__setattr__"
    )
    if not is_setattr or not call.args:
        return False
    first = call.args[0]
    return isinstance(first, ast.Name) and first.id == owner


def _returns_own_instance(
    function: ast.FunctionDef | ast.AsyncFunctionDef, class_name: str
) -> bool:
    returns = function.returns
    if returns is None:
        return True
    if isinstance(returns, ast.Constant) and isinstance(returns.value, str):
        return returns.value in {class_name, "Self"}
    name = returns.attr if isinstance(returns, ast.Attribute) else getattr(returns, "id", None)
    return name in {class_name, "Self"}


def is_class_method(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a method's first parameter is the class (``classmethod``, ``__new__``...)."""
    if function.name in _CLASS_METHOD_NAMES:
        return True
    return "classmethod" in {decorator_name(d) for d in function.decorator_list}


def is_static_method(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a method has no ``self``/``cls`` parameter at all."""
    return "staticmethod" in {decorator_name(d) for d in function.decorator_list}
