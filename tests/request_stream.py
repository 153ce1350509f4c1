"""A connection's bytes run through the protocol layer alone, as `serving/connection.py`
and `wsgi/input.py` drive it, so that any split of the same bytes can be compared.

`parse_stream` keeps one receive buffer and one `HeadScanner` for the whole stream, takes
each head off the front of the buffer, then reads its body through `body_decoder` until the
decoder is done, taking body bytes straight from the next arrival when the buffer is empty
and the decoder says no framing lies between (`receive_unframed`). It stops at the first
`RequestError`, or when the bytes run out. `check_every_split` asserts that the outcome of
one byte string does not depend on how it arrives.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corral.http.errors import RequestError
from corral.http.parser import HeadLimits, HeadScanner, RequestHead, body_decoder

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
    empty buffer as `RequestBody` does. Any exception but `RequestError` escapes: it is
    a bug of the protocol layer.
    """
    arriving = deque(piece for piece in pieces if piece)
    buffer = bytearray()
    scanner = HeadScanner(limits)
    requests: list[tuple[RequestHead, bytes]] = []
    where = "head"
    try:
        while True:
            where = "head"
            parsed = scanner.parse(buffer)
            if parsed is None:
                if not arriving:
                    return Parsed(tuple(requests), ("head incomplete", bytes(buffer)))
                buffer += arriving.popleft()
                continue
            head, size = parsed
            del buffer[:size]
            where = "body"
            decoder = body_decoder(head, limits)
            body = bytearray()
            while not decoder.done:
                count = decoder.unframed(read_size) if unframed and not buffer else 0
                if count and arriving:
                    piece = arriving.popleft()
                    if len(piece) > count:
                        arriving.appendleft(piece[count:])
                        piece = piece[:count]
                    decoder.take_unframed(len(piece))
                    body += piece
                    continue
                data = decoder.read(buffer, read_size)
                assert len(data) <= read_size, f"read {len(data)} bytes when {read_size} asked"
                if data or decoder.done:
                    body += data
                    continue
                if not arriving:
                    ending = ("body incomplete", head, bytes(body), bytes(buffer))
                    return Parsed(tuple(requests), ending)
                buffer += arriving.popleft()
            requests.append((head, bytes(body)))
            if not buffer and not arriving:
                return Parsed(tuple(requests), ("idle",))
    except RequestError as error:
        return Parsed(tuple(requests), ("refused", error.status, where))


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
