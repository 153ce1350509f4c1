"""PEP 3333's environ: the keys fixed per listening socket, and those of each request.

The one place where a parsed request head becomes CGI names (REQUEST_METHOD, PATH_INFO,
HTTP_*); `wsgi.file_wrapper` is here too, as the environ offers it.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from corral.http.parser import RequestHead
from corral.wsgi.forwarded import ForwardedHeaders, apply_forwarded
from corral.wsgi.input import RequestBody

# Wire names (lower case) and their CGI form, "" for a name dropped: the common ones recur
# in every request. Bounded, so a client inventing names cannot grow it without end.
_CGI_NAMES: Final[dict[str, str]] = {
    "content-type": "CONTENT_TYPE",
    "content-length": "CONTENT_LENGTH",
}
_MAX_REMEMBERED_NAMES: Final = 1024


class FileWrapper:
    """`wsgi.file_wrapper`: lets the server send a real file with `os.sendfile`."""

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.block_size)
        if data:
            return bytes(data)
        raise StopIteration

    def file_span(self) -> tuple[int, int, int] | None:
        """(fd, offset, length) when the object is a regular file sendfile can read."""
        try:
            fd = self.filelike.fileno()
            offset = self.filelike.tell()
            stat = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return None
        if stat.st_mode & 0o170000 != 0o100000:
            return None
        return fd, offset, max(stat.st_size - offset, 0)


def base_environ(
    server_name: str,
    server_port: str,
    url_scheme: str,
    script_name: str,
    multithread: bool,
    multiprocess: bool,
) -> dict[str, Any]:
    """The keys that are the same for every request on one listening socket."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": "corral",
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SCRIPT_NAME": script_name,
    }


def path_info(path: str, script_name: str) -> str:
    """PATH_INFO: the target's path decoded (bytes as latin-1, PEP 3333), less the
    SCRIPT_NAME it starts with."""
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    # "/api" is the root of "/api" and "/api/x", not of "/apiary".
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name) :]
    return path


def build_environ(
    head: RequestHead,
    body: RequestBody,
    base: dict[str, Any],
    # As accept() gives it: (host, port) for IPv4, with flow and scope for IPv6; a path
    # (often "") for a Unix socket.
    peer: tuple[Any, ...] | str,
    forwarded: ForwardedHeaders | None = None,
) -> dict[str, Any]:
    """The environ of one request from `peer`; with `forwarded`, what a trusted proxy's
    headers say of the client is applied last (`corral.wsgi.forwarded`)."""
    environ = base.copy()
    environ["REQUEST_METHOD"] = head.method
    environ["PATH_INFO"] = path_info(head.path, environ["SCRIPT_NAME"])
    environ["QUERY_STRING"] = head.query
    environ["RAW_URI"] = environ["REQUEST_URI"] = head.target
    environ["SERVER_PROTOCOL"] = head.version
    environ["wsgi.input"] = body
    if isinstance(peer, tuple):
        environ["REMOTE_ADDR"] = peer[0]
        environ["REMOTE_PORT"] = str(peer[1])
    else:
        environ["REMOTE_ADDR"] = peer
    names = _CGI_NAMES
    for name, value in head.fields.items():
        key = names.get(name)
        if key is None:
            key = _cgi_name(name)
        if key:
            environ[key] = value
    if head.authority is not None:
        # RFC 9112 section 3.2.2: an absolute-form target overrides the Host field.
        environ["HTTP_HOST"] = head.authority
    # One pass over the field names when no proxy header is present.
    if forwarded is not None and not forwarded.names.isdisjoint(head.fields):
        apply_forwarded(environ, head.fields, peer, forwarded)
    return environ


def _cgi_name(name: str) -> str:
    """`HTTP_X_FORWARDED_FOR` for `x-forwarded-for`, remembered for next time.

    A name holding `_` gives "" (dropped): in CGI form `X_Forwarded_For` would pass for
    `X-Forwarded-For`, a header a proxy in front may have vetted or stripped.
    """
    key = "" if "_" in name else "HTTP_" + name.upper().replace("-", "_")
    if len(_CGI_NAMES) < _MAX_REMEMBERED_NAMES:
        _CGI_NAMES[name] = key
    return key
