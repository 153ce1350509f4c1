"""The access log, formatted with gunicorn's `%(x)s` atoms: a request observer."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from corral.wsgi.environ import path_info

if TYPE_CHECKING:
    from corral.http.parser import RequestHead
    from corral.serving.request_observer import RequestRecord

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# werkzeug.serving's request line: `127.0.0.1 - - [30/Nov/2026 15:20:00] "GET / HTTP/1.1"
# 200 -` (the size is always "-" there, as http.server's send_response logs it).
WERKZEUG_FORMAT = '%(h)s - - [%({%d/%b/%Y %H:%M:%S}t)s] "%(r)s" %(s)s -'
# The access log paths that name this process's own streams: written through them, never
# opened or reopened.
STDOUT = "-"
STDERR = "/dev/stderr"


class _Atoms:
    """Computes each atom only when the format asks for it."""

    __slots__ = ("environ", "record", "script_name", "seconds")

    def __init__(
        self,
        record: RequestRecord,
        seconds: float,
        script_name: str,
        environ: dict[str, Any] | None,
    ) -> None:
        self.record = record
        self.seconds = seconds
        self.script_name = script_name
        self.environ = environ

    def __getitem__(self, key: str) -> str:
        record = self.record
        head = record.head
        if key.startswith("{") and len(key) > 2:
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                # The request's fields by their wire names, so Content-Type and
                # Content-Length are found too: in the environ they have no HTTP_ prefix.
                return "-" if head is None else head.fields.get(name.lower(), "-")
            if kind == "o":
                wanted = name.lower()
                for header, value in record.headers:
                    if header.lower() == wanted:
                        return value
                return "-"
            if kind == "e":
                environ = self.environ
                if environ is not None and name in environ:
                    return str(environ[name])
                return os.environ.get(name, "-")
            if kind == "t":
                # Apache's %{format}t: the local time in a strftime format.
                return time.strftime(name)
        if key == "h":
            peer = record.peer
            return peer[0] if isinstance(peer, tuple) else (peer or "-")
        if key in ("l", "u"):
            return "-"
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if key == "s":
            return str(record.status_code or 500)
        if key == "B":
            return str(record.sent)
        if key == "b":
            return str(record.sent) if record.sent else "-"
        if key == "T":
            return str(int(self.seconds))
        if key == "M":
            return str(int(self.seconds * 1000))
        if key == "D":
            return str(int(self.seconds * 1_000_000))
        if key == "L":
            return f"{self.seconds:.6f}"
        if key == "p":
            return f"<{os.getpid()}>"
        if key in _REQUEST_ATOMS:
            # A request refused before its request line was read has none of these.
            return "-" if head is None else _REQUEST_ATOMS[key](head, self.script_name)
        raise KeyError(key)


_REQUEST_ATOMS: dict[str, Callable[[RequestHead, str], str]] = {
    "r": lambda head, _: f"{head.method} {head.target} {head.version}",
    "m": lambda head, _: head.method,
    "U": lambda head, script_name: path_info(head.path, script_name),
    "q": lambda head, _: head.query,
    "H": lambda head, _: head.version,
    "f": lambda head, _: head.fields.get("referer", "-"),
    "a": lambda head, _: head.fields.get("user-agent", "-"),
}


class AccessLog:
    """Writes one line per response to a stream: a request observer.

    Every atom but `%({x}e)s` comes from the request head and the `RequestRecord`, so
    `%(h)s` is the peer corral accepted from, whatever middleware later writes into
    REMOTE_ADDR. A format error is written as the line instead of failing the request.
    """

    def __init__(
        self,
        stream: IO[str],
        log_format: str = DEFAULT_FORMAT,
        path: str = "-",
        script_name: str = "",
    ) -> None:
        self.stream = stream
        self.format = log_format
        self.path = path
        # --root-path, taken off `%(U)s` as it is taken off PATH_INFO.
        self.script_name = script_name
        self.lock = threading.Lock()

    @classmethod
    def open(cls, path: str, log_format: str, script_name: str = "") -> AccessLog:
        """'-' is standard output, '/dev/stderr' standard error; anything else a file
        opened for appending."""
        return cls(_open_stream(path), log_format, path, script_name)

    def reopen(self) -> None:
        """Open the file again by name (USR1), after a log rotation moved it."""
        if self.path in (STDOUT, STDERR):
            return
        stream = _open_stream(self.path)
        with self.lock:
            previous, self.stream = self.stream, stream
        previous.close()

    def started(self, head: RequestHead, environ: dict[str, Any]) -> dict[str, Any]:
        # Kept for `%({x}e)s` only, read after the application has run as it always was.
        return environ

    def finished(self, token: dict[str, Any] | None, record: RequestRecord, seconds: float) -> None:
        """Write the line for `record`; `token` is the environ, None for a request corral
        refused before it had one."""
        try:
            line = self.format % _Atoms(record, seconds, self.script_name, token)
        except (KeyError, ValueError, TypeError) as error:
            line = f"access log format error: {error!r}"
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _open_stream(path: str) -> IO[str]:
    if path == STDOUT:
        return sys.stdout
    if path == STDERR:
        # The process's own stream: opening the device again would write at a second
        # file offset, over lines sent to a redirected standard error.
        return sys.stderr
    return open(path, "a", buffering=1)
