"""Where the legal names at the cursor are all known, and which they are (lever ``complete_names``).

Constrained decoding (``model.runtime.constrain``) may only narrow the model to a set that
is complete: Python is dynamic, and a legal name left out of the set would be a right
suggestion made impossible. So the set is given only where the verifier's static
resolution (``lint_bridge.resolve``: the workspace's sources, installed packages, typeshed)
knows every attribute:

* right after ``X.`` or ``X.Y.``, where the chain is a module, or a class whose
  attributes and bases' are all known (no ``__getattr__``, no unknown base or metaclass);
* right after ``from X import`` (a new item of its list, parenthesised or not).

Everything else is None: attributes of instances (``self.``, ``obj.``), modules that
cannot be read or may gain names at run time, a name the buffer binds again anywhere but
the top-level import or class (a parameter, an assignment), comments and strings.
"""

from __future__ import annotations

import ast
import keyword
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lint_bridge.buffer_parse import parse_recovering
from lint_bridge.module_scan import absolute_module, scan_text
from lint_bridge.resolve import TYPE_ATTRS, ModuleResolver
from lint_bridge.typed_values import ABSTRACT_MODULES
from lint_bridge.values import Attributes, ClassValue, ModuleValue, Value
from lint_bridge.verify import Verifier
from lsp.core.pipeline_types import Cursor
from model.runtime.api import NameConstraint

logger = logging.getLogger(__name__)

_TYPED = re.compile(r"\w*\Z")
# A name chain right before the dot: not itself an attribute of a call, a subscript, a
# literal or a longer chain (``f().x.``, ``a[0].``, ``"s".``, ``1.``).
_CHAIN = re.compile(r"(?<![\w.)\]}'\"])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.\Z")
_FROM = re.compile(
    r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import\b(?P<tail>[^\n]*\Z|[ \t]*\([^()]*\Z)", re.M
)
_IMPORTING = re.compile(r"[ \t]*(?:import|from)[ \t]")
_ITEMS_PLAIN = re.compile(r"[ \t]+(?:\w+(?:[ \t]+as[ \t]+\w+)?[ \t]*,[ \t]*)*\Z")
_ITEMS_PAREN = re.compile(r"[ \t]*\(\s*(?:\w+(?:\s+as\s+\w+)?\s*,\s*)*\Z")


@dataclass(frozen=True)
class LegalNames:
    """Every name that may follow at the cursor, and the part of one the user typed."""

    names: frozenset[str]
    typed: str
    site: str  # "attribute" or "import", for logs


def name_constraint(cursor: Cursor, verifier: Verifier | None, lead: str) -> NameConstraint | None:
    """The constraint for a generation at ``cursor`` (None: decode freely).

    ``lead`` is the blank the prompt leaves out for token healing, which the model writes
    before the name. Never raises: a failure is logged and decoding stays free.
    """
    if verifier is None or not verifier.settings.symbols or cursor.language != "python":
        return None
    try:
        legal = legal_names(cursor, verifier.resolver)
    except Exception:  # a constraint is an optimisation: never cost the suggestion
        logger.exception(
            "legal names at %s:%d not computed; decoding freely", cursor.path, cursor.offset
        )
        return None
    if legal is None:
        return None
    names = tuple(sorted(n for n in legal.names if n.startswith(legal.typed) and n.isidentifier()))
    if not names:
        return None  # the user is writing a name the set lacks: theirs to decide
    logger.debug("constraining %d names after %s (typed %r)", len(names), legal.site, legal.typed)
    return NameConstraint(names, typed=legal.typed, lead=lead)


def legal_names(cursor: Cursor, resolver: ModuleResolver) -> LegalNames | None:
    """The complete set of names that may follow at the cursor, or None where it is not known."""
    if cursor.suffix[:1].isidentifier() or cursor.suffix[:1].isdigit():
        return None  # an identifier goes on after the cursor: not the start of a name
    prefix = cursor.prefix
    typed = _TYPED.search(prefix, prefix.rfind("\n") + 1)
    assert typed is not None  # \w* matches the empty string
    partial = typed.group()
    if partial[:1].isdigit() or not in_code(prefix):
        return None
    before = prefix[: len(prefix) - len(partial)]
    module, is_package = module_identity(cursor.abs_path, resolver)
    imported = _from_import(before, module, is_package)
    if imported is not None:
        listed = _module_names(resolver, imported, partial, "import")
        return None if listed is None else LegalNames(listed.names, partial, listed.site)
    line = before.rsplit("\n", 1)[-1]
    if _IMPORTING.match(line):
        return None  # ``import os.`` / ``from os.``: a module path, where only submodules go
    chain = _CHAIN.search(line)
    if chain is None or any(keyword.iskeyword(part) for part in chain.group(1).split(".")):
        return None
    start = len(before) - len(chain.group())
    value = _chain_value(cursor, resolver, chain.group(1), start, module, is_package)
    if isinstance(value, ModuleValue):
        found = _module_names(resolver, value.name, partial, "attribute")
    elif isinstance(value, ClassValue):
        found = _class_names(resolver, value, partial)
    else:
        return None
    if found is None:
        return None
    stored = re.findall(
        rf"\b{re.escape(chain.group(1))}\.(\w+)[ \t]*(?::[^=\n]*)?=(?!=)", cursor.text
    )
    return LegalNames(found.names | frozenset(stored), partial, found.site)


def module_identity(path: Path | None, resolver: ModuleResolver) -> tuple[str, bool]:
    """The buffer's dotted module name ("" when not on the search path) and whether it is
    a package's ``__init__``."""
    is_package = path is not None and path.stem == "__init__"
    found = resolver.module_name_for(path) if path is not None else None
    return found if found is not None else ("", is_package)


def in_code(prefix: str) -> bool:
    """Whether the end of ``prefix`` is code, not a comment or a string."""
    line_start = prefix.rfind("\n") + 1
    earlier = prefix[:line_start]
    if (earlier.count('"""') + earlier.count("'''")) % 2:
        return False  # inside a triple-quoted string (roughly: a cheap count)
    line = prefix[line_start:]
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if line.startswith(quote, index):
                index += len(quote)
                quote = ""
                continue
        elif char == "#":
            return False
        elif char in "'\"":
            quote = char * 3 if line.startswith(char * 3, index) else char
            index += len(quote)
            continue
        index += 1
    return not quote


def _from_import(before: str, module: str, is_package: bool) -> str | None:
    """The absolute module of a ``from X import`` whose next item starts at the end of
    ``before``; None anywhere else."""
    found = _FROM.search(before)  # its tail reaches the end: the statement being written
    if found is None:
        return None
    tail = found.group("tail")
    if not (_ITEMS_PLAIN.fullmatch(tail) or _ITEMS_PAREN.fullmatch(tail)):
        return None
    if not tail.endswith((" ", "\t", "\n", "(")):
        return None  # "import a," wants a blank before the next name, which is not a name
    level = len(found.group(1))
    return absolute_module(found.group(2) or None, level, module, is_package) or None


@dataclass(frozen=True)
class _Found:
    names: frozenset[str]
    site: str


def _module_names(resolver: ModuleResolver, module: str, typed: str, site: str) -> _Found | None:
    """Every attribute of ``module`` if all are known: bindings, ``__all__``, submodules."""
    summary = resolver.summary(module)
    attributes: Attributes | None = resolver.module_attributes(module)
    if summary is None or attributes is None or attributes.open:
        return None
    if summary.damaged_names or summary.uses_sys_modules:
        return None  # lines that did not parse, or a module that replaces itself
    if summary.stub and typed.startswith("_"):
        return None  # stubs leave private names out
    return _Found(attributes.names, "import" if site == "import" else f"{module}.")


def _class_names(resolver: ModuleResolver, value: ClassValue, typed: str) -> _Found | None:
    """Every attribute of a class object if all are known: its body's, its bases', ``type``'s."""
    facts = resolver.class_facts(value.cls)
    if facts.open or value.cls.summary.name in ABSTRACT_MODULES:
        return None
    if facts.stubbed and typed.startswith("_"):
        return None  # stubs leave private names out
    return _Found(facts.names | TYPE_ATTRS | frozenset(facts.nested), f"{value.cls.dotted}.")


def _chain_value(
    cursor: Cursor, resolver: ModuleResolver, chain: str, start: int, module: str, is_package: bool
) -> Value | None:
    """What the name chain before the dot is, as the buffer binds its first name."""
    first = chain.split(".", 1)[0]
    line_start = cursor.text.rfind("\n", 0, start) + 1
    line_end = cursor.text.find("\n", cursor.offset)
    line_end = len(cursor.text) if line_end < 0 else line_end
    line = cursor.text[line_start:line_end]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    # The buffer with the dot and what was typed after it taken out, so the line parses;
    # failing that (an unclosed bracket: ``print(os.``), with the line a ``pass``.
    texts = (
        cursor.text[: start + len(chain)] + cursor.text[cursor.offset :],
        cursor.text[:line_start] + indent + "pass" + cursor.text[line_end:],
    )
    for text in texts:
        recovered = parse_recovering(text)
        if recovered is not None and first not in recovered.dropped:
            break
    else:
        return None
    if _rebound(recovered.tree, first):
        return None
    summary = scan_text(recovered, text, name=module, is_package=is_package)
    expression = ast.parse(chain, mode="eval").body
    return resolver.evaluate(expression, resolver.namespace(summary))


def complete_attributes(
    resolver: ModuleResolver, value: Value
) -> tuple[frozenset[str], bool] | None:
    """Every attribute of a module or class object if all are known (None otherwise), and
    whether private names are left out of them (read from stubs)."""
    if isinstance(value, ModuleValue):
        found = _module_names(resolver, value.name, "", "attribute")
        summary = resolver.summary(value.name)
        return None if found is None else (found.names, summary is not None and summary.stub)
    if isinstance(value, ClassValue):
        found = _class_names(resolver, value, "")
        stubbed = bool(resolver.class_facts(value.cls).stubbed)
        return None if found is None else (found.names, stubbed)
    return None


def _rebound(tree: ast.Module, name: str) -> bool:
    """Whether ``name`` is bound anywhere but by an import or a class at module level."""
    return name in rebound_names(tree)


def rebound_names(tree: ast.Module) -> set[str]:
    """The names bound anywhere but by an import or a class statement at module level.

    Scopes are not worked out: a parameter or assignment of a name in any function makes
    its set unknown, which costs a constraint, never a right name.
    """
    finder = _Bindings()
    finder.visit(tree)
    return finder.found


class _Bindings(ast.NodeVisitor):
    """Collects the bindings of names other than top-level import or class statements."""

    def __init__(self) -> None:
        self.depth = 0
        self.found: set[str] = set()

    def _scope(self, node: ast.AST, name: str | None) -> None:
        if name is not None and (self.depth or not isinstance(node, ast.ClassDef)):
            self.found.add(name)
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scope(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scope(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope(node, node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node, None)

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if self.depth:
            self.found.update(alias.asname or alias.name.split(".")[0] for alias in node.names)

    def visit_Import(self, node: ast.Import) -> None:
        self._import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._import(node)

    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            self.found.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.found.add(node.arg)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name is not None:
            self.found.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.found.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.found.update(node.names)

    def _pattern(
        self, node: ast.MatchAs | ast.MatchStar | ast.MatchMapping, bound: str | None
    ) -> None:
        if bound is not None:
            self.found.add(bound)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._pattern(node, node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self._pattern(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._pattern(node, node.rest)
