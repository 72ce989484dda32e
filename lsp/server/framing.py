"""LSP message framing with limits, in front of pygls's message loop.

pygls 2.1 reads a ``Content-Length`` of any size (a client, or anything writing to the pipe,
can make the server allocate gigabytes), skips a header it cannot parse and then reads the
next body as headers, so one bad frame desynchronises the stream for good. ``FramedReader``
does the framing itself and hands pygls only well-formed frames of at most ``MAX_BODY``
bytes:

- a body over the cap is read past in chunks (never held) and refused;
- a negative, non-numeric, conflicting or missing length, or a body sent with no headers at
  all: the body is taken to run to the end of the JSON value (or to the next
  ``Content-Length`` header), and refused;

a refusal is an error reply to the request's id when it can be found, else to id null.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from pygls.io_ import StdoutWriter, run_async
from pygls.server import JsonRPCServer

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
# A body whose length the headers do not give is looked for (parsed again as it arrives)
# within this many bytes: parsing is not repeated over megabytes a client never framed.
MAX_UNFRAMED = 1024 * 1024
# A header line longer than this is not a header.
MAX_HEADER_LINE = 8 * 1024
_CHUNK = 64 * 1024
_HEADER = re.compile(rb"[A-Za-z0-9-]+[ \t]*:[^\r\n]*\r?\n")
_NEXT_FRAME = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
# The id of a request, looked for near the start of a body that is not parsed.
_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\\r\n]|\\.){0,200}")')
_ID_REACH = 4096

ReadSome = Callable[[], Awaitable[bytes]]  # up to a chunk of bytes; b"" at the end
Refuse = Callable[[int | str | None, str], None]  # (request id or None, why): an error reply


class FramedReader:
    """The reader pygls's ``run_async`` loop reads from: only valid frames get through.

    pygls asks ``readline`` for headers and ``readexactly`` for the body; here each valid
    message is handed out as a canonical ``Content-Length`` line, a blank line and the body.
    """

    def __init__(self, read_some: ReadSome, refuse: Refuse, *, max_body: int = MAX_BODY) -> None:
        self._read_some = read_some
        self._refuse = refuse
        self.max_body = max_body
        self._buffer = bytearray()
        self._eof = False
        self._lines: list[bytes] = []
        self._body = b""

    async def readline(self) -> bytes:
        """The next header line of a valid frame; b"" at the end of the stream."""
        if not self._lines:
            body = await self.next_body()
            if body is None:
                return b""
            self._body = body
            self._lines = [b"Content-Length: %d\r\n" % len(body), b"\r\n"]
        return self._lines.pop(0)

    async def readexactly(self, n: int) -> bytes:
        """The body of the frame whose headers were just read."""
        body, self._body = self._body, b""
        return body

    async def next_body(self) -> bytes | None:
        """The body of the next valid frame, refusing the invalid ones; None at the end."""
        # One turn of the event loop per message, even when the next one is already buffered:
        # work started by the previous message (a task, a done callback) runs in between.
        await asyncio.sleep(0)
        while True:
            if not await self._skip_blank():
                return None
            if self._buffer[:1] in (b"{", b"["):
                problem: str | None = "a message without headers"
                length = None
            else:
                headers = await self._headers()
                if headers is None:
                    return None
                length, problem = content_length(headers)
            if problem is None and length is not None and length <= self.max_body:
                body = await self._take(length)
                if body is None:
                    return None
                return body
            if problem is None and length is not None:
                head = await self._discard(length)
                self._refuse_with(
                    find_id(head),
                    f"a message of {length} bytes is over the limit of "
                    f"{self.max_body} bytes; ignored",
                )
                continue
            unframed = await self._unframed()
            if unframed is _END:
                return None
            self._refuse_with(unframed, f"{problem}; message ignored")

    def _refuse_with(self, found: int | str | _Marker | None, why: str) -> None:
        if isinstance(found, _Marker):
            logger.warning("refused a notification: %s", why)
            return
        logger.warning("refused a message (id %r): %s", found, why)
        self._refuse(found, why)

    # -- buffer --------------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Read one more chunk; False at the end of the stream."""
        if self._eof:
            return False
        chunk = await self._read_some()
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def _skip_blank(self) -> bool:
        """Drop whitespace between messages; False when the stream ended first."""
        while True:
            stripped = self._buffer.lstrip()
            if len(stripped) != len(self._buffer):
                del self._buffer[: len(self._buffer) - len(stripped)]
            if self._buffer:
                return True
            if not await self._fill():
                return False

    async def _line(self) -> bytes | None:
        """One line, newline included (at most ``MAX_HEADER_LINE`` bytes); None at the end."""
        while True:
            end = self._buffer.find(b"\n", 0, MAX_HEADER_LINE)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) >= MAX_HEADER_LINE:
                line = bytes(self._buffer[:MAX_HEADER_LINE])
                del self._buffer[:MAX_HEADER_LINE]
                return line
            if not await self._fill():
                line = bytes(self._buffer)
                self._buffer.clear()
                return line or None

    async def _headers(self) -> list[bytes] | None:
        """Header lines up to the blank line that ends them; None at the end of the stream.

        A line that is not a header ends the block too (it is kept as the body's start).
        """
        headers: list[bytes] = []
        while True:
            line = await self._line()
            if line is None:
                return None
            if line.strip() == b"":
                return headers
            if not _HEADER.fullmatch(line):
                # Not a header: the body (or junk) began without the blank line.
                self._buffer[:0] = line
                headers.append(b"X-Apprentice-Bad-Header: \r\n")
                return headers
            headers.append(line)

    async def _take(self, length: int) -> bytes | None:
        while len(self._buffer) < length:
            if not await self._fill():
                return None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    async def _discard(self, length: int) -> bytes:
        """Read past ``length`` bytes without keeping them; returns their beginning."""
        head = b""
        left = length
        while left > 0:
            if not self._buffer and not await self._fill():
                break
            piece = min(left, len(self._buffer))
            if len(head) < _ID_REACH:
                head += bytes(self._buffer[: min(piece, _ID_REACH - len(head))])
            del self._buffer[:piece]
            left -= piece
        return head

    async def _unframed(self) -> int | str | _Marker | None:
        """Consume a body of unknown length: one JSON value, else up to the next frame.

        Returns the request id to answer (None: unknown), ``_NOTIFICATION`` when the body is
        a message that wants no answer, ``_END`` when the stream ended first.
        """
        decoder = json.JSONDecoder()
        while True:
            text = self._buffer.decode("utf-8", "surrogateescape")
            try:
                value, end = decoder.raw_decode(text)
            except (ValueError, RecursionError):
                pass
            else:
                del self._buffer[: len(text[:end].encode("utf-8", "surrogateescape"))]
                return _answer_to(value)
            found = _NEXT_FRAME.search(self._buffer, 1)
            if found is not None:
                head = bytes(self._buffer[: found.start()])
                del self._buffer[: found.start()]
                return find_id(head)
            if len(self._buffer) > min(self.max_body, MAX_UNFRAMED):
                head = bytes(self._buffer[:_ID_REACH])
                self._buffer.clear()
                return find_id(head)
            if not await self._fill():
                self._buffer.clear()
                return _END


class _Marker:
    """What ``_unframed`` found when it is not a request id."""


_NOTIFICATION = _Marker()  # a notification or a reply: nothing to answer
_END = _Marker()  # the stream ended


def _answer_to(value: Any) -> int | str | _Marker | None:
    if not isinstance(value, dict):
        return None
    msg_id = value.get("id")
    if "method" not in value or msg_id is None:
        return _NOTIFICATION if "method" in value or "result" in value else None
    return msg_id if isinstance(msg_id, int | str) else None


def content_length(headers: list[bytes]) -> tuple[int | None, str | None]:
    """The body length the headers give, or the problem with them."""
    values = []
    for line in headers:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-apprentice-bad-header":
            return None, "a header line that is not a header"
        if name.strip().lower() == b"content-length":
            values.append(value.strip())
    if not values:
        return None, "a message without a Content-Length header"
    if len(set(values)) > 1:
        return None, "conflicting Content-Length headers"
    value = values[0]
    if value.startswith(b"-") and value[1:].isdigit():
        return None, f"a negative Content-Length ({value.decode('ascii')})"
    if not value.isdigit():
        shown = value[:40].decode("ascii", "replace")
        return None, f"a Content-Length that is not a number ({shown!r})"
    if len(value) > 18:
        return sys.maxsize, None
    length = int(value)
    if length == 0:
        return None, "a message with an empty body"
    return length, None


def find_id(head: bytes) -> int | str | None:
    """The id of a request from the start of its body (before its params), if it shows."""
    params = head.find(b'"params"')
    found = _ID.search(head, 0, params if params >= 0 else len(head))
    if found is None:
        return None
    raw = found.group(1)
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, int | str) else None


# -- serving ---------------------------------------------------------------------------


def serve_io(
    server: JsonRPCServer,
    refuse: Refuse,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """pygls's ``start_io`` with the framed reader in front of the message loop."""
    source = stdin or sys.stdin.buffer
    stop = server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
    pool = server.thread_pool
    read1 = getattr(source, "read1", None) or source.read

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def read_some() -> Awaitable[bytes]:
            return loop.run_in_executor(pool, read1, _CHUNK)

        reader = FramedReader(read_some, refuse)
        await run_async(
            stop_event=stop,
            reader=reader,
            protocol=server.protocol,
            logger=logger,
            error_handler=server.report_server_error,
        )

    try:
        asyncio.run(main())
    except BrokenPipeError:
        logger.error("the connection to the client is lost; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


def serve_tcp(server: JsonRPCServer, refuse: Refuse, host: str, port: int) -> None:
    """pygls's ``start_tcp`` with the framed reader in front of the message loop."""
    stop = server._stop_event = threading.Event()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.protocol.set_writer(writer)

        def read_some() -> Awaitable[bytes]:
            return reader.read(_CHUNK)

        await run_async(
            stop_event=stop,
            reader=FramedReader(read_some, refuse),
            protocol=server.protocol,
            logger=logger,
            error_handler=server.report_server_error,
        )
        server.shutdown()

    async def main() -> None:
        tcp = await asyncio.start_server(connection, host, port)
        server._server = tcp
        logger.info("serving on %s", ", ".join(str(s.getsockname()) for s in tcp.sockets))
        async with tcp:
            await tcp.serve_forever()

    try:
        asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
