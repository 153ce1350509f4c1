"""`wsgi.input` over the real body decoders, fed by a scripted peer.

The peer is the only fake: a receive buffer and a list of the pieces the client sends,
one per receive, then end of stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from corral.http.errors import FieldsTooLarge, IncompleteBody, RequestError
from corral.http.parser import HeadLimits, body_decoder, parse_head
from corral.wsgi.input import DISCARD_LIMIT, RequestBody

LIMITS = HeadLimits()
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: next\r\n\r\n"
CHUNKED = (
    b"5;name=value\r\nhello\r\n"
    b"1;ext\r\n \r\n"
    b'A ; quoted="a b"\r\nworld\nand \r\n'
    b"0\r\nX-Checksum: abc\r\nX-Other:  two words \r\n\r\n"
)
CHUNKED_DECODED = b"hello world\nand "


class ScriptedPeer:
    """The connection's side of a body: `buffer` holds what arrived with the head."""

    def __init__(self, buffered: bytes, pieces: Iterable[bytes], log: list[str]) -> None:
        self.buffer = bytearray(buffered)
        self.pieces = list(pieces)
        self.log = log

    def _next_piece(self, size: int) -> bytes:
        self.log.append("receive")
        if not self.pieces:
            raise IncompleteBody("peer closed the connection inside a request body")
        piece = self.pieces.pop(0)
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
            piece = piece[:size]
        return piece

    def receive(self) -> None:
        self.buffer += self._next_piece(65536)

    def receive_unframed(self, size: int) -> bytes:
        return self._next_piece(size)


def body_of(
    fields: bytes,
    buffered: bytes = b"",
    pieces: Iterable[bytes] = (),
    on_first_read: Callable[[], None] | None = None,
    log: list[str] | None = None,
) -> tuple[RequestBody, ScriptedPeer]:
    head_bytes = b"POST /upload HTTP/1.1\r\nHost: example\r\n" + fields + b"\r\n"
    parsed = parse_head(head_bytes, LIMITS)
    assert parsed is not None
    head, _ = parsed
    peer = ScriptedPeer(buffered, pieces, [] if log is None else log)
    return RequestBody(peer, body_decoder(head, LIMITS), on_first_read), peer


def length_body(data: bytes, **kwargs: Any) -> tuple[RequestBody, ScriptedPeer]:
    return body_of(b"Content-Length: %d\r\n" % len(data), **kwargs)


def chunked_body(**kwargs: Any) -> tuple[RequestBody, ScriptedPeer]:
    return body_of(b"Transfer-Encoding: chunked\r\n", **kwargs)


def one_byte_pieces(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


LINES = b"first line\nsecond\n\nlast, no newline"


# Content-Length bodies.


def test_length_body_read_whole_leaves_the_next_request_buffered() -> None:
    body, peer = length_body(LINES, buffered=LINES + NEXT_REQUEST)
    assert body.read() == LINES
    assert body.read() == b""
    assert peer.buffer == NEXT_REQUEST
    assert peer.log == []


def test_length_body_read_whole_from_pieces() -> None:
    body, peer = length_body(
        LINES, buffered=b"fir", pieces=[b"st line\nsec", b"ond\n\nlast, no newline"]
    )
    assert body.read() == LINES
    assert peer.pieces == []


def test_length_body_read_whole_byte_by_byte_never_reads_past_its_end() -> None:
    body, peer = length_body(LINES, pieces=[*one_byte_pieces(LINES), NEXT_REQUEST])
    assert body.read() == LINES
    assert peer.pieces == [NEXT_REQUEST]


def test_read_n_gives_n_bytes_across_pieces_until_the_end() -> None:
    body, _ = length_body(LINES, pieces=one_byte_pieces(LINES))
    assert body.read(4) == b"firs"
    assert body.read(0) == b""
    assert body.read(10) == b"t line\nsec"
    assert body.read(None) == b"ond\n\nlast, no newline"
    assert body.read(4) == b""
    assert body.read() == b""


def test_read_n_larger_than_the_body_gives_the_rest() -> None:
    body, peer = length_body(b"short", buffered=b"short" + NEXT_REQUEST)
    assert body.read(100) == b"short"
    assert body.read(100) == b""
    assert peer.buffer == NEXT_REQUEST


def test_readline_splits_at_newlines_and_honours_its_size() -> None:
    body, _ = length_body(LINES, pieces=one_byte_pieces(LINES))
    assert body.readline(5) == b"first"
    assert body.readline() == b" line\n"
    assert body.readline(-1) == b"second\n"
    assert body.readline(None) == b"\n"
    assert body.readline(0) == b""
    assert body.readline() == b"last, no newline"
    assert body.readline() == b""


def test_read_after_a_partial_readline_returns_what_it_buffered_first() -> None:
    body, _ = length_body(LINES, buffered=LINES)
    assert body.readline(3) == b"fir"
    assert body.read(5) == b"st li"
    assert body.read() == b"ne\nsecond\n\nlast, no newline"


def test_readlines_and_its_hint() -> None:
    body, _ = length_body(LINES, buffered=LINES)
    assert body.readlines() == [b"first line\n", b"second\n", b"\n", b"last, no newline"]
    assert body.readlines() == []
    body, _ = length_body(LINES, buffered=LINES)
    assert body.readlines(12) == [b"first line\n", b"second\n"]
    assert body.readlines(1) == [b"\n"]


def test_iteration_gives_the_lines() -> None:
    body, _ = length_body(LINES, pieces=[LINES[:13], LINES[13:]])
    assert iter(body) is body
    assert list(body) == [b"first line\n", b"second\n", b"\n", b"last, no newline"]
    assert list(body) == []


def test_no_body_reads_empty_without_asking_the_peer() -> None:
    calls: list[str] = []
    for fields in (b"", b"Content-Length: 0\r\n"):
        body, peer = body_of(
            fields, buffered=NEXT_REQUEST, on_first_read=lambda: calls.append("continue")
        )
        assert body.read() == b""
        assert body.read(10) == b""
        assert body.readline() == b""
        assert body.discard() is True
        assert peer.buffer == NEXT_REQUEST
    assert calls == []


def test_length_body_cut_short_raises_incomplete_body() -> None:
    body, _ = length_body(b"0123456789", buffered=b"0123", pieces=[b"45"])
    with pytest.raises(IncompleteBody):
        body.read()
    body, _ = length_body(b"0123456789", buffered=b"0123")
    assert body.read(4) == b"0123"
    with pytest.raises(IncompleteBody):
        body.read(1)


# Chunked bodies.


def test_chunked_body_whole_skips_extensions_and_trailers() -> None:
    body, peer = chunked_body(buffered=CHUNKED + NEXT_REQUEST)
    assert body.read() == CHUNKED_DECODED
    assert body.read() == b""
    assert peer.buffer == NEXT_REQUEST
    assert peer.log == []


def test_chunked_body_byte_by_byte() -> None:
    body, peer = chunked_body(pieces=[*one_byte_pieces(CHUNKED), NEXT_REQUEST])
    assert body.read() == CHUNKED_DECODED
    assert peer.pieces == [NEXT_REQUEST]


def test_chunked_body_read_n_and_lines_across_chunks() -> None:
    body, _ = chunked_body(pieces=one_byte_pieces(CHUNKED))
    assert body.read(8) == b"hello wo"
    assert body.readline() == b"rld\n"
    assert body.read(100) == b"and "
    assert body.read(1) == b""
    body, _ = chunked_body(buffered=CHUNKED)
    assert list(body) == [b"hello world\n", b"and "]


@pytest.mark.parametrize(
    ("wire", "error", "status"),
    [
        (b"5\r\nhello\r\nzz\r\n", RequestError, 400),
        (b"-1\r\n", RequestError, 400),
        (b"5\r\nhelloX\r\n0\r\n\r\n", RequestError, 400),
        (b"5\nhello\r\n0\r\n\r\n", RequestError, 400),
        (b"5;ext\x01\r\nhello\r\n0\r\n\r\n", RequestError, 400),
        (b"0\r\nno colon\r\n\r\n", RequestError, 400),
        (b"0\r\nContent-Length: 5\r\n\r\n", RequestError, 400),
        (b"0\r\nX-Big: " + b"a" * LIMITS.field_size + b"\r\n\r\n", FieldsTooLarge, 431),
    ],
)
def test_malformed_chunked_body_is_refused_whole_and_byte_by_byte(
    wire: bytes, error: type[RequestError], status: int
) -> None:
    for body, _ in (chunked_body(buffered=wire), chunked_body(pieces=one_byte_pieces(wire))):
        with pytest.raises(RequestError) as raised:
            body.read()
        assert type(raised.value) is error
        assert raised.value.status == status


def test_chunked_body_cut_short_raises_incomplete_body() -> None:
    for wire in (b"5\r\nhel", b"5\r\nhello\r\n", b"5\r\nhello\r\n0\r\nX-A: b\r\n"):
        body, _ = chunked_body(pieces=[wire])
        with pytest.raises(IncompleteBody):
            body.read()


# Dropping an unread body.


def test_discard_reads_a_small_unread_body_to_its_end() -> None:
    body, peer = length_body(LINES, buffered=LINES[:5], pieces=[LINES[5:] + NEXT_REQUEST])
    assert body.readline(2) == b"fi"
    assert body.discard() is True
    assert body.read() == b""
    assert peer.pieces == [NEXT_REQUEST]
    body, peer = chunked_body(pieces=[*one_byte_pieces(CHUNKED), NEXT_REQUEST])
    assert body.discard() is True
    assert peer.pieces == [NEXT_REQUEST]


def test_discard_gives_up_past_the_limit() -> None:
    size = 2 * DISCARD_LIMIT
    piece = b"x" * 65536
    body, peer = length_body(b"x" * size, pieces=[piece] * (size // len(piece)))
    assert body.discard() is False
    assert peer.pieces
    assert not body.decoder.done


def test_too_long_to_discard_for_a_length_body() -> None:
    assert length_body(b"x" * DISCARD_LIMIT)[0].too_long_to_discard() is False
    body, _ = length_body(b"x" * (DISCARD_LIMIT + 1), buffered=b"x")
    assert body.too_long_to_discard() is True
    assert body.read(1) == b"x"
    assert body.too_long_to_discard() is False
    assert body_of(b"")[0].too_long_to_discard() is False


def test_too_long_to_discard_for_a_chunked_body_knows_only_the_current_chunk() -> None:
    body, _ = chunked_body(buffered=b"%x\r\nxx" % (DISCARD_LIMIT + 2))
    assert body.too_long_to_discard() is False
    assert body.read(1) == b"x"
    assert body.too_long_to_discard() is True
    assert body.read(1) == b"x"
    assert body.too_long_to_discard() is False


# 100 Continue.


def test_continue_runs_once_just_before_the_peer_is_first_asked() -> None:
    log: list[str] = []
    body, _ = length_body(
        LINES,
        buffered=LINES[:3],
        pieces=[LINES[3:10], LINES[10:]],
        on_first_read=lambda: log.append("continue"),
        log=log,
    )
    assert body.read(3) == b"fir"
    assert log == []
    assert body.read(5) == b"st li"
    assert log == ["continue", "receive"]
    assert body.read() == LINES[8:]
    assert log == ["continue", "receive", "receive", "receive"]
    assert body.cancel_continue() is False


def test_continue_runs_before_an_unframed_chunk_read() -> None:
    log: list[str] = []
    body, _ = chunked_body(
        buffered=b"5\r\nhe",
        pieces=[b"llo\r\n0\r\n\r\n"],
        on_first_read=lambda: log.append("continue"),
        log=log,
    )
    assert body.read(2) == b"he"
    assert log == []
    assert body.read() == b"llo"
    assert log == ["continue", "receive", "receive"]


def test_continue_is_not_sent_when_the_body_came_without_waiting() -> None:
    log: list[str] = []
    body, _ = chunked_body(buffered=CHUNKED, on_first_read=lambda: log.append("continue"), log=log)
    assert body.read() == CHUNKED_DECODED
    assert log == []
    assert body.cancel_continue() is True


def test_cancel_continue_before_the_first_read_drops_it() -> None:
    log: list[str] = []
    body, _ = length_body(
        LINES, pieces=[LINES], on_first_read=lambda: log.append("continue"), log=log
    )
    assert body.cancel_continue() is True
    assert body.cancel_continue() is False
    assert body.read() == LINES
    assert log == ["receive"]


def test_cancel_continue_without_a_callback() -> None:
    body, _ = length_body(LINES, buffered=LINES)
    assert body.cancel_continue() is False
