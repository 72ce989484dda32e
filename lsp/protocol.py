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

logger = logging.getLogger(__name__)

# A notification no handler listens to: what an already-answered bad request becomes.
_ANSWERED = "$/apprentice/answeredInvalidRequest"


class ApprenticeProtocol(LanguageServerProtocol):
    """pygls's protocol, answering requests it cannot decode instead of dropping them."""

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
