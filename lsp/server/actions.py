"""Code actions: ruff's own fixes, and model fixes offered only once lint_bridge verifies them.

Listing runs ruff on the buffer (tens of milliseconds) and nothing else; a model fix is
computed in ``codeAction/resolve``, when the user picks it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace

from lint_bridge.api import CheckSettings, Document, LintBridgeError
from lint_bridge.ruff import RuffDiagnostic
from lint_bridge.verify import Verifier
from lsp.core.fixing import FixOffer, FixPipeline, ProposedFix, find_target, fix_offers
from lsp.server import convert, uris
from lsp.server.engine import Engine
from model.runtime.api import CancelToken, ModelError

logger = logging.getLogger(__name__)

SOURCE = "apprentice"


class CodeActions:
    """Ruff fixes and verified model fixes for the ruff diagnostics in a range."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._verifier: Verifier | None = None
        self._pipeline: tuple[object, FixPipeline] | None = None

    @property
    def verifier(self) -> Verifier:
        """The verifier fixes are judged by (ruff always on: a fix is about a ruff rule)."""
        if self._verifier is None:
            verify = self.engine.settings.verify
            self._verifier = Verifier(
                CheckSettings(syntax=True, ruff=True, symbols=verify.symbols),
                workspace_root=self.engine.root,
                known_symbols=self.engine.known_symbol,
            )
        return self._verifier

    def _document(self, doc: TextDocument) -> Document:
        path = convert.document_path(doc) or Path(doc.uri)
        return Document(path, doc.source, convert.document_language(doc), doc.version)

    async def _diagnostics(self, doc: TextDocument) -> list[RuffDiagnostic]:
        document = self._document(doc)
        found = await self.verifier.ruff.diagnostics(document.text, document.path)
        return found or []

    async def list(self, doc: TextDocument, range_: types.Range) -> list[types.CodeAction]:
        """One action per ruff diagnostic touching the range; model fixes left unresolved."""
        diagnostics = await self._diagnostics(doc)
        actions = []
        for offer in fix_offers(diagnostics, range_.start.line, range_.end.line):
            action = types.CodeAction(
                title=offer.title,
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[self._diagnostic(doc, offer.target)],
                data={"uri": doc.uri, "version": doc.version, **offer.data()},
            )
            if offer.kind == "ruff":
                action.edit = self._ruff_edit(doc, offer)
                action.is_preferred = True
            actions.append(action)
        return actions

    def _diagnostic(self, doc: TextDocument, target: RuffDiagnostic) -> types.Diagnostic:
        start, end = target.offsets(doc.source)
        return types.Diagnostic(
            range=convert.range_of(doc, start, end),
            message=target.message,
            code=target.code,
            source="ruff",
            severity=types.DiagnosticSeverity.Warning,
        )

    def _ruff_edit(self, doc: TextDocument, offer: FixOffer) -> types.WorkspaceEdit | None:
        fix = offer.target.fix
        if fix is None:
            return None
        try:
            splices = fix.splices(doc.source)
        except LintBridgeError as error:
            logger.warning("ruff's fix for %s does not apply: %s", offer.target.code, error)
            return None
        edits = [
            types.TextEdit(range=convert.range_of(doc, s.start, s.end), new_text=s.text)
            for s in splices
        ]
        return types.WorkspaceEdit(changes={doc.uri: edits})

    async def resolve(self, workspace: Workspace, action: types.CodeAction) -> types.CodeAction:
        """Fill in the edit of a model fix: generated, verified, or the action is disabled."""
        data = convert.json_object(action.data)
        uri = data.get("uri")
        if action.edit is not None or not isinstance(uri, str):
            return action
        doc = workspace.text_documents.get(uris.document_key(uri))
        if doc is None or doc.version != data.get("version"):
            return _disabled(action, "the document changed; ask for the fix again")
        target = find_target(await self._diagnostics(doc), data)
        if target is None:
            return _disabled(action, "the diagnostic is gone")
        fix = await self._propose(doc, target)
        if fix is None:
            return _disabled(action, "the model found no fix that passes verification")
        if doc.version != data.get("version"):
            return _disabled(action, "the document changed; ask for the fix again")
        edit = types.TextEdit(
            range=convert.range_of(doc, fix.start, fix.end), new_text=fix.new_text
        )
        action.edit = types.WorkspaceEdit(changes={uri: [edit]})
        return action

    async def _propose(self, doc: TextDocument, target: RuffDiagnostic) -> ProposedFix | None:
        engine = self.engine
        backend = engine.backend
        if backend is None or engine.status.state != "ready":
            return None
        if self._pipeline is None or self._pipeline[0] is not backend:
            self._pipeline = (backend, FixPipeline(backend, self.verifier))
        pipeline = self._pipeline[1]
        document = self._document(doc)
        cancel = CancelToken()
        try:
            return await engine.run(lambda: pipeline.propose(document, target, cancel))
        except asyncio.CancelledError:
            cancel.cancel()
            raise
        except ModelError as error:
            logger.error("no fix for %s: %s", target.code, error)
            return None


def _disabled(action: types.CodeAction, reason: str) -> types.CodeAction:
    logger.info("fix %r not offered: %s", action.title, reason)
    action.disabled = types.CodeActionDisabled(reason=reason)
    return action
