"""The definitions of a parsed file, per language: what chunking cuts along and symbols name."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tree_sitter import Node

from indexer.langspec import (
    CLASS_LIKE,
    SPECS,
    LanguageSpec,
    declared_names,
    definition_name,
    is_constant_name,
    is_exported,
)
from indexer.parsing import (
    ParseFallback,
    first_doc_line,
    first_line_signature,
    line_span,
    node_text,
    normalize_signature,
)
from indexer.records import Symbol

logger = logging.getLogger(__name__)

# Deeper nesting of definitions (or of oversized statements being split) than this is not
# code a person wrote: the file falls back to line windows instead of recursing further.
MAX_NESTING = 64


@dataclass(eq=False)
class Definition:
    """One definition found by the outline: where it is, what it is called, what encloses it."""

    node: Node  # the definition itself (inside any decorator/export wrapper)
    name: str
    qualname: str
    scope: str  # qualname of the enclosing definition, or the file's module/package
    kind: str  # symbol kind; "" for a definition that names no symbol (a Rust impl)
    start: int  # first line, including decorators, attributes and the comments just above
    end: int
    line: int  # line of the name
    exported: bool
    comments: list[Node] = field(default_factory=list)  # comment block right above
    members: list[Item] | None = None  # body items, for definitions with members


@dataclass(eq=False)
class Item:
    """A top-level piece of a body: a definition (with what belongs to it) or a statement."""

    start: int
    end: int
    node: Node
    definition: Definition | None = None


@dataclass
class Declaration:
    """A name a statement declares (variable, constant, field) that is not chunked on its own."""

    name: str
    qualname: str
    kind: str
    node: Node
    line: int
    exported: bool


@dataclass
class Outline:
    """Items of the file's top level, every definition, and the other declarations."""

    items: list[Item]
    definitions: list[Definition]
    declarations: list[Declaration]
    scope: str


def qualify(scope: str, name: str) -> str:
    """Join an enclosing qualified name and a name with a dot."""
    return f"{scope}.{name}" if scope else name


def build_outline(root: Node, data: bytes, language: str, scope: str) -> Outline:
    """Walk the file's bodies (top level, classes, namespaces) into items and definitions."""
    walker = _Walker(SPECS[language], language, data)
    items = walker.body(root.named_children, scope, "module", 0)
    return Outline(items, walker.definitions, walker.declarations, scope)


class _Walker:
    def __init__(self, spec: LanguageSpec, language: str, data: bytes) -> None:
        self.spec = spec
        self.language = language
        self.data = data
        self.definitions: list[Definition] = []
        self.declarations: list[Declaration] = []

    def text(self, node: Node) -> str:
        return node_text(self.data, node)

    def flatten(self, nodes: list[Node], depth: int) -> list[tuple[Node, int, int]]:
        """Named nodes with line spans; transparent nodes give their children, stretched to
        cover the transparent node's own first and last lines (``#ifndef`` ... ``#endif``)."""
        out: list[tuple[Node, int, int]] = []
        for node in nodes:
            start, end = line_span(node)
            if node.type in self.spec.transparent or node.type == "ERROR":
                # Code around a syntax error still parses into whole definitions: keep them.
                if depth > MAX_NESTING:
                    raise ParseFallback("nesting")
                inner = self.flatten(node.named_children, depth + 1)
                if inner:
                    first, s0, e0 = inner[0]
                    inner[0] = (first, min(s0, start), e0)
                    last, s1, e1 = inner[-1]
                    inner[-1] = (last, s1, max(e1, end))
                    out.extend(inner)
                    continue
            out.append((node, start, end))
        return out

    def body(self, nodes: list[Node], scope: str, parent: str, depth: int) -> list[Item]:
        """Items of one body; ``parent`` is the kind of what owns it (module, class, ...)."""
        if depth > MAX_NESTING:
            raise ParseFallback("nesting")
        spec = self.spec
        items: list[Item] = []
        pending: list[tuple[Node, int, int]] = []  # comments/attributes not yet placed
        for node, start, end in self.flatten(nodes, depth):
            shares_line = bool(items) and start <= items[-1].end and not pending
            is_leading = node.type in spec.comments or node.type in spec.attributes
            definition = None if is_leading else self.definition(node, scope, parent, depth)
            if definition is None and not is_leading:
                self.declare(node, scope, parent)
            if shares_line:
                # Shares a line with the previous item (`x = 1  # note`, `}; // end`, `A, B`):
                # named above, but chunked with that item.
                items[-1].end = max(items[-1].end, end)
                continue
            if is_leading:
                pending.append((node, start, end))
                continue
            if definition is None:
                items.extend(Item(s, e, n) for n, s, e in pending)
                pending = []
                items.append(Item(start, end, node))
                continue
            # The comment/attribute block directly above (no blank line) belongs to it.
            attached = len(pending)
            first = start
            while attached > 0 and pending[attached - 1][2] >= first - 1:
                attached -= 1
                first = pending[attached][1]
            items.extend(Item(s, e, n) for n, s, e in pending[:attached])
            leading = [n for n, _, _ in pending[attached:] if n.type in spec.comments]
            pending = []
            definition.start = min(first, start)
            definition.end = max(definition.end, end)
            definition.comments = leading
            items.append(Item(definition.start, definition.end, node, definition))
        items.extend(Item(s, e, n) for n, s, e in pending)
        return items

    def definition(self, node: Node, scope: str, parent: str, depth: int) -> Definition | None:
        spec = self.spec
        outer = node
        wrapper = ""
        while node.type in spec.wrappers:
            wrapper = wrapper or node.type
            inner = next((c for c in node.named_children if c.type in spec.defs), None)
            if inner is None:
                inner = next((c for c in node.named_children if c.type in spec.wrappers), None)
            if inner is None:
                return None
            node = inner
        kind = spec.defs.get(node.type)
        if kind is None:
            return None
        named = definition_name(node, self.language, self.data)
        if named is None:
            return None
        name, name_node, kind, extra_scope = named
        in_class = parent in CLASS_LIKE
        if kind == "function" and (in_class or extra_scope):
            kind = "method"
        own_scope = qualify(scope, extra_scope) if extra_scope else scope
        start, end = line_span(outer)
        definition = Definition(
            node=node,
            name=name,
            qualname=qualify(own_scope, name) if name else own_scope,
            scope=own_scope,
            kind=kind,
            start=start,
            end=end,
            line=name_node.start_point.row + 1 if name_node else start,
            exported=is_exported(
                node, name, self.language, self.data, wrapper=wrapper, in_class=in_class
            ),
        )
        self.definitions.append(definition)
        if node.type in spec.containers:
            body = self.body_node(node)
            if body is not None:
                definition.members = self.body(
                    body.named_children, definition.qualname, kind, depth + 1
                )
        return definition

    def body_node(self, node: Node) -> Node | None:
        body = node.child_by_field_name("body")
        if body is None and self.language == "cpp":
            body = next((c for c in node.named_children if c.type == "declaration_list"), None)
        return body

    def declare(self, node: Node, scope: str, parent: str) -> None:
        """Record the names a non-definition statement declares (variables, fields, macros)."""
        if self.language == "python":
            return  # Python's assignments are read by the symbols module, with more detail
        in_class = parent in CLASS_LIKE
        for name_node, kind in declared_names(node, self.language):
            name = self.text(name_node)
            if not name:
                continue
            if kind == "variable" and is_constant_name(name):
                kind = "constant"
            if in_class and kind == "variable":
                kind = "attribute"
            exported = is_exported(
                node, name, self.language, self.data, wrapper=node.type, in_class=in_class
            )
            self.declarations.append(
                Declaration(
                    name=name,
                    qualname=qualify(scope, name),
                    kind=kind,
                    node=node,
                    line=name_node.start_point.row + 1,
                    exported=exported,
                )
            )


def outline_symbols(path: str, data: bytes, outline: Outline, language: str) -> list[Symbol]:
    """Symbols of a non-Python file: its outline's definitions and declared names."""
    symbols: list[Symbol] = []
    for d in outline.definitions:
        if not d.kind or not d.name:
            continue
        doc = first_doc_line("\n".join(node_text(data, c) for c in d.comments))
        symbols.append(
            Symbol(
                name=d.name,
                qualname=d.qualname,
                kind=d.kind,
                path=path,
                line=d.line,
                language=language,
                signature=braced_signature(data, d.node),
                doc=doc,
                exported=d.exported,
            )
        )
    for decl in outline.declarations:
        symbols.append(
            Symbol(
                name=decl.name,
                qualname=decl.qualname,
                kind=decl.kind,
                path=path,
                line=decl.line,
                language=language,
                signature=first_line_signature(data, decl.node),
                exported=decl.exported,
            )
        )
    symbols.sort(key=lambda s: s.line)
    return symbols


def braced_signature(data: bytes, node: Node) -> str:
    """A definition's text up to its body (``{``, ``=>``), on one line."""
    body = node.child_by_field_name("body")
    if body is None and node.type in ("lexical_declaration", "variable_declaration"):
        declarator = node.named_children[0] if node.named_children else None
        value = declarator.child_by_field_name("value") if declarator is not None else None
        body = value.child_by_field_name("body") if value is not None else None
    if body is None or body.start_byte <= node.start_byte:
        return first_line_signature(data, node)
    text = data[node.start_byte : body.start_byte].decode("utf-8", "replace")
    return normalize_signature(text.rstrip().removesuffix("=>"))
