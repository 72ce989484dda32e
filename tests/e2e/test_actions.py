"""Code actions: ruff's own fix for a diagnostic, listed and resolved over LSP."""

from __future__ import annotations

import pytest
from lsprotocol import types

from tests.e2e.conftest import Session, apply_edits

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

TOOL = "shop/tool.py"
TEXT = (
    '"""Doubling numbers."""\n'
    "\n"
    "import os\n"
    "\n"
    "\n"
    "def double(value: int) -> int:\n"
    '    """Twice the value."""\n'
    "    return value * 2\n"
)
IMPORT_LINE = 2


def edits_for(edit: types.WorkspaceEdit | None, uri: str) -> list[types.TextEdit]:
    """The text edits a workspace edit makes to one document (either shape of the edit)."""
    if edit is None:
        return []
    found: list[types.TextEdit] = list((edit.changes or {}).get(uri, []))
    for change in edit.document_changes or []:
        if isinstance(change, types.TextDocumentEdit) and change.text_document.uri == uri:
            found += [e for e in change.edits if isinstance(e, types.TextEdit)]
    return found


def code_lines(text: str) -> list[str]:
    """The non-blank lines of a text."""
    return [line for line in text.splitlines() if line.strip()]


async def test_unused_import_fix_removes_the_import(session: Session) -> None:
    await session.initialize()
    uri = session.open(TOOL, TEXT)
    line = types.Range(
        start=types.Position(line=IMPORT_LINE, character=0),
        end=types.Position(line=IMPORT_LINE, character=len("import os")),
    )
    # What an editor sends: the diagnostics it shows on that line (here, ruff's own).
    diagnostic = types.Diagnostic(
        range=types.Range(
            start=types.Position(line=IMPORT_LINE, character=7),
            end=types.Position(line=IMPORT_LINE, character=9),
        ),
        message="`os` imported but unused",
        severity=types.DiagnosticSeverity.Warning,
        code="F401",
        source="Ruff",
    )

    actions = await session.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=line,
            context=types.CodeActionContext(
                diagnostics=[diagnostic], trigger_kind=types.CodeActionTriggerKind.Invoked
            ),
        )
    )

    listed = [a for a in actions or [] if isinstance(a, types.CodeAction)]
    assert listed, f"no code action for an unused import (answer: {actions!r})"
    fixed: list[str] = []
    for action in listed:
        assert action.kind is None or action.kind.startswith(types.CodeActionKind.QuickFix)
        if action.edit is None:
            action = await session.client.code_action_resolve_async(action)
        edits = edits_for(action.edit, uri)
        if edits:
            fixed.append(apply_edits(TEXT, edits))
    removed = [text for text in fixed if "import os" not in text]
    assert removed, f"no action removes the import: {[a.title for a in listed]}"
    result = removed[0]
    # Only the import goes (blank lines around it may be tidied too).
    assert code_lines(result) == [line for line in code_lines(TEXT) if line != "import os"]
    compile(result, TOOL, "exec")


BARE_EXCEPT = "shop/safe.py"
BARE_TEXT = (
    '"""Reading numbers that may be malformed."""\n'
    "\n"
    "\n"
    "def parse_number(text: str) -> int:\n"
    '    """The integer in ``text``, or 0 when there is none."""\n'
    "    try:\n"
    "        return int(text)\n"
    "    except:\n"
    "        return 0\n"
)
EXCEPT_LINE = 7


async def test_model_fix_is_resolved_and_verified(session: Session, gemma_path: object) -> None:
    await session.initialize()
    await session.wait_ready()
    uri = session.open(BARE_EXCEPT, BARE_TEXT)
    line = types.Range(
        start=types.Position(line=EXCEPT_LINE, character=4),
        end=types.Position(line=EXCEPT_LINE, character=11),
    )

    actions = await session.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=line,
            context=types.CodeActionContext(diagnostics=[]),
        )
    )

    # Ruff has no fix for a bare except (E722): the model's fix is offered, computed on resolve.
    listed = [a for a in actions or [] if isinstance(a, types.CodeAction)]
    [action] = [a for a in listed if "E722" in a.title]
    assert action.edit is None
    assert action.kind == types.CodeActionKind.QuickFix
    resolved = await session.client.code_action_resolve_async(action)
    assert resolved.disabled is None, resolved.disabled
    fixed = apply_edits(BARE_TEXT, edits_for(resolved.edit, uri))
    compile(fixed, BARE_EXCEPT, "exec")
    assert "    except:\n" not in fixed
    assert "except " in fixed
    assert "return int(text)" in fixed
