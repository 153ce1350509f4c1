"""Refused requests are counted in the error log, not written there one line each; the
access log keeps its line per request."""

from __future__ import annotations

import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.error_log import counted_in_error_log
from tests.server import MODELS, RunningServer
from tests.wire import read_until_closed

TIMEOUT = 10.0
# What each malformed request is answered with, and the cause the error log gives.
MALFORMED = {
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n": (
        300,
        400,
        "malformed header field",
    ),
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n": (150, 414, "request line too long"),
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n": (50, 400, "repeated Host field"),
}


def refuse(port: int, request: bytes) -> int:
    """Send `request` on a connection of its own; the status it was answered with."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = read_until_closed(sock, reset_ends=True)
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("model", list(MODELS))
def test_a_flood_of_malformed_requests_is_logged_as_counts(model: str) -> None:
    server = RunningServer(
        options=[*MODELS[model], "--access-logfile", "-", "--access-logformat", "access %(s)s"]
    )
    with server:
        requests = [request for request, (times, _, _) in MALFORMED.items() for _ in range(times)]
        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(pool.map(lambda request: refuse(server.port, request), requests))
        assert statuses == {400: 350, 414: 150}
        assert server.stop() == 0
    counted, lines = counted_in_error_log(server.log)
    assert counted == {(status, cause): times for times, status, cause in MALFORMED.values()}
    processes = 2 if "-w" in MODELS[model] else 1
    # A line for the first of each kind and a summary, per process and per 10 s period.
    assert lines <= 2 * processes * (len(MALFORMED) + 1), server.log
    # The access log still has its line for every request.
    access = Counter(line for line in server.lines if line.startswith("access "))
    assert access == {"access 400\n": 350, "access 414\n": 150}
