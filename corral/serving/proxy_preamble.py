"""`--proxy-protocol`: the opening step that reads a PROXY protocol header (HAProxy's,
version 1 or 2) before a connection's first request, and makes the client it names the
connection's peer.

It runs first among a connection's opening steps (`corral.serving.connection`'s
`OpeningStep`), on the dispatcher's thread, so it never waits: it looks at the bytes that
have arrived with MSG_PEEK and takes off the socket only the header's own bytes, leaving
what follows (a request, or a TLS handshake for the next step) in the kernel. Under
gevent it runs inside gevent's loop, so it calls the stdlib's `_socket` on the fd with
MSG_DONTWAIT rather than the connection's cooperative socket, which would wait.

What happens, by peer (a unix socket's peer counts as allowed, as in gunicorn):

- an allowed peer must send a header (the specification's section 2: a receiver "MUST
  not try to guess whether the protocol header is present"; HAProxy's `accept-proxy`
  refuses a connection without one too). Its source address and port become the peer
  that REMOTE_ADDR, REMOTE_PORT, the access log and the trust of forwarded headers see.
  LOCAL (a health check), UNKNOWN and families other than TCP over IPv4 and IPv6 keep the
  connection's own peer. A malformed header, or none, closes the connection with one
  line in the error log; a header still incomplete when the client timeout ends does too.
  gunicorn, unlike this, serves a connection that starts with no header as plain HTTP.
- any other peer is served as if --proxy-protocol were off: a PROXY header it sends is
  not a request line, so it is answered 400 and the connection closed.
"""

from __future__ import annotations

import _socket
import logging
import socket
from typing import TYPE_CHECKING

from corral.http.proxy_protocol import (
    Incomplete,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)
from corral.http.trusted_addresses import TrustedAddresses

if TYPE_CHECKING:
    from corral.serving.connection import Connection

error_log = logging.getLogger("corral.error")

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class ProxyPreamble:
    """The opening step of `--proxy-protocol`, trusting the peers in `allowed`.

    Called each time the connection turns readable until it returns True. While the
    header is incomplete, its bytes wait in `connection.buffer`, which holds nothing else
    before the first request: taking them off the socket keeps a slow sender's connection
    from being reported readable again and again for bytes already seen.
    Raises ProxyHeaderError (a ValueError) for a bad header or none, and OSError when the
    peer leaves before its header ends; the dispatcher closes the connection for either.
    """

    __slots__ = ("allowed",)

    def __init__(self, allowed: TrustedAddresses) -> None:
        self.allowed = allowed

    def __call__(self, connection: Connection) -> bool:
        if not self.allowed.trusts(connection.peer):
            return True
        # The fd's own socket object, not the connection's: under gevent that one would
        # wait inside recv. Detached afterwards, so the fd stays the connection's.
        sock = _socket.socket(fileno=connection.fd)
        try:
            return self._read(connection, sock)
        except ProxyHeaderError as error:
            error_log.info("%s: %s; connection closed", connection.peer_text(), error)
            raise
        finally:
            sock.detach()

    def _read(self, connection: Connection, sock: _socket.socket) -> bool:
        received = connection.buffer
        result = parse_proxy_header(bytes(received))
        while isinstance(result, Incomplete):
            wanted = result.limit - len(received)
            try:
                peeked = sock.recv(wanted, _PEEK)
            except (BlockingIOError, InterruptedError):
                return False
            if not peeked:
                raise ConnectionResetError("peer closed before its PROXY protocol header ended")
            result = parse_proxy_header(bytes(received) + peeked)
            # Every byte of an incomplete header is the header's; of a complete one, only
            # its own bytes are taken.
            taken = len(peeked) if isinstance(result, Incomplete) else result.size - len(received)
            received += _take(sock, taken)
            if isinstance(result, Incomplete) and len(peeked) < wanted:
                return False
        received.clear()
        _apply(connection, result)
        return True


def _take(sock: _socket.socket, size: int) -> bytes:
    """`size` bytes already seen with MSG_PEEK, off the socket."""
    data = sock.recv(size, socket.MSG_DONTWAIT)
    if len(data) != size:
        raise ConnectionResetError("bytes seen in the socket's buffer were gone")
    return data


def _apply(connection: Connection, header: ProxyHeader) -> None:
    if header.source is not None:
        connection.peer = header.source
        connection.transport.peer = header.source
