"""Code actions (placeholder until the fixes land)."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace

from lsp.engine import Engine


class CodeActions:
    """Ruff fixes and verified AI fixes for diagnostics in a range."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def list(self, doc: TextDocument, range_: types.Range) -> list[types.CodeAction]:
        """The actions for a range."""
        return []

    async def resolve(self, workspace: Workspace, action: types.CodeAction) -> types.CodeAction:
        """Fill in an action's edit."""
        return action
