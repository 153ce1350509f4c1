"""PlainTransport over a real socket pair, and the dispatcher serving a connection whose
transport holds bytes no readiness set will report."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corral.config import Timeouts
from corral.serving.connection import Connection
from corral.serving.dispatcher import Dispatcher
from corral.serving.transport import ClientSocketError, PlainTransport
from corral.workers.one_at_a_time import OneAtATime
from tests.socket_pair import serving_state

PEER = ("192.0.2.7", 50123)


@pytest.fixture
def pair() -> Iterator[tuple[PlainTransport, socket.socket]]:
    server_side, client_side = socket.socketpair()
    client_side.settimeout(5)
    transport = PlainTransport(server_side, PEER, timeout=5.0)
    try:
        yield transport, client_side
    finally:
        transport.close()
        client_side.close()


def _read_exactly(sock: socket.socket, count: int, into: bytearray) -> None:
    while len(into) < count:
        chunk = sock.recv(65536)
        if not chunk:
            return
        into += chunk


def test_plain_socket_is_non_blocking_and_cooperative_one_has_the_timeout() -> None:
    for cooperative, expected in ((False, 0.0), (True, 2.5)):
        server_side, client_side = socket.socketpair()
        with server_side, client_side:
            PlainTransport(server_side, PEER, timeout=2.5, cooperative=cooperative)
            assert server_side.gettimeout() == expected


def test_peer_and_pending(pair: tuple[PlainTransport, socket.socket]) -> None:
    transport, client = pair
    assert transport.peer_text() == "192.0.2.7:50123"
    assert transport.fileno() == transport.sock.fileno()
    # A socket pair delivers at once: the bytes are in the kernel when sendall returns,
    # and there they wait, not in the transport.
    client.sendall(b"abc")
    assert transport.pending() == 0
    assert transport.has_bytes_waiting()
    assert transport.receive_ready(10) == b"abc"
    assert transport.receive_ready(10) is None
    assert not transport.has_bytes_waiting()


def test_send_all_of_a_large_buffer_waits_while_the_peer_reads(
    pair: tuple[PlainTransport, socket.socket],
) -> None:
    transport, client = pair
    data = os.urandom(8 << 20)
    received = bytearray()

    def read_everything() -> None:
        # 8 MiB is far more than a socket buffer holds, so the sender waits for room.
        _read_exactly(client, len(data), received)

    reader = threading.Thread(target=read_everything)
    reader.start()
    transport.send_all(data)
    reader.join(10)
    assert bytes(received) == data


def test_send_all_times_out_when_the_peer_never_reads() -> None:
    server_side, client_side = socket.socketpair()
    transport = PlainTransport(server_side, PEER, timeout=0.1)
    with client_side:
        started = time.monotonic()
        with pytest.raises(ClientSocketError, match="did not read the response in time"):
            transport.send_all(b"x" * (32 << 20))
        assert 0.05 < time.monotonic() - started < 2
        transport.close()


def test_timed_wait_times_out() -> None:
    server_side, client_side = socket.socketpair()
    transport = PlainTransport(server_side, PEER, timeout=0.1)
    with client_side:
        started = time.monotonic()
        with pytest.raises(ClientSocketError, match="sent nothing in time"):
            transport.wait_readable()
        assert 0.05 < time.monotonic() - started < 2
        with pytest.raises(ClientSocketError, match="sent nothing in time"):
            transport.receive(100)
        # Room to send: no wait.
        transport.wait_writable()
        transport.close()


def test_receive_waits_for_bytes(pair: tuple[PlainTransport, socket.socket]) -> None:
    transport, client = pair
    timer = threading.Timer(0.05, client.sendall, (b"late",))
    timer.start()
    assert transport.receive(100) == b"late"
    timer.join()
    client.shutdown(socket.SHUT_WR)
    assert transport.receive(100) == b""


def test_half_close_ends_our_side_and_drains_theirs(
    pair: tuple[PlainTransport, socket.socket],
) -> None:
    transport, client = pair
    client.sendall(b"the rest of a request the answer refused" * 100)
    transport.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    # The client may still send: the caller reads it a while before closing.
    assert transport.half_close() is False
    answer = bytearray()
    _read_exactly(client, 1 << 20, answer)
    # The answer, then end of stream.
    assert bytes(answer) == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    # What the client had sent was read and dropped.
    assert not transport.has_bytes_waiting()
    client.shutdown(socket.SHUT_WR)
    assert transport.drain() is True


def test_half_close_on_a_closed_peer_is_quiet(
    pair: tuple[PlainTransport, socket.socket],
) -> None:
    transport, client = pair
    client.close()
    assert transport.half_close() is True


@pytest.fixture
def file_fd() -> Iterator[tuple[int, bytes]]:
    content = os.urandom(3 << 20)
    with tempfile.TemporaryFile() as file:
        file.write(content)
        file.flush()
        yield file.fileno(), content


@pytest.mark.parametrize("method", ["sendfile", "copy_file"])
def test_sendfile_and_copy_send_the_same_bytes(
    pair: tuple[PlainTransport, socket.socket], file_fd: tuple[int, bytes], method: str
) -> None:
    transport, client = pair
    fd, content = file_fd
    offset, count = 1000, len(content) - 5000
    received = bytearray()
    reader = threading.Thread(target=_read_exactly, args=(client, count, received))
    reader.start()
    assert getattr(transport, method)(fd, offset, count) == count
    reader.join(10)
    assert bytes(received) == content[offset : offset + count]


@pytest.mark.parametrize("method", ["sendfile", "copy_file"])
def test_sendfile_of_a_short_file_says_how_much_it_sent(
    pair: tuple[PlainTransport, socket.socket], file_fd: tuple[int, bytes], method: str
) -> None:
    transport, client = pair
    fd, content = file_fd
    received = bytearray()
    reader = threading.Thread(target=_read_exactly, args=(client, 100, received))
    reader.start()
    assert getattr(transport, method)(fd, len(content) - 100, 500) == 100
    reader.join(10)
    assert bytes(received) == content[-100:]


def test_copy_is_used_where_the_transport_forbids_sendfile(
    pair: tuple[PlainTransport, socket.socket], file_fd: tuple[int, bytes]
) -> None:
    class CopyingTransport(PlainTransport):
        __slots__ = ()
        uses_os_sendfile = False

    transport, client = pair
    copying = CopyingTransport(transport.sock, PEER, timeout=5.0)
    fd, content = file_fd
    received = bytearray()
    reader = threading.Thread(target=_read_exactly, args=(client, 4096, received))
    reader.start()
    assert copying.sendfile(fd, 0, 4096) == 4096
    reader.join(10)
    assert bytes(received) == content[:4096]


def test_sendfile_to_a_closed_peer_is_a_client_error(
    pair: tuple[PlainTransport, socket.socket], file_fd: tuple[int, bytes]
) -> None:
    transport, client = pair
    client.close()
    fd, content = file_fd
    with pytest.raises(ClientSocketError):
        transport.sendfile(fd, 0, len(content))


class BufferingTransport:
    """A transport that has already received (and decrypted, say) a whole request: its
    socket has nothing left to report as readable."""

    def __init__(self, received: bytes, fd: int) -> None:
        self.peer = PEER
        self.buffered = bytearray(received)
        self.fd = fd
        self.sent = bytearray()
        self.closed = False
        # Its own buffer is `pending`: the socket never holds more than was reported.
        self.drained = True

    def fileno(self) -> int:
        return self.fd

    def peer_text(self) -> str:
        return "fake"

    def pending(self) -> int:
        return len(self.buffered)

    def has_bytes_waiting(self) -> bool:
        return bool(self.buffered)

    def receive_ready(self, size: int) -> bytes | None:
        if not self.buffered:
            return None
        data = bytes(self.buffered[:size])
        del self.buffered[:size]
        return data

    def receive(self, size: int) -> bytes:
        data = self.receive_ready(size)
        if data is None:
            raise ClientSocketError("client sent nothing in time")
        return data

    def send_all(self, data: bytes) -> None:
        self.sent += data

    def send_some(self, data: bytes | bytearray | memoryview) -> int:
        self.sent += data
        return len(data)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        raise NotImplementedError

    def wait_readable(self) -> None:
        raise NotImplementedError

    def wait_writable(self) -> None:
        pass

    def half_close(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


def test_a_connection_with_bytes_pending_in_its_transport_is_served_again() -> None:
    state = serving_state(_hello)
    model = OneAtATime()
    dispatcher = Dispatcher([], model, Timeouts(keep_alive=5, client=5, graceful=1))
    model.start(dispatcher)
    server_side, client_side = socket.socketpair()
    try:
        transport = BufferingTransport(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", server_side.fileno())
        connection = Connection(transport, state)
        dispatcher.connections[connection.fd] = connection
        connection.busy = True
        # As after a request: nothing readable on the socket, a request inside the transport.
        dispatcher.release(connection)
        assert not transport.sent
        deadline = time.monotonic() + 5
        while not transport.sent and time.monotonic() < deadline:
            dispatcher._poll_once(0.5)
        assert transport.sent.startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.sent.endswith(b"\r\n\r\nhello")
        assert transport.pending() == 0
        assert not connection.busy
        assert not connection.closed
        assert not dispatcher.served_again
    finally:
        dispatcher._close_everything()
        server_side.close()
        client_side.close()
