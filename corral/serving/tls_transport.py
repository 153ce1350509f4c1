"""The byte stream of a TLS connection once its handshake is done: a non-blocking
`ssl.SSLSocket` under the same `Transport` methods as a plain socket.

The socket stays non-blocking in every model, gevent's included: a read or write that
would block raises `SSLWantReadError` or `SSLWantWriteError` (gevent's SSLSocket returns 0
from a send instead), and the transport waits itself with `poll`, which gevent's
patching makes cooperative. The same code therefore serves the stdlib's SSLSocket and
gevent's, whichever class the context in use was made with.

Bytes TLS has decrypted but not yet returned are `pending()`: the kernel no longer holds
them, so no readiness set reports them, and the dispatcher serves such a connection again
on its own. Files are copied through the encryption instead of handed to `os.sendfile`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from typing import Any

from corral.serving.transport import ClientSocketError, PlainTransport

_WOULD_BLOCK = (ssl.SSLWantReadError, BlockingIOError, InterruptedError)
# The most plaintext one TLS record carries (RFC 8446 section 5.1): `send_some` writes a
# record at a time, so that what it reports sent follows the client's reading.
_RECORD_SIZE = 16384


class TLSTransport(PlainTransport):
    """A TLS session over an accepted socket. It reuses the plain transport's waits, file
    copy and peer; reading, writing and ending speak TLS.

    The session's state (keys, sequence numbers) lives in the memory of the process that
    uses it, so a forked process that serves the connection must keep it to its end
    (`stays_in_process`). Only the process that last read or wrote on the session ends it
    with a close_notify alert; any other process holding a copy of the socket (a forked
    child letting go of what it inherited) closes its descriptor and sends nothing.
    """

    __slots__ = ("established", "user")

    sock: ssl.SSLSocket
    uses_os_sendfile = False
    stays_in_process = True

    def __init__(self, sock: ssl.SSLSocket, peer: Any, timeout: float) -> None:
        # The socket is non-blocking already: the handshake needed it so.
        self.sock = self.raw = sock
        self.peer = peer
        self.timeout = timeout
        # What the session has decrypted ahead is `pending`; a TLS connection is watched
        # level-triggered, so the kernel's unread bytes are reported again.
        self.drained = True
        # True once the handshake is done: only then is there a session to end.
        self.established = False
        self.user = os.getpid()

    def pending(self) -> int:
        """Bytes decrypted and not yet returned."""
        try:
            return self.sock.pending()
        except (OSError, ValueError):
            # Closed: nothing is pending on a connection that is gone.
            return 0

    # Reading.

    def receive_ready(self, size: int) -> bytes | None:
        """Up to `size` decrypted bytes, b"" once the client has closed (with or without
        close_notify), or None while a whole record has not arrived. Never waits; TLS
        errors (a forged record, an alert) are raised as the OSErrors they are."""
        self.user = os.getpid()
        try:
            return self.sock.recv(size)
        except _WOULD_BLOCK:
            return None
        except ssl.SSLWantWriteError:
            # Only while the session renegotiates; the client's next bytes resume it.
            return None

    def receive(self, size: int) -> bytes:
        """Up to `size` decrypted bytes, waiting up to the client timeout for a record;
        b"" when the client has closed."""
        self.user = os.getpid()
        sock = self.sock
        try:
            while True:
                try:
                    return sock.recv(size)
                except _WOULD_BLOCK:
                    self.wait_readable()
                except ssl.SSLWantWriteError:
                    self.wait_writable()
        except OSError as error:
            raise ClientSocketError(f"receiving the request body: {error}") from error

    # Writing.

    def send_some(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt and send what the client's window takes now, a record at a time,
        without waiting: the count of bytes sent, 0 when none fits.

        After a record that would block, OpenSSL has begun writing it and must be given
        the same bytes again (more may follow them): the next call must start where this
        one stopped, as the connection's outbox, unchanged until sent, does. A record is
        a slice (a copy) rather than a view: a view would pin a bytearray outbox against
        resizing for as long as an error raised here is alive."""
        self.user = os.getpid()
        sock = self.sock
        total = len(data)
        sent = 0
        try:
            while sent < total:
                record = data if total <= _RECORD_SIZE else data[sent : sent + _RECORD_SIZE]
                try:
                    # gevent's SSLSocket returns 0 where the stdlib's raises.
                    count = sock.send(record)
                except (ssl.SSLWantWriteError, *_WOULD_BLOCK):
                    break
                if not count:
                    break
                sent += count
        except OSError as error:
            raise ClientSocketError(f"sending: {error}") from error
        return sent

    def send_all(self, data: bytes) -> None:
        """Encrypt and send every byte, waiting (client timeout) while the client's
        window is full. After a write that would block, OpenSSL must be given the same
        bytes again, which the loop does."""
        self.user = os.getpid()
        sock = self.sock
        rest = memoryview(data)
        try:
            while rest:
                try:
                    sent = sock.send(rest)
                except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                    sent = 0
                except ssl.SSLWantReadError:
                    self.wait_readable()
                    continue
                if sent:
                    rest = rest[sent:]
                else:
                    self.wait_writable()
        except OSError as error:
            raise ClientSocketError(f"sending: {error}") from error

    # Ending.

    def half_close(self) -> bool:
        """End the session (close_notify), stop sending, and drain what the client still
        sends, as a plain connection does (RFC 9112 section 9.6)."""
        self._end_session()
        return super().half_close()

    def close(self) -> None:
        if self.user == os.getpid():
            self._end_session()
            with contextlib.suppress(OSError):
                # Also ends the stream for any process still holding a copy of this
                # socket (process per request's parent): its stale session state can
                # then never write a record after this one's close_notify.
                self.sock.shutdown(socket.SHUT_WR)
        super().close()

    def _end_session(self) -> None:
        """Send close_notify, so the client knows a response delimited by the close is
        complete (RFC 9112 section 9.8); the client's own is not waited for."""
        if not self.established:
            return
        self.established = False
        with contextlib.suppress(OSError, ValueError):
            # On a non-blocking socket, unwrap sends the alert and raises
            # SSLWantReadError for the client's, which no one needs.
            self.sock.unwrap()
