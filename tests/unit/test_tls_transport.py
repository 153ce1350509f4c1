"""TLSTransport over a real socket pair with a real TLS session: records and pending
bytes, large writes, files, close_notify, and a forked process letting go quietly."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator

import pytest
import trustme

from corral.serving.tls_transport import TLSTransport

PEER = ("192.0.2.7", 50123)


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def session(authority: trustme.CA) -> Iterator[tuple[TLSTransport, ssl.SSLSocket]]:
    """A server transport and its client, their handshake done, both non-blocking until
    then; the client then waits up to 5 s on each call and never hides a missing
    close_notify."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    server_side, client_side = socket.socketpair()
    server_side.setblocking(False)
    client_side.setblocking(False)
    server = server_context.wrap_socket(
        server_side, server_side=True, do_handshake_on_connect=False
    )
    client = client_context.wrap_socket(
        client_side,
        server_hostname="localhost",
        do_handshake_on_connect=False,
        suppress_ragged_eofs=False,
    )
    done = {server: False, client: False}
    while not all(done.values()):
        for side in done:
            if not done[side]:
                try:
                    side.do_handshake()
                    done[side] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
    client.settimeout(5)
    transport = TLSTransport(server, PEER, timeout=5.0)
    transport.established = True
    try:
        yield transport, client
    finally:
        transport.close()
        client.close()


def test_a_record_read_in_part_leaves_the_rest_pending(
    session: tuple[TLSTransport, ssl.SSLSocket],
) -> None:
    transport, client = session
    assert transport.receive_ready(65536) is None
    client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
    client.sendall(b"abcGET / HTTP/1.1\r\n\r\n")
    # One record at a time, even with both in the kernel's buffer.
    assert transport.receive(65536) == b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
    assert transport.receive(3) == b"abc"
    # The next request is decrypted already: no readiness set would report it.
    assert transport.pending() == len(b"GET / HTTP/1.1\r\n\r\n")
    assert transport.has_bytes_waiting()
    assert transport.receive_ready(65536) == b"GET / HTTP/1.1\r\n\r\n"
    assert transport.pending() == 0
    assert transport.receive_ready(65536) is None


def test_a_large_send_waits_while_the_client_reads(
    session: tuple[TLSTransport, ssl.SSLSocket],
) -> None:
    transport, client = session
    data = os.urandom(8 << 20)
    received = bytearray()

    def read_everything() -> None:
        while len(received) < len(data):
            received.extend(client.recv(1 << 20))

    reader = threading.Thread(target=read_everything)
    reader.start()
    transport.send_all(data)
    reader.join(10)
    assert bytes(received) == data


def test_a_file_is_copied_through_the_encryption(
    session: tuple[TLSTransport, ssl.SSLSocket],
) -> None:
    transport, client = session
    assert not transport.uses_os_sendfile and transport.stays_in_process
    with tempfile.TemporaryFile() as file:
        file.write(b"0123456789" * 1000)
        file.flush()
        assert transport.sendfile(file.fileno(), 5, 20) == 20
    assert client.recv(100) == b"56789012345678901234"


def test_close_ends_the_session_with_close_notify(
    session: tuple[TLSTransport, ssl.SSLSocket],
) -> None:
    transport, client = session
    transport.send_all(b"last bytes")
    transport.close()
    assert client.recv(100) == b"last bytes"
    # With suppress_ragged_eofs=False a close without close_notify would raise here.
    assert client.recv(100) == b""


def test_a_forked_process_that_never_read_lets_go_without_a_word(
    session: tuple[TLSTransport, ssl.SSLSocket],
) -> None:
    """What a process per request child does with the connections it inherits and does
    not serve: closing them must leave the parent's sessions intact."""
    transport, client = session
    pid = os.fork()
    if pid == 0:
        transport.close()
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    transport.send_all(b"still here")
    assert client.recv(100) == b"still here"
    client.sendall(b"and you?")
    assert transport.receive(100) == b"and you?"


def test_send_some_reports_records_sent_and_resumes_from_an_outbox_that_grew(
    session: tuple[TLSTransport, ssl.SSLSocket],
) -> None:
    """As the connection's outbox uses it: what was sent is cut from the front, more is
    appended while the client is slow, and each call starts where the last one stopped."""
    transport, client = session
    first, second = os.urandom(4 << 20), os.urandom(1 << 20)
    outbox = bytearray(first)
    received = bytearray()
    counts: list[int] = []

    def read_everything() -> None:
        while len(received) < len(first) + len(second):
            received.extend(client.recv(65536))

    # Nothing is read yet: the socket's buffer fills, and a record would block.
    while sent := transport.send_some(outbox):
        counts.append(sent)
        del outbox[:sent]
    assert outbox, "4 MiB fit in the socket's buffer"
    outbox += second
    reader = threading.Thread(target=read_everything)
    reader.start()
    while outbox:
        sent = transport.send_some(outbox)
        counts.append(sent)
        del outbox[:sent]
        if not sent:
            transport.wait_writable()
    reader.join(10)
    assert bytes(received) == first + second
    # Progress is told as records go, not only once the whole outbox has gone.
    assert any(0 < count < len(first) for count in counts)
