"""Per-language grammar knowledge: which nodes define what, their names, and who sees them."""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from indexer.parsing import node_text

NameInfo = tuple[str, Node | None, str, str]  # name, name node, symbol kind, owner scope

_COMMENT = frozenset({"comment"})
_RUST_COMMENTS = frozenset({"line_comment", "block_comment"})
_C_TRANSPARENT = frozenset(
    {"preproc_ifdef", "preproc_if", "preproc_else", "preproc_elif", "preproc_elifdef"}
)
_JS_DEFS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "class_declaration": "class",
    "method_definition": "method",
    "lexical_declaration": "function",
    "variable_declaration": "function",
}
_TS_DEFS = {
    **_JS_DEFS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "enum_declaration": "enum",
    "type_alias_declaration": "type",
    "internal_module": "module",
    "module": "module",
    "function_signature": "function",
    "abstract_method_signature": "method",
}
_C_DEFS = {
    "function_definition": "function",
    "struct_specifier": "class",
    "union_specifier": "class",
    "enum_specifier": "enum",
    "type_definition": "type",
}


@dataclass(frozen=True)
class LanguageSpec:
    defs: dict[str, str]  # node type -> symbol kind ("" defines no symbol of its own)
    containers: frozenset[str] = frozenset()  # definitions whose members are chunked apart
    wrappers: frozenset[str] = frozenset()  # nodes that wrap a definition (decorators, export)
    transparent: frozenset[str] = frozenset()  # nodes whose children belong to the enclosing body
    comments: frozenset[str] = _COMMENT
    attributes: frozenset[str] = frozenset()  # like comments, attached to the next definition


SPECS: dict[str, LanguageSpec] = {
    "python": LanguageSpec(
        defs={"function_definition": "function", "class_definition": "class"},
        containers=frozenset({"class_definition"}),
        wrappers=frozenset({"decorated_definition"}),
    ),
    "javascript": LanguageSpec(
        defs=_JS_DEFS,
        containers=frozenset({"class_declaration"}),
        wrappers=frozenset({"export_statement"}),
    ),
    "typescript": LanguageSpec(
        defs=_TS_DEFS,
        containers=frozenset(
            {"class_declaration", "abstract_class_declaration", "internal_module", "module"}
        ),
        wrappers=frozenset({"export_statement", "expression_statement", "ambient_declaration"}),
    ),
    "go": LanguageSpec(
        defs={
            "function_declaration": "function",
            "method_declaration": "method",
            "type_declaration": "type",
        }
    ),
    "rust": LanguageSpec(
        defs={
            "function_item": "function",
            "function_signature_item": "function",
            "struct_item": "class",
            "enum_item": "enum",
            "union_item": "class",
            "trait_item": "interface",
            "impl_item": "",
            "mod_item": "module",
            "type_item": "type",
            "macro_definition": "function",
        },
        containers=frozenset({"impl_item", "trait_item", "mod_item"}),
        comments=_RUST_COMMENTS,
        attributes=frozenset({"attribute_item"}),
    ),
    "java": LanguageSpec(
        defs={
            "class_declaration": "class",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "class",
            "annotation_type_declaration": "interface",
            "method_declaration": "method",
            "constructor_declaration": "method",
            "compact_constructor_declaration": "method",
        },
        containers=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "annotation_type_declaration",
            }
        ),
        transparent=frozenset({"enum_body_declarations"}),
        comments=frozenset({"line_comment", "block_comment"}),
    ),
    "c": LanguageSpec(defs=_C_DEFS, transparent=_C_TRANSPARENT),
    "cpp": LanguageSpec(
        defs={**_C_DEFS, "class_specifier": "class", "namespace_definition": "module"},
        containers=frozenset({"class_specifier", "struct_specifier", "namespace_definition"}),
        wrappers=frozenset({"template_declaration"}),
        transparent=_C_TRANSPARENT | {"linkage_specification", "declaration_list"},
    ),
}
SPECS["tsx"] = SPECS["typescript"]

CLASS_LIKE = frozenset({"class", "interface", "enum", "type", ""})
_FUNCTION_VALUES = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function"}
)
_C_DECLARATORS = frozenset(
    {
        "pointer_declarator",
        "reference_declarator",
        "function_declarator",
        "array_declarator",
        "parenthesized_declarator",
        "init_declarator",
    }
)


def definition_name(node: Node, language: str, data: bytes) -> NameInfo | None:
    """(name, name node, kind, extra scope) of a definition node, or None if it is not one."""
    kind = SPECS[language].defs[node.type]
    t = node.type
    if t in ("lexical_declaration", "variable_declaration"):
        declarators = [c for c in node.named_children if c.type == "variable_declarator"]
        if len(declarators) != 1:
            return None
        value = declarators[0].child_by_field_name("value")
        name_node = declarators[0].child_by_field_name("name")
        if value is None or name_node is None or name_node.type != "identifier":
            return None
        if value.type in ("class", "class_expression"):
            return _text(data, name_node), name_node, "class", ""
        if value.type not in _FUNCTION_VALUES:
            return None
        return _text(data, name_node), name_node, kind, ""
    if t == "type_declaration":
        specs = [c for c in node.named_children if c.type in ("type_spec", "type_alias")]
        if len(specs) != 1:
            return None
        name_node = specs[0].child_by_field_name("name")
        return _text_of(data, name_node), name_node, _go_type_kind(specs[0]), ""
    if t == "method_declaration" and language == "go":
        name_node = node.child_by_field_name("name")
        receiver = node.child_by_field_name("receiver")
        owner = _go_receiver(_text(data, receiver)) if receiver is not None else ""
        return _text_of(data, name_node), name_node, "method", owner
    if t == "impl_item":
        type_node = node.child_by_field_name("type")
        if type_node is None:
            return None
        return _base_name(_text(data, type_node)), type_node, "", ""
    if t == "function_definition" and language in ("c", "cpp"):
        return _c_function_name(node, data)
    if t in ("struct_specifier", "union_specifier", "enum_specifier", "class_specifier"):
        if node.child_by_field_name("body") is None:
            return None
        name_node = node.child_by_field_name("name")
        if name_node is None:
            return None
        return _base_name(_text(data, name_node)), name_node, kind, ""
    if t == "type_definition":
        name_node = node.child_by_field_name("declarator")
        if name_node is None:
            return None
        inner = node.child_by_field_name("type")
        has_body = inner is not None and inner.child_by_field_name("body") is not None
        return _text(data, name_node), name_node, "class" if has_body else "type", ""
    name_node = node.child_by_field_name("name")
    if name_node is None:
        if t == "namespace_definition":  # anonymous namespace: its members keep the scope
            return "", None, kind, ""
        return None
    name = _text(data, name_node)
    if name_node.type == "string":
        name = name.strip("\"'`")
    return name.replace("::", "."), name_node, kind, ""


def _c_function_name(node: Node, data: bytes) -> NameInfo | None:
    declarator = node.child_by_field_name("declarator")
    while declarator is not None and declarator.type in _C_DECLARATORS:
        declarator = declarator.child_by_field_name("declarator")
    if declarator is None:
        return None
    parts = _text(data, declarator).split("::")
    name = parts[-1].split("<")[0].strip()
    owner = ".".join(_base_name(p) for p in parts[:-1] if p.strip())
    return name, declarator, "function", owner


def is_exported(
    node: Node, name: str, language: str, data: bytes, *, wrapper: str, in_class: bool
) -> bool:
    """Whether a definition is visible outside its file, by the language's own rule."""
    if language == "python":
        return is_public(name)
    if language == "go":
        return name[:1].isupper()
    if language == "rust":
        if in_class:
            return True
        return any(c.type == "visibility_modifier" for c in node.named_children)
    if language == "java":
        modifiers = next((c for c in node.named_children if c.type == "modifiers"), None)
        return modifiers is None or "private" not in _text(data, modifiers).split()
    if language in ("c", "cpp"):
        return not any(
            c.type == "storage_class_specifier" and _text(data, c) == "static"
            for c in node.named_children
        )
    if in_class:
        private = any(
            c.type == "accessibility_modifier" and _text(data, c) == "private"
            for c in node.named_children
        )
        return not private and not name.startswith("#")
    return wrapper == "export_statement"


def declared_names(node: Node, language: str) -> list[tuple[Node, str]]:
    """(name node, kind) for each name a statement declares, in the non-Python languages."""
    t = node.type
    out: list[tuple[Node, str]] = []
    if t == "export_statement":
        inner = next((c for c in node.named_children if "declaration" in c.type), None)
        return declared_names(inner, language) if inner is not None else out
    if t in ("lexical_declaration", "variable_declaration"):
        for declarator in node.named_children:
            name = declarator.child_by_field_name("name")
            is_plain = name is not None and name.type == "identifier"
            if declarator.type == "variable_declarator" and name is not None and is_plain:
                out.append((name, "variable"))
    elif t in ("public_field_definition", "field_definition"):
        name = node.child_by_field_name("name") or node.child_by_field_name("property")
        if name is not None:
            out.append((name, "attribute"))
    elif t in ("const_declaration", "var_declaration"):
        kind = "constant" if t == "const_declaration" else "variable"
        for spec in node.named_children:
            out.extend((n, kind) for n in spec.children_by_field_name("name"))
    elif t == "type_declaration":
        for spec in node.named_children:
            name = spec.child_by_field_name("name")
            if name is not None:
                out.append((name, _go_type_kind(spec)))
    elif t in ("const_item", "static_item"):
        name = node.child_by_field_name("name")
        if name is not None:
            out.append((name, "constant" if t == "const_item" else "variable"))
    elif t in ("field_declaration", "constant_declaration") and language == "java":
        for declarator in node.children_by_field_name("declarator"):
            name = declarator.child_by_field_name("name")
            if name is not None:
                out.append((name, "constant" if t == "constant_declaration" else "attribute"))
    elif t == "enum_constant":
        name = node.child_by_field_name("name")
        if name is not None:
            out.append((name, "constant"))
    elif t in ("declaration", "field_declaration") and language in ("c", "cpp"):
        for declarator in node.children_by_field_name("declarator"):
            while declarator.type in _C_DECLARATORS and declarator.type != "function_declarator":
                inner = declarator.child_by_field_name("declarator")
                if inner is None:
                    break
                declarator = inner
            if declarator.type in ("identifier", "field_identifier"):
                out.append((declarator, "variable"))
    elif t in ("preproc_def", "preproc_function_def"):
        name = node.child_by_field_name("name")
        if name is not None:
            out.append((name, "constant" if t == "preproc_def" else "function"))
    return out


def _go_type_kind(spec: Node) -> str:
    type_node = spec.child_by_field_name("type")
    if spec.type == "type_spec" and type_node is not None:
        if type_node.type == "struct_type":
            return "class"
        if type_node.type == "interface_type":
            return "interface"
    return "type"


def _go_receiver(text: str) -> str:
    """The type name of a Go method receiver such as ``(c *Cart[T])``."""
    inner = text.strip("() \t")
    type_text = inner.split()[-1] if inner else ""
    return _base_name(type_text.lstrip("*"))


def _base_name(text: str) -> str:
    """A type's bare name: no generic arguments, no path (``fmt::Display<T>`` -> ``Display``)."""
    bare = text.split("<")[0].split("[")[0].strip()
    return bare.replace("::", ".").rsplit(".", 1)[-1]


def is_public(name: str) -> bool:
    """Python's convention: a name is public unless it starts with ``_`` (dunders are public)."""
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def is_constant_name(name: str) -> bool:
    """Whether a name is spelled like a constant (``MAX_ITEMS``, ``_DEFAULT``)."""
    stripped = name.lstrip("_")
    return bool(stripped) and stripped[0].isalpha() and stripped.upper() == stripped


def file_scope(root: Node, data: bytes, language: str, module: str | None) -> str:
    """What qualifies a file's top-level names: the Python module, or Go's/Java's package."""
    if language == "python":
        return module or ""
    for child in root.named_children[:8]:  # the package clause comes first, after comments
        if child.type == "package_clause":  # Go
            name = next((c for c in child.named_children), None)
            return node_text(data, name) if name is not None else ""
        if child.type == "package_declaration":  # Java
            name = next((c for c in child.named_children if "identifier" in c.type), None)
            return node_text(data, name) if name is not None else ""
    return ""


def _text(data: bytes, node: Node) -> str:
    return node_text(data, node)


def _text_of(data: bytes, node: Node | None) -> str:
    return node_text(data, node) if node is not None else ""
