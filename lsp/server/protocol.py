"""JSON-RPC robustness pygls 2.1 lacks: a reply to every request whose params do not parse.

pygls raises ``JsonRpcInvalidParams`` while decoding such a message and then drops it, so
the client never gets an answer and waits forever. Here the error is answered (-32602) and
the message is swallowed; everything else is pygls's own handling.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCNotification
from pygls.protocol.language_server import lsp_method

from lsp.server import uris
from lsp.server.sync import Edit, apply_changes

logger = logging.getLogger(__name__)

# A notification no handler listens to: what an already-answered bad request becomes.
_ANSWERED = "$/apprentice/answeredInvalidRequest"


class ApprenticeProtocol(LanguageServerProtocol):
    """pygls's protocol, answering requests it cannot decode instead of dropping them, and
    applying document edits checked (``lsp.server.sync``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Documents whose text the server can no longer trust (keys as pygls stores them).
        self.out_of_sync: set[str] = set()

    def in_sync(self, uri: str) -> bool:
        """Whether the server's copy of a document is the editor's."""
        return uris.document_key(uri) not in self.out_of_sync

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Any:
        """An opened document is in sync: the editor sent all of it."""
        self.out_of_sync.discard(uris.document_key(params.text_document.uri))
        yield from super().lsp_text_document__did_open(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Any:
        """Closing forgets the document, in sync or not."""
        self.out_of_sync.discard(uris.document_key(params.text_document.uri))
        yield from super().lsp_text_document__did_close(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Any:
        """Apply the edits checked; a document they do not fit is marked out of sync."""
        key = uris.document_key(params.text_document.uri)
        doc = self.workspace.text_documents.get(key)
        if doc is None:
            logger.warning("didChange for a document that is not open: %s", key)
            return
        edits = [
            Edit(
                change.text,
                (change.range.start.line, change.range.start.character),
                (change.range.end.line, change.range.end.character),
            )
            if isinstance(change, types.TextDocumentContentChangePartial)
            else Edit(change.text)
            for change in params.content_changes
        ]
        chosen = self.workspace.position_encoding or "utf-16"
        encoding = str(getattr(chosen, "value", chosen))
        version = params.text_document.version
        outcome = apply_changes(doc.source, doc.version, version, edits, encoding)
        if outcome.problem is None and any(edit.start is None for edit in edits):
            self.out_of_sync.discard(key)  # the whole text: in sync again
        elif outcome.problem is not None and key not in self.out_of_sync:
            self.out_of_sync.add(key)
            logger.warning(
                "%s is out of sync (%s): no suggestions for it until the editor sends it whole",
                key,
                outcome.problem,
            )
        self.workspace.put_text_document(
            types.TextDocumentItem(
                uri=key, language_id=doc.language_id or "", version=version, text=outcome.text
            )
        )
        handler = self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)
        if handler is not None:
            yield handler, (params,), None

    def reply_parse_error(self, detail: str) -> None:
        """The reply JSON-RPC prescribes to a message that is not JSON: error -32700, id null."""
        self.reply_error(None, types.ErrorCodes.ParseError.value, f"parse error: {detail}")

    def reply_invalid_request(self, msg_id: int | str | None, detail: str) -> None:
        """Error -32600 for a message refused before it was decoded (bad framing)."""
        self.reply_error(
            msg_id, types.ErrorCodes.InvalidRequest.value, f"invalid request: {detail}"
        )

    def reply_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        """An error reply, also to id null (which the attrs message types cannot send)."""
        # A plain dict: the attrs message type would drop the null id when serialised.
        error = {"code": code, "message": message}
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": error})

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Decode one message; a request with bad params gets error -32602 at once."""
        try:
            return super().structure_message(data)
        except JsonRpcInvalidParams as error:
            msg_id = data.get("id")
            method = data.get("method")
            if msg_id is None or not isinstance(method, str):
                raise  # a notification or a reply: nothing to answer
            logger.warning("invalid params for %s (request %s); answered -32602", method, msg_id)
            detail = str(error.__cause__ or error)
            self._send_response(
                msg_id,
                error=types.ResponseError(
                    code=types.ErrorCodes.InvalidParams,
                    message=f"invalid params for {method}: {detail.splitlines()[0]}",
                ),
            )
            return JsonRPCNotification(method=_ANSWERED, jsonrpc="2.0", params=None)
