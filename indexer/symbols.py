"""The symbol table of a file: definitions with qualified names, and Python imports and exports."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from tree_sitter import Node, QueryCursor

from indexer.langspec import is_constant_name, is_public
from indexer.outline import MAX_NESTING, qualify
from indexer.parsing import (
    ParseFallback,
    first_line_signature,
    node_text,
    normalize_signature,
    query,
)
from indexer.records import ImportRecord, Symbol

logger = logging.getLogger(__name__)

_ATTR = "(attribute object: (identifier) @obj attribute: (identifier) @attr)"
_PY_QUERY = f"""
(function_definition name: (identifier) @name) @def
(class_definition name: (identifier) @name) @def
(assignment left: {_ATTR}) @set
(assignment left: (pattern_list {_ATTR})) @set
(assignment left: (tuple_pattern {_ATTR})) @set
(import_statement) @import
(import_from_statement) @import
(future_import_statement) @import
"""
_COMPOUND = frozenset(
    {"if_statement", "try_statement", "with_statement", "elif_clause", "else_clause"}
    | {"except_clause", "except_group_clause", "finally_clause", "block"}
)
_TARGETS = frozenset({"pattern_list", "tuple_pattern", "list_pattern"})
_TYPE_FACTORIES = frozenset({"TypeVar", "NewType", "ParamSpec", "TypeVarTuple", "TypeAliasType"})
_ENUM_BASES = frozenset({"Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"})
_DOCSTRING = re.compile(r"^[rRuUbBfF]*(\"\"\"|'''|\"|')(.*)\1$", re.DOTALL)


def python_module_names(paths: Iterable[str]) -> dict[str, str]:
    """Dotted module names of the Python files among repository-relative ``paths``.

    A file's package is found by walking up while the directory holds an ``__init__.py``
    among ``paths``, so ``src/`` layouts and plain layouts both work: ``src/shop/cart.py``
    is ``shop.cart`` when ``src/shop/__init__.py`` exists, a top-level ``tool.py`` is
    ``tool`` and ``pkg/__init__.py`` is ``pkg``. Namespace packages (no ``__init__.py``)
    are not followed.
    """
    python = {p: PurePosixPath(p) for p in paths if p.endswith((".py", ".pyi"))}
    packages = {path.parent for path in python.values() if path.stem == "__init__"}
    names: dict[str, str] = {}
    for original, path in python.items():
        parts = [] if path.stem == "__init__" else [path.stem]
        directory = path.parent
        while directory in packages and directory.name:
            parts.append(directory.name)
            directory = directory.parent
        names[original] = ".".join(reversed(parts)) or path.stem
    return names


@dataclass(eq=False)
class _Scope:
    """An open Python definition during the sweep."""

    end_byte: int
    qualname: str
    is_class: bool
    in_function: bool  # nested somewhere inside a function
    parent: _Scope | None
    first_param: str = ""
    names: set[str] = field(default_factory=set)


def python_symbols(
    path: str, data: bytes, root: Node, module: str
) -> tuple[list[Symbol], list[ImportRecord], list[str]]:
    """Symbols, imports and exported names of a parsed Python module."""
    return _PythonSymbols(path, data, module).run(root)


class _PythonSymbols:
    def __init__(self, path: str, data: bytes, module: str) -> None:
        self.path = path
        self.data = data
        self.module = module
        self.symbols: list[Symbol] = []
        self.imports: list[ImportRecord] = []
        self.all_names: list[str] | None = None
        self.all_dynamic = False
        self.instance: set[str] = set()  # qualnames of attributes assigned through self

    def text(self, node: Node) -> str:
        return node_text(self.data, node)

    def add(
        self,
        name: str,
        qualname: str,
        kind: str,
        node: Node,
        *,
        signature: str = "",
        doc: str = "",
        exported: bool = True,
        line: int = 0,
    ) -> None:
        self.symbols.append(
            Symbol(
                name=name,
                qualname=qualname,
                kind=kind,
                path=self.path,
                line=line or node.start_point.row + 1,
                language="python",
                signature=signature,
                doc=doc,
                exported=exported,
            )
        )

    def run(self, root: Node) -> tuple[list[Symbol], list[ImportRecord], list[str]]:
        module = self.module
        statements = self.statements(root.named_children, 0)
        self.find_all(statements)
        listed = set(self.all_names or ())
        if module:
            name = module.rsplit(".", 1)[-1]
            self.add(name, module, "module", root, doc=self.docstring(root), line=1)
        for statement in statements:
            self.assignment_symbols(statement, module, listed, in_class=False)
        self.sweep(root, listed)
        symbols = _dedupe(self.symbols, self.instance)
        if self.all_names is not None and not self.all_dynamic:
            exports = list(dict.fromkeys(self.all_names))
        else:
            top = [
                s.name
                for s in symbols
                if s.kind != "module" and s.qualname == qualify(module, s.name)
            ]
            exports = [n for n in dict.fromkeys(top) if not n.startswith("_")]
        return symbols, self.imports, exports

    def statements(self, nodes: list[Node], depth: int) -> list[Node]:
        """Module-level simple statements, also inside if/try/with blocks (conditional names)."""
        out: list[Node] = []
        for node in nodes:
            if node.type in _COMPOUND and depth < 8:
                out.extend(self.statements(node.named_children, depth + 1))
            elif node.type in ("expression_statement", "type_alias_statement"):
                out.append(node)
        return out

    def find_all(self, statements: list[Node]) -> None:
        """Read a literal ``__all__`` (``=``, ``+=``, ``.extend``, ``.append``); else dynamic."""
        for statement in statements:
            expr = statement.named_children[0] if statement.named_children else None
            if expr is None:
                continue
            if expr.type in ("assignment", "augmented_assignment"):
                left = expr.child_by_field_name("left")
                if left is None or self.text(left) != "__all__":
                    continue
                value = expr.child_by_field_name("right")
                if expr.type == "assignment":
                    self.all_names = []
            elif expr.type == "call":
                function = expr.child_by_field_name("function")
                method = self.text(function) if function is not None else ""
                if method not in ("__all__.extend", "__all__.append"):
                    continue
                args = expr.child_by_field_name("arguments")
                value = args.named_children[0] if args and args.named_children else None
                if method.endswith("append") and value is not None and value.type == "string":
                    value = args  # one string: read it like a one-element list
            else:
                continue
            names = self.literal_strings(value)
            if names is None:
                self.all_dynamic = True
            else:
                self.all_names = (self.all_names or []) + names

    def literal_strings(self, node: Node | None) -> list[str] | None:
        if node is None or node.type not in ("list", "tuple", "argument_list"):
            return None
        out: list[str] = []
        for item in node.named_children:
            if item.type != "string" or any(c.type == "interpolation" for c in item.children):
                return None
            out.append("".join(self.text(c) for c in item.children if c.type == "string_content"))
        return out

    def assignment_symbols(
        self, statement: Node, scope: str, listed: set[str], *, in_class: bool, hidden: bool = False
    ) -> list[str]:
        """Symbols for the names one statement assigns; returns the names."""
        if statement.type == "type_alias_statement":
            left = statement.child_by_field_name("left")
            ident = _first_identifier(left)
            if ident is None:
                return []
            name = self.text(ident)
            self.add(name, qualify(scope, name), "type", statement, signature=self.line(statement))
            return [name]
        expr = statement.named_children[0] if statement.named_children else None
        if expr is None or expr.type != "assignment":
            return []
        names: list[str] = []
        is_type = self.is_type_assignment(expr)
        while expr is not None and expr.type == "assignment":
            left = expr.child_by_field_name("left")
            names.extend(self.text(n) for n in _target_names(left))
            expr = expr.child_by_field_name("right")
        signature = self.line(statement)
        for name in names:
            if is_type:
                kind = "type"
            elif is_constant_name(name):
                kind = "constant"
            else:
                kind = "attribute" if in_class else "variable"
            if in_class:
                exported = not hidden and is_public(name)
            else:  # what `from module import *` gives: no underscore, or listed in __all__
                exported = not name.startswith("_") or name in listed
            self.add(
                name, qualify(scope, name), kind, statement, signature=signature, exported=exported
            )
        return names

    def is_type_assignment(self, expr: Node) -> bool:
        annotation = expr.child_by_field_name("type")
        if annotation is not None and self.text(annotation).endswith("TypeAlias"):
            return True
        right = expr.child_by_field_name("right")
        if right is not None and right.type == "call":
            function = right.child_by_field_name("function")
            if function is not None:
                return self.text(function).rsplit(".", 1)[-1] in _TYPE_FACTORIES
        return False

    def line(self, node: Node) -> str:
        return first_line_signature(self.data, node)

    def sweep(self, root: Node, listed: set[str]) -> None:
        """One query over the tree: definitions at any depth, ``self.x =`` and imports."""
        events: list[tuple[int, int, dict[str, list[Node]]]] = []
        for pattern, caps in _py_matches(root):
            key = "def" if pattern <= 1 else "set" if pattern <= 4 else "import"
            events.append((caps[key][0].start_byte, pattern, caps))
        events.sort(key=lambda e: e[0])
        stack: list[_Scope] = []
        for start, pattern, caps in events:
            while stack and stack[-1].end_byte <= start:
                stack.pop()
            parent = stack[-1] if stack else None
            if pattern <= 1:
                if len(stack) >= MAX_NESTING:
                    raise ParseFallback("nesting")
                stack.append(self.definition(caps["def"][0], caps["name"][0], parent, listed))
            elif pattern <= 4:
                self.self_attribute(caps, parent)
            else:
                self.import_records(caps["import"][0])

    def definition(
        self, node: Node, name_node: Node, parent: _Scope | None, listed: set[str]
    ) -> _Scope:
        name = self.text(name_node)
        scope = parent.qualname if parent is not None else self.module
        qualname = qualify(scope, name)
        is_class = node.type == "class_definition"
        in_function = parent is not None and (parent.in_function or not parent.is_class)
        if is_class:
            kind = self.class_kind(node)
        else:
            kind = "method" if parent is not None and parent.is_class else "function"
        if in_function:
            exported = False
        elif parent is None:
            exported = not name.startswith("_") or name in listed
        else:
            exported = is_public(name)
        body = node.child_by_field_name("body")
        self.add(
            name,
            qualname,
            kind,
            node,
            signature=self.signature(node),
            doc=self.docstring(body) if body is not None else "",
            exported=exported,
        )
        entry = _Scope(node.end_byte, qualname, is_class, in_function, parent)
        if parent is not None:
            parent.names.add(name)
        if is_class and body is not None:
            for statement in body.named_children:
                if statement.type in ("expression_statement", "type_alias_statement"):
                    names = self.assignment_symbols(
                        statement, qualname, set(), in_class=True, hidden=in_function
                    )
                    entry.names.update(names)
        elif kind == "method":
            entry.first_param = self.first_param(node)
        return entry

    def self_attribute(self, caps: dict[str, list[Node]], method: _Scope | None) -> None:
        if method is None or not method.first_param or method.parent is None:
            return
        owner = method.parent
        if not owner.is_class or self.text(caps["obj"][0]) != method.first_param:
            return
        attr = caps["attr"][0]
        name = self.text(attr)
        if name in owner.names:
            return
        owner.names.add(name)
        statement = caps["set"][0]
        qualname = qualify(owner.qualname, name)
        self.instance.add(qualname)
        self.add(
            name,
            qualname,
            "attribute",
            statement,
            signature=self.line(statement),
            exported=is_public(name),
        )

    def signature(self, node: Node) -> str:
        end = node.end_byte
        for child in node.children:
            if child.type == ":":
                end = child.start_byte
                break
        return normalize_signature(self.data[node.start_byte : end].decode("utf-8", "replace"))

    def class_kind(self, node: Node) -> str:
        bases = node.child_by_field_name("superclasses")
        if bases is None:
            return "class"
        for base in bases.named_children:
            text = self.text(base).split("[")[0].rsplit(".", 1)[-1]
            if text in _ENUM_BASES or text.endswith("Enum"):
                return "enum"
            if text == "Protocol":
                return "interface"
        return "class"

    def first_param(self, node: Node) -> str:
        params = node.child_by_field_name("parameters")
        first = params.named_children[0] if params is not None and params.named_children else None
        ident = _first_identifier(first)
        return self.text(ident) if ident is not None else ""

    def docstring(self, body: Node) -> str:
        for statement in body.named_children:
            if statement.type == "comment":
                continue
            if statement.type != "expression_statement" or statement.named_child_count != 1:
                return ""
            string = statement.named_children[0]
            if string.type != "string":
                return ""
            match = _DOCSTRING.match(self.text(string))
            lines = match.group(2).splitlines() if match else []
            return next((line.strip() for line in lines if line.strip()), "")
        return ""

    def import_records(self, node: Node) -> None:
        line = node.start_point.row + 1
        if node.type == "import_statement":
            for item in node.children_by_field_name("name"):
                module, alias = self.aliased(item)
                self.imports.append(ImportRecord(self.path, module, None, alias, line))
            return
        level = 0
        module = "__future__"
        module_node = node.child_by_field_name("module_name")
        if module_node is not None and module_node.type == "relative_import":
            prefix = next((c for c in module_node.children if c.type == "import_prefix"), None)
            level = len(self.text(prefix)) if prefix is not None else 0
            dotted = next((c for c in module_node.children if c.type == "dotted_name"), None)
            module = self.text(dotted) if dotted is not None else ""
        elif module_node is not None:
            module = self.text(module_node)
        if any(c.type == "wildcard_import" for c in node.children):
            self.imports.append(ImportRecord(self.path, module, "*", None, line, level))
        for item in node.children_by_field_name("name"):
            name, alias = self.aliased(item)
            self.imports.append(ImportRecord(self.path, module, name, alias, line, level))

    def aliased(self, item: Node) -> tuple[str, str | None]:
        if item.type == "aliased_import":
            name = item.child_by_field_name("name")
            alias = item.child_by_field_name("alias")
            return (
                self.text(name) if name is not None else "",
                self.text(alias) if alias is not None else None,
            )
        return self.text(item), None


def _py_matches(root: Node) -> list[tuple[int, dict[str, list[Node]]]]:
    return QueryCursor(query("python", _PY_QUERY)).matches(root)


def _first_identifier(node: Node | None) -> Node | None:
    """The identifier a parameter or type-alias target names (``self``, ``x: int = 1``)."""
    while node is not None and node.type != "identifier":
        named = node.named_children
        node = node.child_by_field_name("name") or (named[0] if named else None)
    return node


def _target_names(left: Node | None) -> list[Node]:
    """Identifiers bound by an assignment target (``a``, ``a, b``, ``(a, [b, *c])``)."""
    if left is None:
        return []
    if left.type == "identifier":
        return [left]
    out: list[Node] = []
    if left.type in _TARGETS:
        for child in left.named_children:
            if child.type == "list_splat_pattern":
                child = child.named_children[0] if child.named_children else child
            out.extend(_target_names(child))
    return out


def _dedupe(symbols: list[Symbol], instance: set[str]) -> list[Symbol]:
    """One symbol per qualified name: the first in file order (the first ``@overload``, the
    property getter) with the first docstring any of them has; an instance attribute
    (``self.x =``) never hides a method of the same name."""
    defined = {s.qualname for s in symbols if s.kind != "attribute" or s.qualname not in instance}
    kept: dict[str, Symbol] = {}
    for symbol in sorted(symbols, key=lambda s: s.line):
        first = kept.get(symbol.qualname)
        if first is not None:
            if not first.doc and symbol.doc:
                kept[symbol.qualname] = dataclasses.replace(first, doc=symbol.doc)
            continue
        if (
            symbol.kind == "attribute"
            and symbol.qualname in instance
            and symbol.qualname in defined
        ):
            continue
        kept[symbol.qualname] = symbol
    return list(kept.values())
