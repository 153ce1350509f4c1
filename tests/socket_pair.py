"""One `Connection` in this process over a socket pair: the server's end served by
corral's own connection code, the other end the test's client."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

from corral.http.parser import HeadLimits
from corral.serving.connection import Connection, ServingState
from corral.serving.listeners import ListenerInfo
from corral.serving.transport import PlainTransport
from corral.wsgi.environ import base_environ

PEER = ("127.0.0.1", 50000)


def serving_state(app: Callable[..., Any], client_timeout: float = 5.0) -> ServingState:
    """What a listener on 127.0.0.1:8000 serving `app` over plain HTTP gives its
    connections, with the default limits."""
    return ServingState(
        app,
        HeadLimits(),
        ListenerInfo("127.0.0.1", "8000"),
        base_environ("127.0.0.1", "8000", "http", "", False, False),
        client_timeout,
        None,
    )


@contextlib.contextmanager
def connection_pair(
    state: ServingState, peer: Any = PEER
) -> Iterator[tuple[Connection, socket.socket]]:
    """A connection from `peer` as the dispatcher accepts it, and its client end (which
    waits up to 5 s for what it reads); both closed on leaving."""
    server_side, client_side = socket.socketpair()
    client_side.settimeout(5)
    connection = Connection(PlainTransport(server_side, peer, timeout=5.0), state)
    try:
        yield connection, client_side
    finally:
        connection.close()
        client_side.close()
