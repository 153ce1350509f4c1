"""`--limit-request-body`: a body over it gets 413 Content Too Large (RFC 9110 section
15.5.14), under every concurrency model, before the app runs: by its Content-Length as soon
as the head has arrived, or as a chunked body arrives."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.server import ALL_MODELS, RunningServer
from tests.wire import read_until_closed

TIMEOUT = 10.0
_TCP_CLOSE_WAIT = 8
LIMIT = 1000


@pytest.fixture(scope="module", params=list(ALL_MODELS), ids=list(ALL_MODELS))
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    options = [*ALL_MODELS[request.param], "--limit-request-body", str(LIMIT)]
    with RunningServer(options=[*options, "--keep-alive", "60"]) as running:
        yield running


def exchange(server: RunningServer, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        return read_until_closed(sock, reset_ends=True)


def length_framed(path: str, body: bytes) -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n" % (path.encode(), len(body))
    return head + b"Connection: close\r\n\r\n" + body


def chunk_framed(path: str, *chunks: bytes) -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n" % path.encode()
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + b"Connection: close\r\n\r\n" + framed + b"0\r\n\r\n"


def assert_refused_with_413(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 Content Too Large\r\n"), answer[:200]
    assert b"\r\nConnection: close" in head
    assert body == b"413 Content Too Large\n"


def test_a_body_at_the_limit_is_served(server: RunningServer) -> None:
    body = b"x" * LIMIT
    assert exchange(server, length_framed("/echo", body)).endswith(b"\r\n\r\n" + body)
    answer = exchange(server, chunk_framed("/echo", body[:500], body[500:]))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n" + body)


def test_a_content_length_over_the_limit_is_refused_before_the_app_runs(
    server: RunningServer,
) -> None:
    # Asked to wait for 100 Continue, the client gets the 413 instead and sends nothing.
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % (LIMIT + 1)
        )
        assert_refused_with_413(read_until_closed(sock))
    assert_refused_with_413(exchange(server, length_framed("/echo", b"x" * (LIMIT + 1))))
    assert server.wait_for_log(
        f"refused: Content-Length larger than {LIMIT} bytes; answered 413 Content Too Large"
    )


def _wait_for_the_servers_end(sock: socket.socket) -> None:
    """Wait until the server has sent everything and ended its side (the client's TCP
    state is CLOSE-WAIT), without reading: its answer stays in the receive queue."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        # The first byte of struct tcp_info (linux/tcp.h) is the state.
        if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE_WAIT:
            return
        select.select([], [], [], 0.005)
    raise AssertionError("the server never ended its side of the connection")


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs TCP_INFO (Linux)")
def test_the_answer_outlives_the_rest_of_the_body_sent_after_it(server: RunningServer) -> None:
    # The client sends its body after the server has answered and ended its side. A
    # server that closed its socket then would reset the connection as the body arrives,
    # and the reset makes the client's kernel drop the answer unread; corral reads and
    # drops the body until the client closes too (RFC 9112 section 9.6).
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
        )
        _wait_for_the_servers_end(sock)
        sock.sendall(b"x" * (LIMIT + 1))
        sock.shutdown(socket.SHUT_WR)
        assert_refused_with_413(read_until_closed(sock))


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(server: RunningServer) -> None:
    answer = exchange(server, chunk_framed("/echo", b"x" * 500, b"x" * 501))
    assert_refused_with_413(answer)


def test_a_body_over_the_limit_is_refused_even_where_the_app_would_not_read_it(
    server: RunningServer,
) -> None:
    # The whole body arrives before the app runs, so the limit holds whatever the app
    # does with it.
    assert_refused_with_413(exchange(server, chunk_framed("/ignore-body", b"x" * 1001)))
    assert_refused_with_413(exchange(server, length_framed("/ignore-body", b"x" * 1001)))


def test_the_default_limit_is_one_gibibyte() -> None:
    over = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % ((1 << 30) + 1)
    with RunningServer() as default:
        assert_refused_with_413(exchange(default, over))
