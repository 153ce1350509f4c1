"""The byte stream under a connection: receive, send, sendfile-or-copy, timed waits,
half-close, close and the peer's address.

`Connection` speaks HTTP/1.1 and calls only a transport for I/O, so a TLS or PROXY
protocol transport slots in here without touching the request loop. Every failure of the
client's side is raised as `ClientSocketError`; errors about a file given to `sendfile`
are the application's and propagate unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
from typing import Any, Protocol

# A half-closed connection is drained of at most this many reads of this size before it
# is closed: enough for the rest of a request the answer refused, bounded so a client
# streaming forever cannot hold the thread.
_DRAIN_READS = 16
_DRAIN_SIZE = 65536
# os.sendfile moves at most this much per call on Linux anyway.
_SENDFILE_CHUNK = 1 << 30
_COPY_CHUNK = 1 << 18


class ClientSocketError(ConnectionError):
    """A read or write on the client's socket failed: reset, broken pipe or timeout.

    An OSError, so an application that catches OSError around `write()` keeps working,
    yet a type of its own, so the application's own OSErrors still count as its failures.
    """


class Transport(Protocol):
    """What `Connection` and the dispatcher use of a transport. Every method but
    `sendfile`'s reading of the file raises `ClientSocketError` for the client's failures,
    except `receive_ready`, whose OSError the caller takes as the connection's end."""

    peer: Any
    # True when the transport's state lives in the memory of the process using it (a TLS
    # session): a forked process serving the connection must keep it to its end.
    stays_in_process: bool
    # False when the last read filled all it asked for: the kernel may hold more, which
    # an edge-triggered readiness set will not report again (`corral.serving.readiness`).
    drained: bool

    def fileno(self) -> int: ...

    def peer_text(self) -> str: ...

    def pending(self) -> int: ...

    def has_bytes_waiting(self) -> bool: ...

    def receive_ready(self, size: int) -> bytes | None: ...

    def receive(self, size: int) -> bytes: ...

    def send_some(self, data: bytes | bytearray | memoryview) -> int: ...

    def send_all(self, data: bytes) -> None: ...

    def sendfile(self, fd: int, offset: int, count: int) -> int: ...

    def wait_readable(self) -> None: ...

    def wait_writable(self) -> None: ...

    def half_close(self) -> bool: ...

    def drain(self) -> bool: ...

    def close(self) -> None: ...


class PlainTransport:
    """A TCP or Unix socket, as accepted.

    By default the socket is made non-blocking and the transport waits itself (poll, with
    the client timeout) only when a read or write would block: a socket with a timeout
    would have CPython poll before every recv and send, a system call more per request.

    `cooperative=True` (gevent) gives the socket the client timeout instead: gevent's
    socket then waits inside recv and send, yielding to other greenlets, and never raises
    BlockingIOError, so the same methods serve both. One class with a flag rather than
    two: everything but the socket's mode would be the same code twice.
    """

    __slots__ = ("drained", "peer", "raw", "sock", "timeout")

    # Whether `sendfile` may hand the file to the kernel; a TLS transport must copy.
    uses_os_sendfile = True
    # The kernel holds all of a plain connection's state: any process can take it up.
    stays_in_process = False

    def __init__(
        self, sock: socket.socket, peer: Any, timeout: float, cooperative: bool = False
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.timeout = timeout
        self.drained = True
        # The socket that never waits: gevent's socket waits (yields) inside recv and
        # send, but wraps a non-blocking one that `receive_ready` and `send_some` use, as
        # they may run in gevent's loop itself, where nothing may wait.
        self.raw: socket.socket = sock
        if cooperative:
            sock.settimeout(timeout)
            self.raw = getattr(sock, "_sock", sock)
        else:
            sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def peer_text(self) -> str:
        peer = self.peer
        if isinstance(peer, tuple):
            return f"{peer[0]}:{peer[1]}"
        return str(peer) or "unix"

    def pending(self) -> int:
        """Bytes this layer has received and not yet returned: none for a plain socket
        (the kernel's buffer is what readiness reports)."""
        return 0

    def has_bytes_waiting(self) -> bool:
        """True when a request (or the peer's close) has arrived but is not yet read:
        closing then would reset the connection under a request the client sent."""
        if self.pending():
            return True
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return False

    # Reading.

    def receive_ready(self, size: int) -> bytes | None:
        """Up to `size` bytes already arrived, b"" when the peer has closed, or None when
        nothing has arrived yet. Never waits; OSError as is."""
        try:
            data = self.raw.recv(size)
        except (BlockingIOError, InterruptedError):
            self.drained = True
            return None
        self.drained = len(data) < size
        return data

    def receive(self, size: int) -> bytes:
        """Up to `size` bytes, waiting up to the client timeout for the first; b"" when the
        peer has closed."""
        sock = self.sock
        try:
            while True:
                try:
                    data = sock.recv(size)
                except BlockingIOError:
                    self.wait_readable()
                else:
                    self.drained = len(data) < size
                    return data
        except OSError as error:
            raise ClientSocketError(f"receiving the request body: {error}") from error

    # Writing.

    def send_some(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the peer's window takes now, without waiting: the count sent, 0 when
        none fits."""
        try:
            return self.raw.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as error:
            raise ClientSocketError(f"sending: {error}") from error

    def send_all(self, data: bytes) -> None:
        """Send every byte, waiting (client timeout) while the peer's window is full.

        sendall() for a non-blocking socket: the first send is tried without polling, as
        CPython's own sendall on a socket with a timeout would not."""
        sock = self.sock
        try:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            rest = memoryview(data)[sent:]
            while rest:
                try:
                    sent = sock.send(rest)
                except BlockingIOError:
                    self.wait_writable()
                    continue
                rest = rest[sent:]
        except OSError as error:
            raise ClientSocketError(f"sending: {error}") from error

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send `count` bytes of the file `fd` from `offset`; the bytes sent, fewer only
        when the file ended first. Errors reading the file propagate as they are."""
        if not self.uses_os_sendfile:
            return self.copy_file(fd, offset, count)
        out = self.sock.fileno()
        sent = 0
        while sent < count:
            try:
                # Non-blocking underneath under gevent too: gevent's sockets always are.
                n = os.sendfile(out, fd, offset + sent, min(count - sent, _SENDFILE_CHUNK))
            except BlockingIOError:
                self.wait_writable()
                continue
            except OSError as error:
                if error.errno in (errno.EPIPE, errno.ECONNRESET):
                    raise ClientSocketError(f"sending a file: {error}") from error
                # Anything else is about the file, which the application gave us.
                raise
            if n == 0:
                break
            sent += n
        return sent

    def copy_file(self, fd: int, offset: int, count: int) -> int:
        """`sendfile` by reading the file and sending what was read: for a transport that
        must see the bytes (TLS encrypts them)."""
        sent = 0
        while sent < count:
            chunk = os.pread(fd, min(count - sent, _COPY_CHUNK), offset + sent)
            if not chunk:
                break
            self.send_all(chunk)
            sent += len(chunk)
        return sent

    # Waiting, ending.

    def wait_readable(self) -> None:
        """Wait up to the client timeout for bytes (or the peer's close)."""
        if not _poll(self.sock, select.POLLIN, self.timeout):
            raise ClientSocketError("client sent nothing in time")

    def wait_writable(self) -> None:
        """Wait up to the client timeout for room to send."""
        if not _poll(self.sock, select.POLLOUT, self.timeout):
            raise ClientSocketError("client did not read the response in time")

    def half_close(self) -> bool:
        """Stop sending, then read and drop what the client has sent so far (`drain`);
        True when nothing more can come (the client closed its side, or the connection
        failed), False when the client may still be sending."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return True
        return self.drain()

    def drain(self) -> bool:
        """Read and drop what the client has sent, without waiting, so that an answer
        already sent is not lost to a reset when the client is still sending (RFC 9112
        section 9.6); True once the client has closed its side or the connection failed."""
        sock = self.sock
        try:
            sock.setblocking(False)
            for _ in range(_DRAIN_READS):
                if not sock.recv(_DRAIN_SIZE):
                    return True
        except BlockingIOError:
            self.drained = True
            return False
        except OSError:
            return True
        self.drained = False
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            # Closing can only fail on an fd already gone, which is the goal anyway.
            self.sock.close()


def _poll(sock: socket.socket, event: int, timeout: float) -> bool:
    # select.poll is looked up at each call: under gevent it is the patched, cooperative one.
    poller = select.poll()
    poller.register(sock.fileno(), event)
    return bool(poller.poll(timeout * 1000))
