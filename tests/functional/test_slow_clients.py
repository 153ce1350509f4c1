"""Clients slower than the server: they read or send in small pieces, or stop halfway.

Connection sockets are non-blocking; corral waits on them itself, up to the client
timeout, when a read or a write cannot go on.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

import pytest

from corral.serving.connection import BODY_RATE_GRACE
from tests.apps.behaviours import big_body
from tests.server import MODELS, RunningServer, wait_until

TIMEOUT = 10.0
BIG_KIB = 4096
STALL_KIB = 65536


def test_a_slow_reader_gets_the_whole_large_response(server: RunningServer) -> None:
    with socket.socket() as sock:
        # A small receive buffer makes the server's sends block many times over.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /big?kib={BIG_KIB} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        received = b""
        expected = big_body(BIG_KIB)
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < len(expected):
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection mid-response"
            received += chunk
            if len(received) % 8 == 0:
                time.sleep(0.002)
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == expected
        # The connection is still usable afterwards.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")


STALL_MODELS = ["one-at-a-time", "thread-pool", "gevent"]


def _served_within(port: int, seconds: float) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@pytest.mark.parametrize("model", STALL_MODELS)
def test_a_body_slower_than_the_minimum_rate_is_answered_408(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = start_server(options=[*MODELS[model], "--min-request-body-rate", "100000"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        # After the grace of 5 s, 3 bytes are far below the rate.
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert BODY_RATE_GRACE < time.monotonic() - started < BODY_RATE_GRACE + 3
    assert _served_within(server.port, 2)


@pytest.mark.parametrize("model", STALL_MODELS)
def test_a_head_that_trickles_in_is_answered_408_at_the_header_timeout(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = start_server(options=[*MODELS[model], "--header-timeout", "1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        answer = b""
        # A field every 0.2 s: each piece is progress, but the whole head is late.
        while not answer and time.monotonic() - started < 5:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert 1 < time.monotonic() - started < 3
    assert _served_within(server.port, 2)
    # Told once, with the other refusals; a slowloris run makes thousands.
    assert wait_until(
        lambda: "request head not received in time; answered 408 Request Timeout" in server.log
    )


@pytest.mark.parametrize("model", STALL_MODELS)
def test_a_client_that_stops_reading_is_given_up_after_the_client_timeout(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = start_server(options=[*MODELS[model], "--client-timeout", "1"])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", server.port))
        # Far more than the kernel's buffers on both sides hold.
        sock.sendall(f"GET /big?kib={STALL_KIB} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        # The client reads nothing for longer than the client timeout.
        time.sleep(2.5)
        # Given up on: another client is served, and this one's response is cut short.
        assert _served_within(server.port, 2)
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
        assert received < STALL_KIB * 1024
