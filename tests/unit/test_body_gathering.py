"""A request body gathered by the connection before the application runs: whatever
pieces it arrives in, the application reads it whole and the request after it is
served next."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.socket_pair import connection_pair, serving_state

BODY = bytes(range(256)) * 1024  # 256 KiB, every byte value
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


def _echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['PATH_INFO']} {len(body)} {hashlib.sha256(body).hexdigest()}".encode()]


def _responses(client: socket.socket, count: int) -> list[bytes]:
    """`count` responses' bodies, as the echo app wrote them."""
    client.settimeout(10)
    received = b""
    bodies: list[bytes] = []
    while len(bodies) < count:
        end = received.find(b"\r\n\r\n")
        if end >= 0:
            head = received[:end].decode("latin-1").lower()
            length = int(head.split("content-length: ")[1].split("\r\n")[0])
            if len(received) >= end + 4 + length:
                bodies.append(received[end + 4 : end + 4 + length])
                received = received[end + 4 + length :]
                continue
        received += client.recv(1 << 20)
    return bodies


def _chunked(data: bytes, size: int) -> bytes:
    pieces = [data[start : start + size] for start in range(0, len(data), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["length", "chunked"])
# Pieces smaller than one receive, as large, and larger (within the socket pair's buffer).
@pytest.mark.parametrize("piece_size", [1000, 65536, 100_000])
def test_a_body_in_pieces_is_read_whole_and_the_next_request_follows(
    framing: str, piece_size: int
) -> None:
    if framing == "length":
        head = b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(BODY)
        wire = BODY
    else:
        head = b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        wire = _chunked(BODY, 5000)
    # The head alone first; then the body in pieces, the last one carrying the next
    # request, as a client that pipelines sends it.
    sent = [head] + [wire[start : start + piece_size] for start in range(0, len(wire), piece_size)]
    sent[-1] += NEXT
    with connection_pair(serving_state(_echo)) as (connection, client):
        for number, piece in enumerate(sent):
            client.sendall(piece)
            # Gathered without the application, a receive at a time: whole only once
            # the last piece is in.
            whole = connection.collect()
            while not whole and connection.transport.has_bytes_waiting():
                whole = connection.collect()
            assert whole == (number == len(sent) - 1)
        # The next request may still be partly unread: served on its own turn, as the
        # dispatcher would once it is gathered.
        assert connection.serve()
        if connection.collect():
            assert connection.serve()
        first, second = _responses(client, 2)
        assert first == f"/first {len(BODY)} {hashlib.sha256(BODY).hexdigest()}".encode()
        assert second == f"/next 0 {hashlib.sha256(b'').hexdigest()}".encode()
