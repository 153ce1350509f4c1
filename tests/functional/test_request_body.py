"""`wsgi.input` (PEP 3333): every read method stops at the end of the body.

Each request is followed in the same write by a second one, so a read that took one
byte too many would break the second request.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.server import RunningServer
from tests.wire import read_until_closed

TIMEOUT = 5.0
BODY = b"first line\nsecond line\n\nlast line, no newline"


def length_framed(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def chunk_framed(path: str, body: bytes, size: int = 5) -> bytes:
    """Small chunks, so that lines run across chunk boundaries."""
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head.encode() + framed + b"0\r\n\r\n"


FRAMINGS = {"content-length": length_framed, "chunked": chunk_framed}
# Closes the connection, so that a client can read until the end.
SECOND = (
    b"POST /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    b"Content-Length: 18\r\n\r\nthe second request"
)


def responses_until_closed(port: int, data: bytes) -> list[tuple[int, bytes]]:
    """Send `data` in one write; parse every Content-Length response until the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = read_until_closed(sock)
    responses = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(fields["content-length"])
        responses.append((int(lines[0].split()[1]), rest[:length]))
        received = rest[length:]
    return responses


def expected_parts(how: str) -> list[bytes]:
    lines = BODY.splitlines(keepends=True)
    if how == "read3":
        return [BODY[i : i + 3] for i in range(0, len(BODY), 3)]
    if how == "readline4":
        return [line[i : i + 4] for line in lines for i in range(0, len(line), 4)]
    if how in ("readline", "readlines", "iterate"):
        return lines
    return [BODY]


@pytest.mark.parametrize("framing", list(FRAMINGS))
@pytest.mark.parametrize("how", ["read3", "read", "readline", "readline4", "readlines", "iterate"])
def test_reads_stop_at_the_end_of_the_body(server: RunningServer, how: str, framing: str) -> None:
    request = FRAMINGS[framing](f"/read?{how}", BODY)
    responses = responses_until_closed(server.port, request + SECOND)
    assert [status for status, _ in responses] == [200, 200]
    result = json.loads(responses[0][1])
    assert [part.encode("latin-1") for part in result["parts"]] == expected_parts(how)
    assert result["after"] == ""
    assert responses[1][1] == b"the second request"


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_body_arriving_late_is_waited_for(server: RunningServer, framing: str) -> None:
    request = FRAMINGS[framing]("/echo", BODY)
    split = len(request) - 10
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request[:split])
        time.sleep(0.2)
        sock.sendall(request[split:] + SECOND)
        received = read_until_closed(sock)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert BODY + b"HTTP/1.1 200 OK\r\n" in received
    assert received.endswith(b"\r\n\r\nthe second request")


def test_unread_body_is_skipped_before_the_next_request(server: RunningServer) -> None:
    for framing in FRAMINGS.values():
        responses = responses_until_closed(server.port, framing("/ignore-body", BODY) + SECOND)
        assert responses == [(200, b"body not read"), (200, b"the second request")]


def test_body_longer_than_one_receive_is_read_whole(server: RunningServer) -> None:
    long_body = bytes(range(256)) * 2000
    for framing in FRAMINGS.values():
        request = (
            framing("/echo", long_body)
            if framing is length_framed
            else chunk_framed("/echo", long_body, 4096)
        )
        responses = responses_until_closed(server.port, request + SECOND)
        assert responses == [(200, long_body), (200, b"the second request")]


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_a_body_past_memory_is_gathered_in_a_file_and_read_whole(
    server: RunningServer, framing: str
) -> None:
    """Past 1 MiB a body waits in a temporary file; the app reads it whole, and the
    request sent right after it, in the same write, is served next."""
    big = bytes(range(256)) * 12288  # 3 MiB
    if framing == "chunked":
        request = chunk_framed("/echo", big, 65536)
    else:
        request = length_framed("/echo", big)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request + SECOND)
        received = read_until_closed(sock)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest[: len(big)] == big
    assert rest.endswith(b"\r\n\r\nthe second request")
