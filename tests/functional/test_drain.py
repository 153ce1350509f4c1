"""Keep-alive connections as a balancer meets them: an idle connection is closed only
between requests, never with bytes of a request arriving in it."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable

from tests.server import RunningServer
from tests.wire import read_until_closed


def answer_in_flight(
    port: int, path: str, answers: list[http.client.HTTPResponse]
) -> socket.socket:
    """Send `path` on a connection of its own; a thread reads the answer into `answers`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)

    def read() -> None:
        response = connection.getresponse()
        response.read()
        answers.append(response)
        connection.close()

    threading.Thread(target=read, daemon=True).start()
    assert connection.sock is not None
    return connection.sock


def test_a_connection_past_keep_alive_with_a_request_arriving_is_served_not_closed(
    start_server: Callable[..., RunningServer],
) -> None:
    """The idle sweep closes a connection only with no byte of a request waiting in it:
    the client (a balancer reusing its connection) would otherwise see it reset. One at
    a time lets the request arrive while the loop is busy, past the keep-alive."""
    server = start_server(options=["--threads", "1", "--keep-alive", "1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        idle_since = time.monotonic()
        in_flight: list[http.client.HTTPResponse] = []
        answer_in_flight(server.port, "/slow?ms=2000&announce=sweep", in_flight)
        assert server.wait_for_log("app: started sweep", timeout=10), server.log
        # The loop runs the slow request; the idle connection passes its keep-alive,
        # then its next request arrives, before the loop sweeps again.
        time.sleep(max(0.0, idle_since + 1.3 - time.monotonic()))
        assert not in_flight, "the slow request must still hold the loop"
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(idle, reset_ends=True)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
