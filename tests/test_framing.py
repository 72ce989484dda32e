"""The LSP reader's limits: oversized, negative, non-numeric and missing lengths are refused
and the stream stays in sync (``lsp.server.framing.FramedReader``)."""

from __future__ import annotations

import asyncio
import json

import pytest

from lsp.server.framing import FramedReader, content_length, find_id


def frame(body: bytes, length: object | None = None) -> bytes:
    """A message with a Content-Length header (``length`` overrides the true one)."""
    value = len(body) if length is None else length
    return b"Content-Length: %s\r\n\r\n" % str(value).encode() + body


def request(msg_id: object, method: str = "apprentice/ping") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method}).encode()


def read_all(
    stream: bytes, *, chunk: int = 7, max_body: int = 1024
) -> tuple[list[bytes], list[tuple[object, str]]]:
    """Every body pygls would be handed, and every refusal, reading ``chunk`` bytes at a time."""
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    refused: list[tuple[object, str]] = []

    async def read_some() -> bytes:
        return pieces.pop(0) if pieces else b""

    async def main() -> list[bytes]:
        reader = FramedReader(read_some, lambda i, why: refused.append((i, why)), max_body=max_body)
        bodies = []
        while True:
            header = await reader.readline()
            if not header:
                return bodies
            assert header.startswith(b"Content-Length: ")
            assert await reader.readline() == b"\r\n"
            body = await reader.readexactly(int(header.split(b":")[1]))
            assert len(body) == int(header.split(b":")[1])
            bodies.append(body)

    return asyncio.run(main()), refused


def test_valid_frames_pass_unchanged() -> None:
    stream = frame(request(1)) + frame(request("two")) + b"Content-Type: x\r\n" + frame(b"{}")
    bodies, refused = read_all(stream)
    assert bodies == [request(1), request("two"), b"{}"]
    assert refused == []


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_an_oversized_body_is_skipped_and_answered(chunk: int) -> None:
    big = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "x", "params": "a" * 5000}).encode()
    stream = frame(big) + frame(request(10))
    bodies, refused = read_all(stream, chunk=chunk)
    assert bodies == [request(10)]
    assert [i for i, _ in refused] == [9]
    assert "over the limit" in refused[0][1]


def test_a_huge_declared_length_is_refused_without_reading_it_all() -> None:
    stream = frame(request(3), length=10**30)
    bodies, refused = read_all(stream)
    assert bodies == []
    assert refused[0][0] == 3


@pytest.mark.parametrize("length", ["-5", "abc", "12x", "", "1e3"])
def test_a_bad_length_is_answered_and_the_stream_resyncs(length: str) -> None:
    stream = b"Content-Length: %s\r\n\r\n" % length.encode() + request(4) + frame(request(5))
    bodies, refused = read_all(stream)
    assert bodies == [request(5)]
    assert [i for i, _ in refused] == [4]


def test_a_missing_length_is_answered() -> None:
    stream = b"Content-Type: application/json\r\n\r\n" + request(6) + frame(request(7))
    bodies, refused = read_all(stream)
    assert bodies == [request(7)]
    assert refused[0][0] == 6
    assert "without a Content-Length" in refused[0][1]


def test_a_body_with_no_headers_is_answered() -> None:
    bodies, refused = read_all(request(8) + frame(request(11)))
    assert bodies == [request(11)]
    assert refused[0][0] == 8


def test_a_notification_with_a_bad_length_gets_no_reply() -> None:
    note = json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}).encode()
    bodies, refused = read_all(b"Content-Length: -1\r\n\r\n" + note + frame(request(12)))
    assert bodies == [request(12)]
    assert refused == []


def test_junk_that_is_not_json_is_dropped_up_to_the_next_frame() -> None:
    stream = b"Content-Length: nope\r\n\r\nthis is not json at all" + frame(request(13))
    bodies, refused = read_all(stream)
    assert bodies == [request(13)]
    assert refused == [(None, refused[0][1])]


def test_conflicting_lengths_are_refused() -> None:
    assert content_length([b"Content-Length: 3\r\n", b"Content-Length: 4\r\n"])[0] is None
    assert content_length([b"content-length: 3\r\n"]) == (3, None)
    assert content_length([b"Content-Length: 0\r\n"])[0] is None


def test_find_id_only_before_params() -> None:
    assert find_id(b'{"jsonrpc":"2.0","id":"a\\"b","method":"m"}') == 'a"b'
    assert find_id(b'{"method":"m","params":{"id":5}}') is None
    assert find_id(b'{"id": 42, "params"') == 42


def test_an_unframed_body_is_not_parsed_past_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import lsp.server.framing as framing

    monkeypatch.setattr(framing, "MAX_UNFRAMED", 64)
    junk = b'{"jsonrpc": "2.0", "id": 21, "method": "m", "params": "' + b"x" * 500
    stream = b"Content-Length: oops\r\n\r\n" + junk
    bodies, refused = read_all(stream, chunk=16, max_body=10_000)
    assert bodies == []
    assert refused and refused[0][0] == 21
