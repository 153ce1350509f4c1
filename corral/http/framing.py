"""Response heads and body framing as bytes (RFC 9112 sections 4, 6 and 7)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum
from typing import Any, Final, TypeAlias

_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STATUS: Final = re.compile(r"([1-9][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
# Any control other than HTAB in a value would let an application split the response
# (CR, LF) or confuse a downstream parser (NUL and friends).
_FORBIDDEN_IN_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")

LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
SERVER: Final = "corral"
# The fields corral adds unless the application gave them itself.
_ADDED_BY_SERVER: Final = frozenset({"date", "server", "connection"})


class InvalidResponse(Exception):
    """The application asked for a response that cannot be sent safely."""


# Status lines and header names found valid before, and the code of each status: an
# application sends the same few in every response, and a dictionary lookup costs a
# tenth of a regular expression's match. Bounded, so an application inventing them
# cannot grow them without end.
_VALID_STATUSES: Final[dict[str, int]] = {}
_VALID_NAMES: Final[set[str]] = set()
_MAX_REMEMBERED: Final = 1024
# Whole header lines found valid before, as the (name, value) tuples the application
# gave: most responses of an application repeat most of its lines. Values vary more
# than names (a request ID, a cookie), so once full the set starts again.
_VALID_HEADERS: Final[set[tuple[str, str]]] = set()

# The checks below take what the application gave as `object`: compiled by mypyc, a
# parameter typed `str` would refuse anything else with a TypeError before the check
# could say what is wrong.


def status_code(status: object) -> int:
    """The numeric code of a WSGI status string such as "200 OK"; `InvalidResponse`
    for anything else."""
    if not isinstance(status, str):
        raise InvalidResponse(f"invalid status line {status!r}")
    code = _VALID_STATUSES.get(status)
    if code is not None:
        return code
    if _STATUS.fullmatch(status) is None:
        raise InvalidResponse(f"invalid status line {status!r}")
    code = int(status[:3])
    if len(_VALID_STATUSES) < _MAX_REMEMBERED:
        _VALID_STATUSES[status] = code
    return code


def check_header(name: object, value: object) -> None:
    """Raise `InvalidResponse` unless `name: value` can be sent verbatim."""
    if not isinstance(name, str):
        raise InvalidResponse(f"invalid header name {name!r}")
    if name not in _VALID_NAMES:
        if _TOKEN.fullmatch(name) is None:
            raise InvalidResponse(f"invalid header name {name!r}")
        if len(_VALID_NAMES) < _MAX_REMEMBERED:
            _VALID_NAMES.add(name)
    if not isinstance(value, str):
        raise InvalidResponse(f"invalid value for header {name!r}")
    # SP and visible ASCII alone, as most values are, need no search.
    if not (value.isascii() and value.isprintable()) and (
        _FORBIDDEN_IN_VALUE.search(value) is not None
    ):
        raise InvalidResponse(f"invalid value for header {name!r}")


def check_response_headers(headers: Iterable[Any]) -> list[tuple[str, str]]:
    """`headers`, as an application gave them, copied as (name, value) tuples; raises
    `InvalidResponse` unless they can be framed.

    The server frames the body itself, so an application may not set Transfer-Encoding;
    a Content-Length must be a plain decimal number (RFC 9110 section 8.6).
    """
    checked: list[tuple[str, str]] = []
    valid = _VALID_HEADERS
    for header in headers:
        # Only a tuple of two exact strings can be looked up: anything else might not
        # hash, or might compare equal to a valid line yet send differently.
        if (
            type(header) is tuple
            and len(header) == 2
            and type(header[0]) is str
            and type(header[1]) is str
            and header in valid
        ):
            checked.append(header)
            continue
        try:
            name, value = header
        except (TypeError, ValueError):
            raise InvalidResponse(f"invalid header {header!r}: not a (name, value) pair") from None
        check_header(name, value)
        lowered = name.lower()
        if lowered == "content-length":
            if not value.isdigit() or not value.isascii():
                raise InvalidResponse(f"invalid Content-Length {value!r}")
        elif lowered == "transfer-encoding":
            raise InvalidResponse("the application may not set Transfer-Encoding")
        line = (name, value)
        checked.append(line)
        if type(name) is str and type(value) is str:
            if len(valid) >= _MAX_REMEMBERED:
                valid.clear()
            valid.add(line)
    return checked


class BodyFraming(Enum):
    """How the end of a response body is shown (RFC 9112 section 6.3)."""

    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"
    NO_BODY = "no-body"


LENGTH: Final = BodyFraming.LENGTH
CHUNKED: Final = BodyFraming.CHUNKED
UNTIL_CLOSE: Final = BodyFraming.UNTIL_CLOSE
NO_BODY: Final = BodyFraming.NO_BODY


ResponseFraming: TypeAlias = tuple[list[tuple[str, str]], BodyFraming, int | None, bool]
"""What `frame_response` decided: (headers, framing, length, keep_alive), the fields to
send and how the body ends.

`length` is the number of body bytes to send for `LENGTH` (0 for `NO_BODY`, None for
`CHUNKED` and `UNTIL_CLOSE`); `keep_alive` says whether the connection may serve another
request once the body has been sent as framed. A plain tuple: compiled, it is returned
in registers, where a named tuple is a class called through the interpreter."""


def frame_response(
    version: str,
    method: str,
    code: int,
    headers: list[tuple[str, str]],
    body_length: int | None,
    may_keep_alive: bool,
    date: str,
) -> ResponseFraming:
    """Choose the framing of a final (2xx to 5xx) response to a request of `version`.

    `headers` are the application's, already checked by `check_response_headers`; they
    are neither changed nor reused. `body_length` is the length of a body known whole
    (one piece, or a file), or None for a body that will come in pieces. `may_keep_alive`
    is false when the client or the server wants the connection to end with this
    response. Date (with the value `date`), Server and Connection are each added unless
    the application gave them.
    """
    # RFC 9110 sections 8.6 and 6.4.1, RFC 9112 section 6.1: a 204, or a 2xx to CONNECT,
    # has no content and must carry neither Content-Length nor Transfer-Encoding. (A
    # 304's or a HEAD response's Content-Length describes the content a GET would get,
    # and is kept.)
    connect = method == "CONNECT" and code < 300
    drop_length = code == 204 or connect
    # A 2xx to CONNECT turns the connection into a tunnel, which corral does not offer:
    # the connection ends with the head (RFC 9110 section 9.3.6).
    keep_alive = may_keep_alive and not connect
    length = None
    has_date = has_server = has_connection = False
    sent = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-length":
            if drop_length:
                continue
            length = int(value)
        elif lowered in _ADDED_BY_SERVER:
            if lowered == "date":
                has_date = True
            elif lowered == "server":
                has_server = True
            else:
                has_connection = True
                if "close" in value.lower():
                    keep_alive = False
        sent.append((name, value))
    if drop_length or code == 304:
        framing = NO_BODY
        length = 0
    elif method == "HEAD":
        framing = NO_BODY
        if length is None and body_length is not None:
            # A HEAD response tells the length a GET would get, when it is known.
            sent.append(("Content-Length", str(body_length)))
        length = 0
    elif length is not None:
        framing = LENGTH
        if body_length is not None and body_length < length:
            # The body will end short of the declared length, so nothing after it could
            # be told apart from the rest of it.
            keep_alive = False
    elif body_length is not None:
        framing = LENGTH
        length = body_length
        sent.append(("Content-Length", str(length)))
    elif version == "HTTP/1.1":
        framing = CHUNKED
        sent.append(("Transfer-Encoding", "chunked"))
    else:
        # HTTP/1.0 has no chunked coding: the body ends when the connection does.
        framing = UNTIL_CLOSE
        keep_alive = False
    if not has_date:
        sent.append(("Date", date))
    if not has_server:
        sent.append(("Server", SERVER))
    if not has_connection:
        if not keep_alive:
            sent.append(("Connection", "close"))
        elif version == "HTTP/1.0":
            sent.append(("Connection", "keep-alive"))
    return sent, framing, length, keep_alive


def encode_head(version: str, status: str, headers: list[tuple[str, str]]) -> bytes:
    """The status line and fields, already checked, ending with the empty line."""
    # A loop, not a generator: compiled, a generator is an object of its own per call.
    lines = [f"{version} {status}\r\n"]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def chunk_size_line(size: int) -> bytes:
    return b"%x\r\n" % size


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1); `data` must not be empty, as an
    empty chunk would end the body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_error(
    status: int,
    reason: str,
    version: str,
    date: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A complete short response that closes the connection, for errors we answer ourselves;
    `headers` are added as given (our own, never the client's: they are not checked)."""
    body = f"{status} {reason}\n".encode("ascii")
    head = (
        f"{version} {status} {reason}\r\n"
        f"Date: {date}\r\n"
        "Server: corral\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers)
        + "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
