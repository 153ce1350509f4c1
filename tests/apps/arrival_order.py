"""Answers each request with its place in the order the process served them.

`/gate?port=N` first holds the whole process: it connects to the test's listener on port
N, says "in", and waits for a byte back. The socket is the C module's own, which gevent
does not patch, so even under `-k gevent` nothing else runs meanwhile: the test knows
what arrived while the server could not look.
"""

from __future__ import annotations

import _socket
import itertools
from collections.abc import Callable
from typing import Any

_served = itertools.count(1)


def _hold(port: int) -> None:
    gate = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        gate.settimeout(30.0)
        gate.connect(("127.0.0.1", port))
        gate.sendall(b"in")
        gate.recv(1)
    finally:
        gate.close()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    if environ["PATH_INFO"] == "/gate":
        _hold(int(environ["QUERY_STRING"].removeprefix("port=")))
    body = str(next(_served)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
