"""The access log, formatted with gunicorn's `%(x)s` atoms."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.wsgi.response import Response

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

    __slots__ = ("duration", "environ", "response")

    def __init__(self, environ: dict[str, Any], response: Response, duration: float) -> None:
        self.environ = environ
        self.response = response
        self.duration = duration

    def __getitem__(self, key: str) -> str:
        environ = self.environ
        if key.startswith("{") and len(key) > 2:
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                # The request's fields by their wire names, so Content-Type and
                # Content-Length are found too: in the environ they have no HTTP_ prefix.
                return self.response.request.fields.get(name.lower(), "-")
            if kind == "o":
                wanted = name.lower()
                for header, value in self.response._headers:
                    if header.lower() == wanted:
                        return value
                return "-"
            if kind == "e":
                return str(environ.get(name, os.environ.get(name, "-")))
            if kind == "t":
                # Apache's %{format}t: the local time in a strftime format.
                return time.strftime(name)
        response = self.response
        if key == "h":
            return str(environ.get("REMOTE_ADDR") or "-")
        if key in ("l", "u"):
            return "-"
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if key == "r":
            target = environ.get("RAW_URI", "")
            return f"{environ['REQUEST_METHOD']} {target} {environ['SERVER_PROTOCOL']}"
        if key == "m":
            return str(environ["REQUEST_METHOD"])
        if key == "U":
            return str(environ.get("PATH_INFO", ""))
        if key == "q":
            return str(environ.get("QUERY_STRING", ""))
        if key == "H":
            return str(environ["SERVER_PROTOCOL"])
        if key == "s":
            return str(response.code or 500)
        if key == "B":
            return str(response.bytes_sent)
        if key == "b":
            return str(response.bytes_sent) if response.bytes_sent else "-"
        if key == "f":
            return str(environ.get("HTTP_REFERER", "-"))
        if key == "a":
            return str(environ.get("HTTP_USER_AGENT", "-"))
        if key == "T":
            return str(int(self.duration))
        if key == "M":
            return str(int(self.duration * 1000))
        if key == "D":
            return str(int(self.duration * 1_000_000))
        if key == "L":
            return f"{self.duration:.6f}"
        if key == "p":
            return f"<{os.getpid()}>"
        raise KeyError(key)


class AccessLog:
    """Writes one line per response to a stream."""

    def __init__(self, stream: IO[str], log_format: str = DEFAULT_FORMAT, path: str = "-") -> None:
        self.stream = stream
        self.format = log_format
        self.path = path
        self.lock = threading.Lock()

    @classmethod
    def open(cls, path: str, log_format: str) -> AccessLog:
        """'-' is standard output, '/dev/stderr' standard error; anything else a file
        opened for appending."""
        return cls(_open_stream(path), log_format, path)

    def reopen(self) -> None:
        """Open the file again by name (USR1), after a log rotation moved it."""
        if self.path in (STDOUT, STDERR):
            return
        stream = _open_stream(self.path)
        with self.lock:
            previous, self.stream = self.stream, stream
        previous.close()

    def write(self, environ: dict[str, Any], response: Response, duration: float) -> None:
        try:
            line = self.format % _Atoms(environ, response, duration)
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
