"""Calls one app from apps.py in a tight loop, with no server, and prints the rate.

Usage: python -m harness.inprocess APP SECONDS   (run from bench/)
Prints one JSON object: {"app": ..., "calls_per_second": ...}.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import apps

# Reading the clock after every call would be a visible share of a call to hello.
CALLS_PER_CLOCK_READ = 100


def build_environ(app_name: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if app_name == "upload":
        environ["REQUEST_METHOD"] = "POST"
        environ["CONTENT_TYPE"] = "application/octet-stream"
        environ["CONTENT_LENGTH"] = str(apps.MEBIBYTE)
    return environ


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


def measure_call_rate(app: Callable[..., Any], app_name: str, seconds: float) -> float:
    """Calls per second, each with a fresh copy of the prebuilt environ and input.

    The copy stands for the environ a server builds per request, and apps such
    as Flask store per-request objects in it.
    """
    base_environ = build_environ(app_name)
    request_body = b"x" * apps.MEBIBYTE if app_name == "upload" else b""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(CALLS_PER_CLOCK_READ):
            environ = dict(base_environ)
            environ["wsgi.input"] = io.BytesIO(request_body)
            body = app(environ, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        calls += CALLS_PER_CLOCK_READ
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def main() -> None:
    app_name, seconds = sys.argv[1], float(sys.argv[2])
    app = getattr(apps, app_name)
    rate = measure_call_rate(app, app_name, seconds)
    print(json.dumps({"app": app_name, "calls_per_second": rate}))


if __name__ == "__main__":
    main()
