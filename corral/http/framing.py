"""Response heads and body framing as bytes (RFC 9112 sections 4, 6 and 7)."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STATUS = re.compile(r"([1-9][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
# Any control other than HTAB in a value would let an application split the response
# (CR, LF) or confuse a downstream parser (NUL and friends).
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"


class InvalidResponse(Exception):
    """The application asked for a response that cannot be sent safely."""


def status_code(status: str) -> int:
    """The numeric code of a WSGI status string such as "200 OK"."""
    if not isinstance(status, str) or _STATUS.fullmatch(status) is None:
        raise InvalidResponse(f"invalid status line {status!r}")
    return int(status[:3])


def check_header(name: str, value: str) -> None:
    """Raise `InvalidResponse` unless `name: value` can be sent verbatim."""
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise InvalidResponse(f"invalid header name {name!r}")
    if not isinstance(value, str) or _FORBIDDEN_IN_VALUE.search(value) is not None:
        raise InvalidResponse(f"invalid value for header {name!r}")


def encode_head(version: str, status: str, headers: list[tuple[str, str]]) -> bytes:
    """The status line and fields, already checked, ending with the empty line."""
    lines = [f"{version} {status}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def chunk_size_line(size: int) -> bytes:
    return b"%x\r\n" % size


def encode_error(status: int, reason: str, version: str, date: str) -> bytes:
    """A complete short response that closes the connection, for errors we answer ourselves."""
    body = f"{status} {reason}\n".encode("ascii")
    head = (
        f"{version} {status} {reason}\r\n"
        f"Date: {date}\r\n"
        "Server: corral\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
