"""An app for the master's tests: which worker answered, and requests that take long.

`/pid` answers the worker's pid and the module-level VERSION (changed on disk by the
reload tests), `/sleep?S` sleeps S seconds, `/hang` never returns by itself, `/grow?MB`
keeps MB more MiB alive in the worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

VERSION = "1"
_kept: list[bytes] = []


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "1"))
    elif path == "/hang":
        time.sleep(1000)
    elif path == "/grow":
        _kept.append(os.urandom(int(environ["QUERY_STRING"]) * 1024 * 1024))
    body = f"{os.getpid()} {VERSION}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
