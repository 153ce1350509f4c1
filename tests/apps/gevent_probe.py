"""Tells whether gevent's patching came before this module was imported.

Names bound at import time keep whatever the standard library held then: a server that
patched only after importing the application would leave these as the blocking originals.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from time import sleep
from typing import Any

SOCKET_CLASS_AT_IMPORT = socket.socket


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    import gevent
    import gevent.socket

    body = json.dumps(
        {
            "sleep_patched": sleep is gevent.sleep,
            "socket_patched": SOCKET_CLASS_AT_IMPORT is gevent.socket.socket,
            "multithread": environ["wsgi.multithread"],
            "multiprocess": environ["wsgi.multiprocess"],
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
