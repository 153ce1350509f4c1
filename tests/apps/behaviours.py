"""A pure WSGI app whose paths each show one behaviour the server must handle.

Every path is reached with the server started as `corral ... tests.apps.behaviours:app`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

StartResponse = Callable[..., Any]


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_json(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """The environ's plain values as JSON (wsgi.input read fully first)."""
    body = environ["wsgi.input"].read()
    shown = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
    shown["body"] = body.decode("latin-1")
    shown["wsgi.errors_is_stderr"] = environ["wsgi.errors"] is sys.stderr
    return _text(start_response, json.dumps(shown).encode())


def echo(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    return _text(start_response, environ["wsgi.input"].read())


def read_api(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Exercise read(n), readline(n), readlines() and iteration as ?how= says."""
    stream = environ["wsgi.input"]
    how = environ["QUERY_STRING"]
    parts: list[bytes]
    if how == "read3":
        parts = []
        while True:
            piece = stream.read(3)
            if not piece:
                break
            parts.append(piece)
    elif how == "readline":
        parts = []
        while True:
            line = stream.readline()
            if not line:
                break
            parts.append(line)
    elif how == "readline4":
        parts = []
        while True:
            line = stream.readline(4)
            if not line:
                break
            parts.append(line)
    elif how == "readlines":
        parts = stream.readlines()
    elif how == "iterate":
        parts = list(stream)
    else:
        parts = [stream.read()]
    after = stream.read()
    body = json.dumps(
        {"parts": [p.decode("latin-1") for p in parts], "after": after.decode("latin-1")}
    ).encode()
    return _text(start_response, body)


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(p.partition("=")[::2] for p in environ["QUERY_STRING"].split("&") if p)


def cpu(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Spins on the CPU for `ms` milliseconds of this thread's CPU time."""
    spent = int(_query(environ).get("ms", "5")) / 1000
    began = time.thread_time()
    while time.thread_time() - began < spent:
        pass
    return _text(start_response, b"spun")


def slow(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    query = _query(environ)
    if "announce" in query:
        # A line in the server's log once the request is inside the app, for tests that
        # act while it runs.
        environ["wsgi.errors"].write(f"app: started {query['announce']}\n")
        environ["wsgi.errors"].flush()
    # The clock is the machine's: the spans of requests in different processes compare.
    began = time.monotonic()
    time.sleep(int(query.get("ms", "100")) / 1000)
    span = {"began": began, "ended": time.monotonic()}
    body = json.dumps({"pid": os.getpid(), "thread": threading.current_thread().name, **span})
    return _text(start_response, body.encode())


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for number in range(5):
        yield b"part %d\n" % number
        if number == 1:
            yield b""  # an empty piece must not end a chunked body


def write_callable(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"then ", b"returned"]


def declared_longer(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "10")])
    return [b"0123456789", b"EXTRA BYTES THAT MUST NOT BE SENT"]


def declared_shorter(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "100")])
    return [b"only", b" this"]


def raise_before_start(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("failure before start_response: SECRET-TRACEBACK-TEXT")


def raise_after_head(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part"
    raise RuntimeError("failure after the head was sent")


def raise_in_iterable_before_body(
    environ: dict[str, Any], start_response: StartResponse
) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("failure before the first body byte")
    yield b""  # pragma: no cover


def exc_info_replaces(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("handled")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def bad_header_value(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("X-Injected", "a\r\nSet-Cookie: stolen=1")])
    return [b"never sent"]


def bad_header_name(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Bad Name", "x")])
    return [b"never sent"]


def not_bytes(environ: dict[str, Any], start_response: StartResponse) -> list[Any]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str, not bytes"]


class _ClosingBody:
    closed_log = os.path.join(tempfile.gettempdir(), "corral-close-calls")

    def __init__(self, fail: bool, query: str) -> None:
        self.fail = fail
        # The query string goes into the log line so that a test can find its own call.
        self.query = query

    def __iter__(self) -> Iterator[bytes]:
        yield b"body"
        if self.fail:
            raise RuntimeError("failure inside the iterable")

    def close(self) -> None:
        with open(self.closed_log, "a") as log:
            log.write(f"{os.getpid()} closed {self.query}\n")


class _ClosingList(list[bytes]):
    """A list with a close(), which a server must call too (PEP 3333)."""

    def __init__(self, query: str) -> None:
        super().__init__([b"body"])
        self.query = query

    def close(self) -> None:
        with open(_ClosingBody.closed_log, "a") as log:
            log.write(f"{os.getpid()} closed {self.query}\n")


def close_called(
    environ: dict[str, Any], start_response: StartResponse
) -> _ClosingBody | _ClosingList:
    start_response("200 OK", [("Content-Type", "text/plain")])
    query = environ["QUERY_STRING"]
    if "list" in query:
        return _ClosingList(query)
    return _ClosingBody(fail="fail" in query, query=query)


def file_wrapper(environ: dict[str, Any], start_response: StartResponse) -> Any:
    # The server closes it through the wrapper's close(), after sending it.
    handle = tempfile.TemporaryFile()  # noqa: SIM115
    handle.write(b"0123456789" * 100_000)
    handle.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle, 8192)


def no_content(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("204 No Content", [])
    return [b"body that must not be sent"]


def not_modified(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("304 Not Modified", [("ETag", '"x"')])
    return []


def framing(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """The status, Content-Length and one-piece body the query asks for, e.g.
    `?status=204&length=4&body=data`, or the same in an X-Framing header (for CONNECT,
    whose target is no path)."""
    if "HTTP_X_FRAMING" in environ:
        environ = {"QUERY_STRING": environ["HTTP_X_FRAMING"]}
    query = _query(environ)
    headers = [("Content-Type", "text/plain")]
    if "length" in query:
        headers.append(("Content-Length", query["length"]))
    start_response(query.get("status", "200") + " Status", headers)
    return [query.get("body", "").encode()]


def connection_close(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Connection", "close"), ("Content-Length", "3")])
    return [b"bye"]


def one_piece(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """A body given as one piece with no Content-Length: the server can count it."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"one piece, no length given"]


def respond_then_read(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """Sends the head, then reads the body: too late for 100 Continue."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"head sent; body: "
    yield environ["wsgi.input"].read()


def raise_os_error(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    # The application's own OSError, not a failure of the client's socket.
    os.stat(os.path.join(tempfile.gettempdir(), "corral-no-such-dir", "missing"))
    return _text(start_response, b"unreachable")  # pragma: no cover


def raise_type_error(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    return _text(start_response, b"count: " + len(environ))  # type: ignore[operator]


def log_error(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    errors = environ["wsgi.errors"]
    errors.write("message for wsgi.errors: " + environ["QUERY_STRING"] + "\n")
    errors.flush()
    return _text(start_response, b"logged")


def big(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """`kib` KiB in one piece, a pattern a client can check."""
    query = _query(environ)
    return _text(start_response, big_body(int(query.get("kib", "1024"))))


def big_body(kib: int) -> bytes:
    return bytes(range(256)) * 4 * kib


def ignore_body(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    return _text(start_response, b"body not read")


ROUTES: dict[str, Callable[..., Any]] = {
    "/environ": environ_json,
    "/echo": echo,
    "/read": read_api,
    "/slow": slow,
    "/cpu": cpu,
    "/stream": stream,
    "/write": write_callable,
    "/declared-longer": declared_longer,
    "/declared-shorter": declared_shorter,
    "/raise-before-start": raise_before_start,
    "/raise-after-head": raise_after_head,
    "/raise-in-iterable": raise_in_iterable_before_body,
    "/exc-info": exc_info_replaces,
    "/bad-header-value": bad_header_value,
    "/bad-header-name": bad_header_name,
    "/not-bytes": not_bytes,
    "/close-called": close_called,
    "/file": file_wrapper,
    "/no-content": no_content,
    "/framing": framing,
    "/not-modified": not_modified,
    "/connection-close": connection_close,
    "/ignore-body": ignore_body,
    "/big": big,
    "/one-piece": one_piece,
    "/respond-then-read": respond_then_read,
    "/raise-os-error": raise_os_error,
    "/raise-type-error": raise_type_error,
    "/log-error": log_error,
}


def app(environ: dict[str, Any], start_response: StartResponse) -> Any:
    if "HTTP_X_SHOW_ENVIRON" in environ:
        # Any path can show its environ, for tests of how paths are decoded and split.
        return environ_json(environ, start_response)
    if "HTTP_X_FRAMING" in environ:
        return framing(environ, start_response)
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        return _text(start_response, b"hello\n")
    return route(environ, start_response)
