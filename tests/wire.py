"""Raw HTTP exchanges over a client socket, for tests that need the exact bytes."""

from __future__ import annotations

import socket


def read_until_closed(sock: socket.socket, reset_ends: bool = False) -> bytes:
    """Everything the server sends until it closes; a socket timeout fails the test.

    With `reset_ends`, a reset counts as the close: a server that closes with unread
    bytes in its receive queue sends one.
    """
    received = b""
    try:
        while piece := sock.recv(65536):
            received += piece
    except ConnectionResetError:
        if not reset_ends:
            raise
    return received
