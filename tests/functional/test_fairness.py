"""No request waits while the server could serve it: not behind a silent connection, a
half-sent head, or another client's slow request. Every test runs under every model,
single process and worker processes alike."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.apps.behaviours import big_body
from tests.server import ALL_MODELS, RunningServer
from tests.wire import read_until_closed

# Model -> (options, how many requests it serves at once): as many silent connections
# as it has slots.
SLOTS: dict[str, tuple[list[str], int]] = {
    "one-at-a-time": (["--threads", "1"], 1),
    "thread-pool-2": (["--threads", "2"], 2),
    "thread-per-request-2": (["--thread-per-request", "--max-threads", "2"], 2),
    "process-per-request-2": (["--process-per-request", "2"], 2),
    "gevent-2": (["-k", "gevent", "--worker-connections", "2"], 2),
    "workers-sync-1": (["-w", "1"], 1),
    "workers-sync-2": (["-w", "2"], 2),
    "workers-thread-1x2": (["-w", "1", "--threads", "2"], 2),
    "workers-gevent-1x2": (["-w", "1", "-k", "gevent", "--worker-connections", "2"], 2),
}


@contextlib.contextmanager
def silent_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send nothing, as a browser's preconnect does."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def answered_after(port: int, path: str = "/", timeout: float = 10) -> float:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    with contextlib.closing(connection):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    return time.monotonic() - started


@pytest.mark.parametrize("model", list(SLOTS))
def test_silent_connections_hold_no_slot(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """A request is answered at once, though every slot's worth of connections is open
    and silent; before, it waited for the keep-alive timeout to close them."""
    options, slots = SLOTS[model]
    server = start_server(options=[*options, "--keep-alive", "60"])
    # Accepted in order (the kernel's accept queue is first in, first out), so the
    # silent ones reach the workers before the request does.
    with silent_connections(server.port, slots):
        assert answered_after(server.port) < 1.0


@pytest.mark.parametrize("model", list(SLOTS))
def test_silent_connections_do_not_stop_a_burst_from_being_served(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    options, slots = SLOTS[model]
    server = start_server(options=[*options, "--keep-alive", "60"])
    with silent_connections(server.port, slots):
        connections = [
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            for _ in range(2 * slots)
        ]
        started = time.monotonic()
        for connection in connections:
            connection.request("GET", "/slow?ms=100")
        for connection in connections:
            with contextlib.closing(connection):
                assert connection.getresponse().status == 200
        # Two rounds of 100 ms at most; waiting on the silent ones would take 60 s.
        assert time.monotonic() - started < 2.0


def _models_with_one_slot() -> dict[str, list[str]]:
    """Every model; process per request with a single process, where a child held by a
    half-sent head would leave no one to serve the others."""
    return {**ALL_MODELS, "process-per-request": ["--process-per-request", "1"]}


HALF_SENT = {
    "a head without its end": b"GET / HTTP/1.1\r\nHost: x\r\n",
    "a request then half of the next": (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /slow?ms=1 HTTP/1.1\r\nHo"
    ),
}


@pytest.mark.parametrize("sent", list(HALF_SENT))
@pytest.mark.parametrize("model", list(_models_with_one_slot()))
def test_a_half_sent_head_holds_nothing_and_is_answered_408_at_the_header_timeout(
    start_server: Callable[..., RunningServer], model: str, sent: str
) -> None:
    """The others are served meanwhile, and the connection is answered 408 and closed
    once --header-timeout passes; before, a child process spun on it for ever."""
    options = _models_with_one_slot()[model]
    server = start_server(options=[*options, "--header-timeout", "1", "--keep-alive", "60"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(HALF_SENT[sent])
        started = time.monotonic()
        if sent == "a request then half of the next":
            stream = stalled.makefile("rb")
            assert stream.readline().startswith(b"HTTP/1.1 200 ")
            while stream.readline() not in (b"\r\n", b""):
                pass
            assert stream.read(len(b"hello\n")) == b"hello\n"
        for _ in range(3):
            assert answered_after(server.port) < 1.0
        # The server answers and closes it: end of stream, not the 10 s socket timeout.
        assert read_until_closed(stalled).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        closed_after = time.monotonic() - started
        assert 0.9 <= closed_after < 4.0, closed_after
    # Still serving, and nothing was spent spinning meanwhile.
    assert answered_after(server.port) < 1.0


@pytest.mark.parametrize("model", list(ALL_MODELS))
def test_a_finished_response_is_not_held_for_another_clients_request(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """Client A's fast request and client B's slow one become ready together while the
    server is busy; A's response leaves when A's app call ends, not after B's."""
    server = start_server(options=ALL_MODELS[model])
    busy, fast, slow = (
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(3)
    )
    started = time.monotonic()
    busy.request("GET", "/slow?ms=300")
    fast.request("GET", "/slow?ms=0")
    slow.request("GET", "/slow?ms=800")
    with contextlib.closing(fast):
        response = fast.getresponse()
        response.read()
        fast_answered = time.monotonic() - started
    for connection in (busy, slow):
        with contextlib.closing(connection):
            assert connection.getresponse().status == 200
    # One at a time: served at 0.3 s, and B's request ends at 1.1 s.
    assert response.status == 200
    assert fast_answered < 0.8, fast_answered


@contextlib.contextmanager
def stalled_bodies(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` POSTs whose head and 3 of 10 body bytes have been sent (slowhttptest -B)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(sock)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("model", list(SLOTS))
def test_bodies_still_arriving_hold_no_slot(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """More bodies than slots trickle in; a request is answered meanwhile, and each body,
    once whole, reaches the application whole."""
    options, slots = SLOTS[model]
    server = start_server(options=options)
    with stalled_bodies(server.port, slots + 1) as stalled:
        assert answered_after(server.port) < 1.0
        for sock in stalled:
            sock.sendall(b"defghij")
        for sock in stalled:
            stream = sock.makefile("rb")
            assert stream.readline().startswith(b"HTTP/1.1 200 ")
            while stream.readline() != b"\r\n":
                pass
            assert stream.read(10) == b"abcdefghij"


# KiB per response -> responses asked for at once: far more than the kernel's buffers
# hold, in small responses (pipelining non-readers) or large ones (slowhttptest -X).
UNREAD = {"200 × 64 KiB": (64, 200), "2 × 4 MiB": (4096, 2)}


def _never_reading(port: int, kib: int, count: int) -> socket.socket:
    """A client that asks for `count` responses of `kib` KiB at once and reads none."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /big?kib={kib} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * count)
    return sock


@pytest.mark.parametrize("unread", list(UNREAD))
@pytest.mark.parametrize("model", list(SLOTS))
def test_clients_that_do_not_read_hold_no_slot(
    start_server: Callable[..., RunningServer], model: str, unread: str
) -> None:
    """More non-reading clients than slots (slowhttptest -X, pipelining non-readers);
    the responses they do not take wait in the server, not a thread, and a request is
    answered meanwhile."""
    options, slots = SLOTS[model]
    server = start_server(options=options)
    kib, count = UNREAD[unread]
    readers = [_never_reading(server.port, kib, count) for _ in range(slots + 1)]
    try:
        for _ in range(3):
            assert answered_after(server.port) < 1.0
        # Each one still gets its responses, in order, once it reads.
        stream = readers[0].makefile("rb")
        for _ in range(min(count, 3)):
            assert stream.readline().startswith(b"HTTP/1.1 200 ")
            length = 0
            while (line := stream.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert stream.read(length) == big_body(kib)
    finally:
        for sock in readers:
            sock.close()


class _Client:
    """A raw keep-alive connection that reads back the order numbers of
    `tests.apps.arrival_order`, pipelined responses included."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.received = b""

    def send(self, target: str) -> None:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    def place(self) -> int:
        """The order number in the next response."""
        while True:
            head_end = self.received.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self.received[:head_end].decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                end = head_end + 4 + length
                if len(self.received) >= end:
                    body = self.received[head_end + 4 : end]
                    self.received = self.received[end:]
                    assert head.startswith("http/1.1 200 "), head
                    return int(body)
            data = self.sock.recv(4096)
            assert data, "closed before its response"
            self.received += data


@pytest.mark.parametrize("model", ["one-at-a-time", "gevent"])
def test_requests_are_served_in_the_order_they_arrived(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """While the server cannot look (a request holds the process), C sends, then A sends
    its next request; C's is served first. A was last reported together with B: epoll,
    level-triggered, checks A again ahead of every later arrival, which once served A's
    request first and left C's to wait through another whole turn (1.5% of requests took
    twice the median under load)."""
    server = start_server(app="tests.apps.arrival_order:app", options=ALL_MODELS[model])
    with contextlib.closing(socket.create_server(("127.0.0.1", 0))) as gates:
        gate = f"/gate?port={gates.getsockname()[1]}"
        holder, a, b, c = (_Client(server.port) for _ in range(4))
        try:
            holder.send(gate)
            held, _ = gates.accept()
            assert held.recv(2) == b"in"
            # Both arrive while the process is held, so one turn reports them together.
            a.send(gate)
            b.send("/b")
            held.sendall(b"x")
            held.close()
            held, _ = gates.accept()
            assert held.recv(2) == b"in"
            # A's first request holds the process now: C's arrives, then A's next.
            c.send("/c")
            a.send("/a-again")
            held.sendall(b"x")
            held.close()
            places = {
                "holder": holder.place(),
                "a": a.place(),
                "b": b.place(),
                "c": c.place(),
                "a-again": a.place(),
            }
        finally:
            for client in (holder, a, b, c):
                client.sock.close()
    assert places["holder"] < places["a"] < places["b"] < places["c"] < places["a-again"], places
