"""WSGI applications served by every server in the benchmark.

Each one is a module-level callable so any server can load it as ``apps:NAME``
with ``bench/`` as the working directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

HELLO_BODY = b"Hello, World!"
MEBIBYTE = 1024 * 1024
DOWNLOAD_BODY = b"x" * MEBIBYTE
READ_CHUNK_SIZE = 64 * 1024
SLEEP_SECONDS = 0.020


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The smallest useful response: measures the server, not the app."""
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))],
    )
    return [HELLO_BODY]


def sleep20(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Stands for an app waiting 20 ms on a database: measures concurrency, not speed."""
    time.sleep(SLEEP_SECONDS)
    return hello(environ, start_response)


def download(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """One prebuilt 1 MiB body, so the figure is the server's send path alone."""
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(DOWNLOAD_BODY))),
        ],
    )
    return [DOWNLOAD_BODY]


def upload(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Reads the whole request body and answers with its length.

    Reads no more than CONTENT_LENGTH: PEP 3333 lets a server hand over a stream
    that blocks instead of reaching end of file.
    """
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    received = 0
    while remaining > 0:
        chunk = stream.read(min(READ_CHUNK_SIZE, remaining))
        if not chunk:
            break
        received += len(chunk)
        remaining -= len(chunk)
    body = str(received).encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _build_flask_json() -> Callable[..., Iterable[bytes]]:
    flask_app = Flask("bench_flask_json")

    @flask_app.route("/")
    def greeting() -> dict[str, str]:
        return {"message": "Hello, World!"}

    return flask_app


# Built at import, as a real Flask app is: a server that forks per request must
# find Flask already loaded in its parent. Every server therefore has Flask in
# its RSS, whichever app it serves.
flask_json = _build_flask_json()
"""A Flask route returning a small JSON object: a typical framework's cost per request."""


def robustness(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """bench/robustness.py's app: `/upload` reads its body, `/download` is 1 MiB, the rest
    is `hello`."""
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        return upload(environ, start_response)
    if path == "/download":
        return download(environ, start_response)
    return hello(environ, start_response)


SLOW_PATH = "/slow"
SLOW_SLEEP_SECONDS = 0.050


def _with_slow_path(fast: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """An app whose requests mostly answer at once and now and then wait 50 ms on a
    database. A fast request pays one more call and one environ lookup than `fast` alone.
    """

    def mixed(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == SLOW_PATH:
            time.sleep(SLOW_SLEEP_SECONDS)
            return hello(environ, start_response)
        return fast(environ, start_response)

    return mixed


mixed_hello = _with_slow_path(hello)
"""Scenario E: `/slow` sleeps 50 ms, then answers as `hello`; any other path is `hello`."""
mixed_flask_json = _with_slow_path(flask_json)
"""Scenario E: `/slow` sleeps 50 ms, then answers as `hello`; any other path is the Flask route."""


APP_NAMES = (
    "hello", "flask_json", "sleep20", "download", "upload", "mixed_hello", "mixed_flask_json",
)  # fmt: skip
