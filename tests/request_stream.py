"""A connection's bytes run through the protocol layer alone, as `serving/connection.py`
and `wsgi/input.py` drive it, so that any split of the same bytes can be compared.

`parse_stream` keeps one receive buffer and one `HeadScanner` for the whole stream, takes
each head off the front of the buffer, then reads its body through `body_decoder` until the
decoder is done, taking body bytes straight from the next arrival when the buffer is empty
and the decoder says no framing lies between (`receive_unframed`). A chunked body's end is
also found as the connection finds it before the application runs, by `_ChunkedEnd` fed the
same pieces, and must be the same. It stops at the first `RequestError`, or when the bytes
run out. `check_every_split` asserts that the outcome of one byte string does not depend on
how it arrives.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corral.http.errors import BodyTooLarge, RequestError
from corral.http.parser import BodyDecoder, HeadLimits, HeadScanner, RequestHead, body_decoder

# Private to the connection, which finds a chunked body's end with it before the
# application reads the body with the decoder: where the two disagree, a request hides.
from corral.serving.connection import _ChunkedEnd

# The connection's body reads, `wsgi.input` reads by applications and the sizes in between.
READ_SIZES = (1, 7, 65536)
# The statuses of `corral.http.errors`.
REFUSAL_STATUSES = frozenset({400, 413, 414, 431, 501, 505})


@dataclass(frozen=True)
class Parsed:
    """What a stream of bytes was taken to be.

    `requests` holds each complete request: its head and its decoded body. `ending` says
    why parsing stopped: ("idle",) with every byte used; ("head incomplete", buffered) or
    ("body incomplete", head, body so far, buffered) when the bytes ran out; or
    ("refused", status, "head" | "body").
    """

    requests: tuple[tuple[RequestHead, bytes], ...]
    ending: tuple[object, ...]


def parse_stream(
    pieces: Iterable[bytes], limits: HeadLimits, read_size: int, unframed: bool
) -> Parsed:
    """Parse a connection that receives `pieces`, one per receive, in order.

    Body reads ask for `read_size` bytes; with `unframed`, body bytes are taken past the
    empty buffer as `RequestBody` does. A Content-Length over `limits.body_size` is
    refused before its body, as the connection does. Any exception but `RequestError`
    escapes: it is a bug of the protocol layer.

    The connection finds where a chunked body ends before the application reads it, with
    `_ChunkedEnd` fed the same pieces; the end it finds, or the error, must be where the
    decoder's reads end.
    """
    stream = _Stream(pieces)
    scanner = HeadScanner(limits)
    requests: list[tuple[RequestHead, bytes]] = []
    where = "head"
    try:
        while True:
            where = "head"
            parsed = scanner.parse(stream.buffer)
            if parsed is None:
                if not stream.receive():
                    return Parsed(tuple(requests), ("head incomplete", bytes(stream.buffer)))
                continue
            head, size = parsed
            stream.take(size)
            where = "body"
            if head.content_length is not None and head.content_length > limits.body_size > 0:
                raise BodyTooLarge("Content-Length over the limit")
            if head.chunked:
                stream.start_probe(limits)
            body = _read_body(stream, body_decoder(head, limits), read_size, unframed)
            if body is None:
                ending = ("body incomplete", head, bytes(stream.body), bytes(stream.buffer))
                return Parsed(tuple(requests), ending)
            requests.append((head, body))
            if not stream.buffer and not stream.arriving:
                return Parsed(tuple(requests), ("idle",))
    except RequestError as error:
        if where == "body" and stream.probe is not None:
            found = stream.probe.error
            assert found is not None, f"the decoder refused a chunked body ({error}), the probe not"
            assert found.status == error.status, f"the probe refused with {found}, reads {error}"
        return Parsed(tuple(requests), ("refused", error.status, where))


def _read_body(
    stream: _Stream, decoder: BodyDecoder, read_size: int, unframed: bool
) -> bytes | None:
    """The body, read as bytes arrive; None when the stream ends inside it."""
    body = stream.body = bytearray()
    while not decoder.done:
        count = decoder.unframed(read_size) if unframed and not stream.buffer else 0
        if count and stream.arriving:
            piece = stream.receive_unframed(count)
            decoder.take_unframed(len(piece))
            body += piece
            continue
        before = len(stream.buffer)
        data = decoder.read(stream.buffer, read_size)
        stream.position += before - len(stream.buffer)
        assert len(data) <= read_size, f"read {len(data)} bytes when {read_size} asked"
        if data or decoder.done:
            body += data
            continue
        if not stream.receive():
            return None
    probe = stream.probe
    if probe is not None:
        assert probe.error is None, f"the probe refused a chunked body ({probe.error}), reads not"
        assert stream.probe_end == stream.position, (
            f"a chunked body ends at {stream.position}, the probe says {stream.probe_end}"
        )
        stream.probe = None
    return bytes(body)


class _Stream:
    """One connection's receive side: the pieces still to arrive, the buffer, and where
    in the whole stream the buffer starts."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.arriving = deque(piece for piece in pieces if piece)
        self.buffer = bytearray()
        self.position = 0
        self.body = bytearray()
        self.probe: _ChunkedEnd | None = None
        # Where the probe found the body's end, and the end of what it has been fed.
        self.probe_end: int | None = None
        self.fed = 0

    def receive(self) -> bool:
        if not self.arriving:
            return False
        piece = self.arriving.popleft()
        self.buffer += piece
        self._feed_probe(piece)
        return True

    def receive_unframed(self, count: int) -> bytes:
        piece = self.arriving.popleft()
        if len(piece) > count:
            self.arriving.appendleft(piece[count:])
            piece = piece[:count]
        self.position += len(piece)
        self._feed_probe(piece)
        return piece

    def take(self, count: int) -> None:
        del self.buffer[:count]
        self.position += count

    def start_probe(self, limits: HeadLimits) -> None:
        # As the connection does once a head has arrived: the bytes behind it first.
        self.probe = _ChunkedEnd(limits)
        self.probe_end = None
        self.fed = self.position
        self._feed_probe(bytes(self.buffer))

    def _feed_probe(self, data: bytes) -> None:
        self.fed += len(data)
        if self.probe is None or self.probe_end is not None or not data:
            return
        past = self.probe.feed(data)
        if past is not None:
            self.probe_end = self.fed - past


def pieces_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` cut at each position in `cuts` (out-of-range and repeated cuts ignored)."""
    positions = sorted({cut for cut in cuts if 0 < cut < len(data)})
    edges = [0, *positions, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


def check_every_split(
    data: bytes, limits: HeadLimits, cuts: Sequence[int] = (), every_read: bool = True
) -> Parsed:
    """Parse `data` whole, byte by byte and cut at `cuts`, with each read size, with and
    without unframed reads; assert every way gives the same `Parsed`, and return it.

    Without `every_read`, only byte by byte with unframed reads of one byte and cut at
    `cuts` with reads of 7 are compared to whole: a third of the work, for fuzzing.

    A refusal must come at the same request and in the same part of it; only its status
    may differ, when the bytes break more than one rule and the first rule broken to
    arrive decides (see `parse_head`).
    """
    whole = parse_stream([data], limits, READ_SIZES[-1], unframed=False)
    byte_by_byte = [data[index : index + 1] for index in range(len(data))]
    cut = pieces_at(data, cuts)
    cut_name = f"cut at {sorted(set(cuts))}"
    if not every_read:
        ways = [("byte by byte", byte_by_byte, 1, True), (cut_name, cut, 7, False)]
    else:
        ways = [
            ("byte by byte", byte_by_byte, 1, True),
            ("byte by byte", byte_by_byte, READ_SIZES[-1], False),
            ("whole", [data], 1, True),
            ("whole", [data], 7, False),
        ]
        ways += [
            (cut_name, cut, size, unframed) for size in READ_SIZES for unframed in (False, True)
        ]
    for name, pieces, read_size, unframed in ways:
        other = parse_stream(pieces, limits, read_size, unframed)
        context = f"{name}, reads of {read_size}, unframed={unframed}, input {data!r}"
        assert other.requests == whole.requests, f"requests differ: {context}"
        if whole.ending[0] == "refused":
            # Where the bytes break two rules, the first broken to arrive decides the status.
            assert other.ending[::2] == whole.ending[::2], f"{other.ending}: {context}"
            assert other.ending[1] in REFUSAL_STATUSES, f"{other.ending}: {context}"
        else:
            assert other.ending == whole.ending, f"{other.ending} != {whole.ending}: {context}"
    return whole
