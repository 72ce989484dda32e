"""The qualifiers a generation may write whose attributes are all known (lever ``complete_names``).

The model mostly writes a qualifier itself, mid-generation (``x = util.join_path(``), where
the cursor-site set of ``lsp.core.legal_names`` is never given. For those,
``model.runtime.constrain_attributes`` restricts the attribute after a generated
``qualifier.`` to the qualifier's names; this module gives it the table, for the buffer:

* each name bound by ``import X``, ``import X as Y``, ``from P import M`` or a ``class``
  statement at module level whose attributes the resolver knows whole (a module read whole,
  a class with known bases and no ``__getattr__``), with the buffer's own ``name.attr = ...``
  stores;
* the dotted chains a module-level ``import a.b.c`` makes (``a.b``, ``a.b.c``).

A name the buffer binds any other way (a parameter, an assignment, an import inside a
function), or that appears on a line dropped to make the buffer parse, is left out: its
attributes are not known. Bounded to ``MAX_QUALIFIERS`` qualifiers and ``MAX_NAMES`` names,
modules first; the rest are skipped. Computed once per buffer text (the resolver's memo), so
the candidates of one request pay for it once.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lint_bridge.buffer_parse import parse_recovering
from lint_bridge.module_scan import ClassBinding, FromBinding, ImportBinding, scan_text
from lint_bridge.resolve import ModuleResolver
from lint_bridge.values import ClassValue, ModuleValue, Value
from lint_bridge.verify import Verifier
from lsp.core.legal_names import complete_attributes, in_code, module_identity, rebound_names
from lsp.core.pipeline_types import Cursor
from model.runtime.api import QualifiedNames

logger = logging.getLogger(__name__)

MAX_QUALIFIERS = 64
MAX_NAMES = 5000
# The cursor line sent for context: a qualifier is short, and a line rarely longer.
_LINE_CHARS = 400
_STORED = re.compile(
    r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)"
)
_QUALIFYING = (ImportBinding, FromBinding, ClassBinding)
# A name on the cursor line that is not the start of an attribute chain: it may be bound there.
_ON_LINE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\b(?!\s*\.)")


@dataclass(frozen=True)
class AttributeTable:
    """Qualifiers with their complete attribute names; ``private``: those whose private
    names are left out (read from stubs)."""

    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    private: frozenset[str] = frozenset()


def qualified_names(cursor: Cursor, verifier: Verifier | None, lead: str) -> QualifiedNames | None:
    """The table for a generation at ``cursor`` (None: decode freely).

    ``lead`` is the blank the prompt leaves out for token healing: the line sent ends
    before it, as the prompt does. Never raises: a failure is logged and decoding stays free.
    """
    if verifier is None or not verifier.settings.symbols or cursor.language != "python":
        return None
    if not in_code(cursor.prefix):
        return None  # a comment or a string: the model writes prose there
    text, offset = cursor.text, cursor.offset
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    line = text[line_start:line_end]
    # The cursor line is being written (``x = ``, ``f(os.``): the buffer is read with it a
    # ``pass`` (the same table while the user types on one line), and the names it may
    # bind are left out: those not followed by a dot, but one being typed at the cursor.
    if line.strip():
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        text = text[:line_start] + indent + "pass" + text[line_end:]
    typing = offset - line_start
    on_line = {m.group(1) for m in _ON_LINE.finditer(line) if m.end() != typing}
    resolver = verifier.resolver
    try:
        table = resolver.memo(
            ("qualified names", text, cursor.abs_path),
            lambda: attribute_table(text, cursor.abs_path, resolver),
        )
    except Exception:  # a constraint is an optimisation: never cost the suggestion
        logger.exception("qualifiers of %s not computed; decoding freely", cursor.path)
        return None
    attributes = tuple(
        (qualifier, names)
        for qualifier, names in table.attributes
        if qualifier.split(".", 1)[0] not in on_line
    )
    if not attributes:
        return None
    before = cursor.prefix[line_start : len(cursor.prefix) - len(lead)]
    if len(before) > _LINE_CHARS:
        before = "." + before[-_LINE_CHARS:]  # a dot first: no qualifier starts at the cut
    logger.debug("constraining attributes after %d qualifiers", len(attributes))
    return QualifiedNames(attributes, table.private, before)


def attribute_table(text: str, path: Path | None, resolver: ModuleResolver) -> AttributeTable:
    """The qualifiers of a module's text and their complete attribute sets (see the module's
    doc); ``path`` places it on the search path."""
    recovered = parse_recovering(text)
    if recovered is None:
        return AttributeTable()
    module, is_package = module_identity(path, resolver)
    summary = scan_text(recovered, text, name=module, is_package=is_package)
    excluded = rebound_names(recovered.tree) | recovered.dropped
    qualifying = [
        name
        for name, bindings in summary.bindings.items()
        if name not in excluded and all(isinstance(b, _QUALIFYING) for b in bindings)
    ]
    namespace = resolver.namespace(summary)
    candidates: list[tuple[str, Value]] = []
    for chain in [*qualifying, *_import_chains(recovered.tree)]:
        if chain.split(".", 1)[0] in qualifying:
            expression = ast.parse(chain, mode="eval").body
            candidates.append((chain, resolver.evaluate(expression, namespace)))
    # Modules first (their attributes are what a callee is most often looked up in).
    candidates.sort(key=lambda pair: not isinstance(pair[1], ModuleValue))
    stored: dict[str, set[str]] = {}
    for chain, attribute in _STORED.findall(text):
        stored.setdefault(chain, set()).add(attribute)
    return _bounded(resolver, candidates, stored)


def _bounded(
    resolver: ModuleResolver, candidates: list[tuple[str, Value]], stored: dict[str, set[str]]
) -> AttributeTable:
    """The qualifiers whose sets are complete, within the bounds."""
    entries: list[tuple[str, tuple[str, ...]]] = []
    private: set[str] = set()
    total = 0
    for qualifier, value in candidates:
        if not isinstance(value, ModuleValue | ClassValue):
            continue
        found = complete_attributes(resolver, value)
        if found is None:
            continue
        names, hides_private = found
        listed = tuple(sorted(n for n in names | stored.get(qualifier, set()) if n.isidentifier()))
        if total + len(listed) > MAX_NAMES:
            continue
        total += len(listed)
        entries.append((qualifier, listed))
        if hides_private:
            private.add(qualifier)
        if len(entries) == MAX_QUALIFIERS:
            break
    return AttributeTable(tuple(entries), frozenset(private))


def _import_chains(tree: ast.Module) -> list[str]:
    """``a.b`` and ``a.b.c`` for each module-level ``import a.b.c`` (``a`` is a binding)."""
    chains: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname is None and "." in alias.name:
                    parts = alias.name.split(".")
                    chains += [".".join(parts[:count]) for count in range(2, len(parts) + 1)]
    return list(dict.fromkeys(chains))
