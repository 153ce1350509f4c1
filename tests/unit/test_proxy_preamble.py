"""The --proxy-protocol opening step over a real socket pair: it takes the header's bytes
and no others off the socket, however they arrive, and names the client as the peer."""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from corral.http.proxy_protocol import ProxyHeaderError
from corral.http.trusted_addresses import TrustedAddresses
from corral.serving.connection import Connection
from corral.serving.proxy_preamble import ProxyPreamble
from corral.serving.transport import PlainTransport
from tests.socket_pair import connection_pair, serving_state

PROXY_PEER = ("127.0.0.1", 40000)
STEP = ProxyPreamble(TrustedAddresses(["127.0.0.1"]))
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n"
V2 = (
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"
    + struct.pack("!H", 12 + 7)
    + socket.inet_aton("203.0.113.7")
    + socket.inet_aton("192.0.2.1")
    + struct.pack("!HH", 51000, 443)
    + b"\x02\x00\x04host"
)
V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    raise AssertionError("not called")


STATE = serving_state(_app)


@pytest.fixture
def opened() -> Iterator[tuple[Connection, socket.socket]]:
    """A connection from `PROXY_PEER` as the dispatcher accepts it, and its client end."""
    with connection_pair(STATE, PROXY_PEER) as pair:
        yield pair


def readable(connection: Connection) -> bool:
    poller = select.poll()
    poller.register(connection.fd, select.POLLIN)
    return bool(poller.poll(0))


def left_in_the_kernel(connection: Connection) -> bytes:
    try:
        return connection.transport.receive_ready(65536) or b""
    except BlockingIOError:
        return b""


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_the_header_is_taken_and_the_request_left(
    opened: tuple[Connection, socket.socket], header: bytes
) -> None:
    connection, client = opened
    client.sendall(header + REQUEST)
    assert STEP(connection) is True
    assert connection.peer == ("203.0.113.7", 51000)
    assert connection.transport.peer == ("203.0.113.7", 51000)
    assert connection.peer_text() == "203.0.113.7:51000"
    assert connection.buffer == b""
    assert left_in_the_kernel(connection) == REQUEST


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_a_header_arriving_a_byte_at_a_time_is_taken_as_it_comes(
    opened: tuple[Connection, socket.socket], header: bytes
) -> None:
    connection, client = opened
    for byte in header[:-1]:
        client.sendall(bytes([byte]))
        assert STEP(connection) is False
        # Taken, so the socket is not reported readable again until more arrives.
        assert not readable(connection)
    assert STEP(connection) is False
    client.sendall(header[-1:] + REQUEST)
    assert STEP(connection) is True
    assert connection.peer == ("203.0.113.7", 51000)
    assert left_in_the_kernel(connection) == REQUEST


def test_a_header_longer_than_the_first_look_is_read_whole(
    opened: tuple[Connection, socket.socket],
) -> None:
    connection, client = opened
    tlvs = b"\x04" + struct.pack("!H", 600) + bytes(600)
    header = V2[:14] + struct.pack("!H", 12 + len(tlvs)) + V2[16:28] + tlvs
    client.sendall(header + REQUEST)
    assert STEP(connection) is True
    assert connection.peer == ("203.0.113.7", 51000)
    assert left_in_the_kernel(connection) == REQUEST


def test_local_keeps_the_sockets_peer(opened: tuple[Connection, socket.socket]) -> None:
    connection, client = opened
    client.sendall(V2_LOCAL + REQUEST)
    assert STEP(connection) is True
    assert connection.peer == PROXY_PEER
    assert left_in_the_kernel(connection) == REQUEST


def test_nothing_arrived_yet_waits(opened: tuple[Connection, socket.socket]) -> None:
    connection, _ = opened
    assert STEP(connection) is False


@pytest.mark.parametrize(
    "data",
    [REQUEST, b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + REQUEST, b"\x16\x03\x01\x02\x00"],
    ids=["no-header", "bad-v1", "tls"],
)
def test_an_allowed_peer_without_a_valid_header_is_refused(
    opened: tuple[Connection, socket.socket], data: bytes
) -> None:
    connection, client = opened
    client.sendall(data)
    with pytest.raises(ProxyHeaderError):
        STEP(connection)
    assert connection.peer == PROXY_PEER


def test_a_peer_leaving_inside_its_header_ends_the_connection(
    opened: tuple[Connection, socket.socket],
) -> None:
    connection, client = opened
    client.sendall(V1[:10])
    assert STEP(connection) is False
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError):
        STEP(connection)


def test_a_peer_not_allowed_is_left_alone(opened: tuple[Connection, socket.socket]) -> None:
    connection, client = opened
    step = ProxyPreamble(TrustedAddresses(["10.0.0.1"]))
    client.sendall(V1 + REQUEST)
    assert step(connection) is True
    assert connection.peer == PROXY_PEER
    # Its header stays where the request parser will refuse it.
    assert left_in_the_kernel(connection) == V1 + REQUEST


def test_a_unix_socket_peer_is_allowed() -> None:
    server_side, client_side = socket.socketpair()
    with client_side:
        connection = Connection(PlainTransport(server_side, "", timeout=5.0), STATE)
        try:
            client_side.sendall(V1)
            assert ProxyPreamble(TrustedAddresses([])).__call__(connection) is True
            assert connection.peer == ("203.0.113.7", 51000)
        finally:
            connection.transport.close()
