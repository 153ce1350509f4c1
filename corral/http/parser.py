"""Request heads and body framing (RFC 9112), parsed strictly from bytes already received.

Nothing here reads a socket: callers hand in a buffer and get back a parsed head, or body
bytes, or a `RequestError` naming the status to answer with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from corral.http.errors import (
    BodyTooLarge,
    FieldsTooLarge,
    RequestError,
    RequestLineTooLong,
    UnsupportedTransferCoding,
    UnsupportedVersion,
)

_TOKEN: Final = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE: Final = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])")
# A field value may hold HTAB, visible ASCII, SP and obs-text, never other controls
# (RFC 9110 section 5.5); bare CR and LF fall under "other controls".
_FIELD_VALUE: Final = rb"(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?"
_FIELD_LINE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*\r\n")
# The same grammar as byte sets (`_split_fields`, `_parse_request_line`): a regular
# expression spends about ten times as many instructions on them, a quarter of corral's
# own per request on wrk's four fields (callgrind). Each set is a translate() table that
# keeps its bytes and changes every other: `data.translate(table) == data` holds exactly
# when `data` has no other byte. (A table costs one pass over `data`; the delete-argument
# form of translate() first builds a table of its own, several times that on a short
# line.)


def _keeping(allowed: bytes) -> bytes:
    return bytes(byte if byte in allowed else (byte + 1) % 256 for byte in range(256))


_TOKEN_KEPT: Final = _keeping(
    b"!#$%&'*+.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
)
# HTAB, SP, visible ASCII and obs-text; CR and LF, whose every use outside a CRLF is
# refused before (`_count_line_ends`).
_HEAD_KEPT: Final = _keeping(bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F), *range(0x80, 0x100)]))
# What a request line's target may hold (`_REQUEST_LINE`): no controls, SP or DEL.
_TARGET_KEPT: Final = _keeping(bytes([*range(0x21, 0x7F), *range(0x80, 0x100)]))
# The methods of RFC 9110 section 9 and PATCH (RFC 5789), as their names: any other
# token is a method too, decoded when it comes.
_METHODS: Final = {
    method.encode("ascii"): method
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
}
# A request line's end, with the space before it, and the version it names.
_VERSIONS: Final = {b" HTTP/1.1": "HTTP/1.1", b" HTTP/1.0": "HTTP/1.0"}
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
_ABSOLUTE_TARGET: Final = re.compile(
    rb"([A-Za-z][A-Za-z0-9+.-]*)://"
    rb"((?:[A-Za-z0-9._~!$&'()*+,;=%:-]*@)?"  # userinfo
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)"  # host
    rb"(?::[0-9]*)?)"  # port
    rb"([/?][^#]*)?(?:#.*)?"
)
_AUTHORITY_TARGET: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+):[0-9]+"
)
_HOST_VALUE: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_CHUNK_SIZE_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?)"
)

# Fields that may appear once only: a second copy means two parties could read the
# request differently (RFC 9110 section 5.3; request smuggling).
_SINGLETON_FIELDS: Final = frozenset({"host", "content-length", "content-type"})
# Fields a trailer must never carry: each changes framing, routing or authority, and an
# application reading trailers as headers would be fooled (RFC 9110 section 6.5.1).
_FORBIDDEN_TRAILERS: Final = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"trailer",
        b"connection",
        b"expect",
        b"authorization",
        b"cookie",
        b"set-cookie",
        b"te",
    }
)
_MAX_LEADING_EMPTY_LINES: Final = 4
_FRAMING_FIELDS: Final = frozenset({"host", "content-length", "transfer-encoding"})
# Field names seen on the wire and their lower-case form: the common ones recur in every
# request. Tokens only, as `_split_fields` takes a name found here for one. Bounded, so a
# client inventing names cannot grow it without end.
_NORMALISED_NAMES: Final[dict[bytes, str]] = {}
_MAX_REMEMBERED_NAMES: Final = 1024
# Host values found valid: a server is asked for the same few names, and a set lookup
# costs a tenth of `_HOST_VALUE`'s match. Bounded in the same way.
_VALID_HOSTS: Final[set[str]] = set()


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Size limits for a request head, and for its body (`body_size` bytes, 0 for no
    limit; 413 Content Too Large, RFC 9110 section 15.5.14); each excess is answered
    with its own status."""

    request_line: int = 8190
    field_count: int = 100
    field_size: int = 8190
    body_size: int = 0

    @property
    def head_size(self) -> int:
        return self.request_line + 2 + self.field_count * (self.field_size + 2) + 2


@dataclass(slots=True)
class RequestHead:
    """One parsed request head.

    `fields` maps the names as sent, lower-cased (`content-type`, `x-forwarded-for`),
    to values decoded as latin-1, repeated fields joined with ", " (RFC 9110 section
    5.3). Names holding `_` are kept as they are: they never match a name spelt with
    `-`, and `corral.wsgi.environ` drops them before they could become CGI names.
    """

    method: str
    target: str
    path: str
    query: str
    version: str
    fields: dict[str, str]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    authority: str | None

    # Written out, as the dataclass would write it, so that mypyc compiles it: the
    # generated one runs interpreted, about 3,700 instructions per request.
    def __init__(
        self,
        method: str,
        target: str,
        path: str,
        query: str,
        version: str,
        fields: dict[str, str],
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        authority: str | None,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.fields = fields
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.authority = authority


def parse_head(buffer: bytes | bytearray, limits: HeadLimits) -> tuple[RequestHead, int] | None:
    """Parse the request head at the start of `buffer`.

    Returns the head and the number of bytes it took, or None when more bytes are needed.
    Raises a `RequestError` once the bytes cannot become a valid head: at once for a bad
    request line, a bare CR or LF or a size limit passed, at the head's end for the rest.
    A head refused whole is refused with the same status when fed in pieces, unless it
    breaks more than one rule.
    """
    return HeadScanner(limits).parse(buffer)


class HeadScanner:
    """`parse_head` for one connection's growing buffer, looking at each byte once.

    A head that arrives a few bytes at a time would otherwise be scanned again from its
    start on every arrival: quadratic work a slow client could make the server do. The
    scanner remembers how far the buffer has been checked; after it returns a head it
    starts over, as the caller removes the head from the buffer.
    """

    __slots__ = ("checked", "limits", "line_ends", "line_start", "request_line_end")

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.checked = 0
        self.line_ends = 0
        self.request_line_end = -1
        # Where the field line being received starts, once the request line is complete.
        self.line_start = 0

    def parse(self, buffer: bytes | bytearray) -> tuple[RequestHead, int] | None:
        start = 0
        while buffer.startswith(b"\r\n", start) and start < 2 * _MAX_LEADING_EMPTY_LINES:
            # RFC 9112 section 2.2: ignore empty lines before the request line.
            start += 2
        checked = max(self.checked, start)
        end = buffer.find(b"\r\n\r\n", max(checked - 3, start))
        if end >= 0:
            self.checked = 0
            self.line_ends = 0
            self.request_line_end = -1
            self.line_start = 0
            return _parse_complete_head(bytes(buffer[start : end + 2]), self.limits), end + 4
        self._check_arrived(buffer, start, checked)
        return None

    def _check_arrived(self, buffer: bytes | bytearray, start: int, checked: int) -> None:
        """Fail early on a head that can no longer become valid, so no one waits for its end."""
        limits = self.limits
        # A CR as the last byte may yet be followed by its LF.
        pending_cr = buffer.endswith(b"\r")
        self.line_ends += _count_line_ends(buffer, pending_cr, checked)
        self.checked = len(buffer) - pending_cr
        if self.request_line_end < 0:
            line_end = buffer.find(b"\r\n", start)
            if line_end < 0:
                if len(buffer) - start - pending_cr > limits.request_line:
                    raise RequestLineTooLong("request line too long")
                return
            # The request line is complete: a client that sent a bad one (or a PROXY
            # protocol line) is answered now rather than when, if ever, its head ends.
            method, target, _ = _parse_request_line(bytes(buffer[start:line_end]), limits)
            _split_target(method, target)
            self.request_line_end = line_end
            self.line_start = line_end + 2
        if len(buffer) - start > limits.head_size:
            raise FieldsTooLarge("request head too large")
        if self.line_ends - 1 > limits.field_count:
            raise FieldsTooLarge("too many header fields")
        # Each field line completed by the bytes that just arrived, then the one still
        # arriving: a line over the limit is refused whether it came in one piece or many.
        line_start = self.line_start
        line_end = buffer.find(b"\r\n", max(checked, line_start))
        while line_end >= 0:
            if line_end - line_start > limits.field_size:
                raise FieldsTooLarge("header field too large")
            line_start = line_end + 2
            line_end = buffer.find(b"\r\n", line_start)
        self.line_start = line_start
        if len(buffer) - line_start - pending_cr > limits.field_size:
            raise FieldsTooLarge("header field too large")


def _parse_complete_head(head: bytes, limits: HeadLimits) -> RequestHead:
    """Parse a head ending with its last line's CRLF (the empty line not included)."""
    # The checks run in the order `HeadScanner` can make them while the head arrives, so
    # the answer does not depend on how the bytes were split.
    line_ends = _count_line_ends(head, False)
    line_end = head.find(b"\r\n")
    method, target, version = _parse_request_line(head[:line_end], limits)
    path, query, authority = _split_target(method, target)
    if line_ends - 1 > limits.field_count:
        raise FieldsTooLarge("too many header fields")
    # Every line but the last, which is empty: the head ends with a CRLF.
    lines = head[line_end + 2 :].split(b"\r\n")
    lines.pop()
    if len(head) - line_end - 2 > limits.field_size and max(map(len, lines)) > limits.field_size:
        raise FieldsTooLarge("header field too large")
    fields, host_count, transfer_codings, content_length = _parse_fields(_split_fields(head, lines))
    http11 = version == "HTTP/1.1"
    if http11 and host_count != 1:
        raise RequestError("HTTP/1.1 request needs exactly one Host field")
    chunked = False
    if transfer_codings:
        if content_length is not None:
            raise RequestError("both Content-Length and Transfer-Encoding")
        if not http11:
            raise RequestError("Transfer-Encoding on HTTP/1.0")
        if transfer_codings[-1] != "chunked":
            raise RequestError("last transfer coding is not chunked")
        if len(transfer_codings) > 1:
            if "chunked" in transfer_codings[:-1]:
                raise RequestError("chunked applied twice")
            raise UnsupportedTransferCoding("unsupported transfer coding")
        chunked = True
    connection = fields.get("connection")
    if connection is None:
        keep_alive = http11
    else:
        # A list of tokens (RFC 9110 section 7.6.1): "closed" is not "close".
        tokens = {token.strip(" \t") for token in connection.lower().split(",")}
        keep_alive = "close" not in tokens and (http11 or "keep-alive" in tokens)
    expect = fields.get("expect")
    expect_continue = http11 and expect is not None and expect.lower() == "100-continue"
    return RequestHead(
        method,
        target,
        path,
        query,
        version,
        fields,
        content_length,
        chunked,
        keep_alive,
        expect_continue,
        authority,
    )


def parse_request_line_only(buffer: bytes | bytearray, limits: HeadLimits) -> RequestHead | None:
    """The request line at the start of a head that was refused, as a head without
    fields, so the refusal can be logged with it; None when that line is incomplete or
    is itself what was refused."""
    start = 0
    while buffer.startswith(b"\r\n", start) and start < 2 * _MAX_LEADING_EMPTY_LINES:
        start += 2
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    try:
        method, target, version = _parse_request_line(bytes(buffer[start:end]), limits)
        path, query, authority = _split_target(method, target)
    except RequestError:
        return None
    return RequestHead(
        method, target, path, query, version, {}, None, False, False, False, authority
    )


def _count_line_ends(data: bytes | bytearray, pending_cr: bool, start: int = 0) -> int:
    """The number of CRLFs in `data` from `start`; a CR or LF outside one is refused.

    A bare CR or LF means the peer frames lines differently than we do, which is how a
    second request hides inside the first (RFC 9112 section 2.2).
    """
    # Counted in the text: compiled, `str.count` is called directly, where each
    # `bytes.count` is a method looked up and its arguments parsed.
    text = bytes(data[start:] if start else data).decode("latin-1")
    line_ends = text.count("\r\n")
    if text.count("\n") != line_ends:
        raise RequestError("bare LF in request head")
    if text.count("\r") - line_ends > pending_cr:
        raise RequestError("bare CR in request head")
    return line_ends


def _parse_request_line(line: bytes, limits: HeadLimits) -> tuple[str, str, str]:
    if len(line) > limits.request_line:
        raise RequestLineTooLong("request line too long")
    # The line nearly every client sends, checked with byte sets: the regular expression
    # below is needed only to tell what is wrong with another. (Slices are kept in
    # order: compiled, a bytes slice whose start passes its end fails.)
    end = len(line) - 9
    space = line.find(b" ")
    version = _VERSIONS.get(line[end:]) if 0 < space < end else None
    if version is not None:
        method_bytes = line[:space]
        method_name = _METHODS.get(method_bytes)
        if method_name is None and method_bytes.translate(_TOKEN_KEPT) == method_bytes:
            method_name = method_bytes.decode("ascii")
        target_bytes = line[space + 1 : end]
        if (
            method_name is not None
            and target_bytes
            and target_bytes.translate(_TARGET_KEPT) == target_bytes
        ):
            return method_name, target_bytes.decode("latin-1"), version
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        parts = line.split(b" ")
        if len(parts) == 3 and re.fullmatch(rb"HTTP/[0-9]\.[0-9]", parts[2]):
            raise RequestError("malformed request line")
        if len(parts) == 3 and re.fullmatch(rb"HTTP/[0-9]+", parts[2]) and parts[2] != b"HTTP/1":
            raise UnsupportedVersion("unsupported HTTP version")
        raise RequestError("malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1":
        if major == b"0":
            raise RequestError("HTTP/0.x request")
        raise UnsupportedVersion("unsupported HTTP version")
    # RFC 9110 section 6.2: a higher minor version is answered as the highest we speak.
    version = "HTTP/1.0" if minor == b"0" else "HTTP/1.1"
    return method.decode("ascii"), target.decode("latin-1"), version


def _split_fields(head: bytes, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Each field line of `head` (the lines after its request line, without their CRLFs)
    as its name and its value without the whitespace around it; RequestError if any line
    is not `token ":" OWS field-value OWS` (RFC 9112 section 5, RFC 9110 section 5.5).

    That refuses obs-fold and whitespace before the colon (a name holding SP or HTAB),
    names with other characters than a token's, and control characters in a value.
    Every line is checked before any is used, so the first broken line is found whatever
    follows it, as one regular expression over the whole block would."""
    if head.translate(_HEAD_KEPT) != head:
        raise RequestError("malformed header field")
    names = _NORMALISED_NAMES
    pairs: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        # A name seen before was a token then (the cache holds only those).
        if not colon or (name not in names and (not name or name.translate(_TOKEN_KEPT) != name)):
            raise RequestError("malformed header field")
        pairs.append((name, value.strip(b" \t")))
    return pairs


def _parse_fields(
    lines: list[tuple[bytes, bytes]],
) -> tuple[dict[str, str], int, list[str], int | None]:
    fields: dict[str, str] = {}
    host_count = 0
    transfer_codings: list[str] = []
    content_length: int | None = None
    names = _NORMALISED_NAMES
    for raw_name, raw_value in lines:
        name = names.get(raw_name)
        if name is None:
            name = _normalise_name(raw_name)
        value = raw_value.decode("latin-1")
        if name in fields:
            if name in _SINGLETON_FIELDS:
                raise RequestError(f"repeated {raw_name.decode('ascii')} field")
            fields[name] = fields[name] + ", " + value
        else:
            fields[name] = value
        if name not in _FRAMING_FIELDS:
            continue
        if name == "host":
            host_count += 1
            if value not in _VALID_HOSTS:
                if _HOST_VALUE.fullmatch(value) is None:
                    raise RequestError("malformed Host field")
                if len(_VALID_HOSTS) < _MAX_REMEMBERED_NAMES:
                    _VALID_HOSTS.add(value)
        elif name == "content-length":
            if _DIGITS.fullmatch(raw_value) is None:
                raise RequestError("malformed Content-Length")
            content_length = int(value)
        else:
            for coding in value.split(","):
                coding = coding.strip(" \t").lower()
                if not coding:
                    raise RequestError("empty transfer coding")
                transfer_codings.append(coding)
    return fields, host_count, transfer_codings, content_length


def _normalise_name(raw_name: bytes) -> str:
    """The lower-case name, remembered for next time."""
    name = raw_name.decode("ascii").lower()
    if len(_NORMALISED_NAMES) < _MAX_REMEMBERED_NAMES:
        _NORMALISED_NAMES[raw_name] = name
    return name


def _split_target(method: str, target: str) -> tuple[str, str, str | None]:
    """Return (path, query, authority) for the four request-target forms of RFC 9112 3.2."""
    raw = target.encode("latin-1")
    if method == "CONNECT":
        # RFC 9112 section 3.2.3: CONNECT names a host and port and nothing else.
        if _AUTHORITY_TARGET.fullmatch(raw) is None:
            raise RequestError("CONNECT without an authority target")
        return "", "", target
    if target[0] == "/":
        # A fragment is never sent (RFC 9112 section 3.2) but some clients do; it ends the
        # target wherever it appears, so "/a#b?c" has no query.
        path, _, query = target.partition("#")[0].partition("?")
        return path, query, None
    if target == "*":
        if method != "OPTIONS":
            raise RequestError("asterisk target outside OPTIONS")
        return "*", "", None
    match = _ABSOLUTE_TARGET.fullmatch(raw)
    if match is None:
        raise RequestError("malformed request target")
    authority = match.group(2).decode("latin-1").rpartition("@")[2]
    rest = (match.group(3) or b"/").decode("latin-1")
    path, _, query = rest.partition("?")
    return path or "/", query, authority


class BodyDecoder:
    """Takes body bytes off the front of a receive buffer, undoing the framing.

    `read(buffer, size)` removes what it consumes from `buffer` and returns up to `size`
    body bytes. An empty result with `done` false means more bytes must arrive first.
    """

    done: bool

    def read(self, buffer: bytearray, size: int) -> bytes:
        raise NotImplementedError

    def unframed(self, size: int) -> int:
        """How many of the next `size` bytes on the wire are body, with no framing between.

        Lets a caller with an empty buffer read them past it; it reports the count
        taken with `take_unframed`.
        """
        return 0

    def take_unframed(self, count: int) -> None:
        raise NotImplementedError


def take_front(buffer: bytearray, count: int) -> bytes:
    """The first `count` bytes of `buffer`, removed from it. Copied once: a slice of a
    bytearray is a copy of its own, which `bytes()` would copy again."""
    if count >= len(buffer):
        data = bytes(buffer)
        buffer.clear()
        return data
    with memoryview(buffer) as view:
        data = bytes(view[:count])
    del buffer[:count]
    return data


class NoBody(BodyDecoder):
    done = True

    def read(self, buffer: bytearray, size: int) -> bytes:
        return b""


class LengthBody(BodyDecoder):
    """A body framed by Content-Length."""

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0

    def read(self, buffer: bytearray, size: int) -> bytes:
        take = min(size, self.remaining, len(buffer))
        if take <= 0:
            return b""
        data = take_front(buffer, take)
        self.take_unframed(take)
        return data

    def unframed(self, size: int) -> int:
        return min(size, self.remaining)

    def take_unframed(self, count: int) -> None:
        self.remaining -= count
        if self.remaining == 0:
            self.done = True


class ChunkedBody(BodyDecoder):
    """A body framed by the chunked transfer coding (RFC 9112 section 7.1).

    Extensions are checked for control characters and otherwise ignored; trailer fields
    are read, checked and discarded. A chunk that takes the body past `limits.body_size`
    raises `BodyTooLarge` once its size line is read, before its data arrives, and every
    read after that raises it again.
    """

    # What the next bytes are: a size line, chunk data, the CRLF after it, trailers.
    _SIZE = 0
    _DATA = 1
    _DATA_END = 2
    _TRAILER = 3

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.state = self._SIZE
        self.chunk_remaining = 0
        # The sizes of the chunks begun so far.
        self.declared = 0
        self.trailer_count = 0
        self.done = False

    def read(self, buffer: bytearray, size: int) -> bytes:
        if self.declared > self.limits.body_size > 0:
            raise self._too_large()
        while not self.done:
            if self.state == self._DATA:
                take = min(size, self.chunk_remaining, len(buffer))
                if take == 0:
                    return b""
                data = take_front(buffer, take)
                self.take_unframed(take)
                return data
            line = self._take_line(buffer)
            if line is None:
                return b""
            if self.state == self._SIZE:
                self._start_chunk(line)
            elif self.state == self._DATA_END:
                self.state = self._SIZE
            else:
                self._read_trailer_line(line)
        return b""

    def unframed(self, size: int) -> int:
        return min(size, self.chunk_remaining) if self.state == self._DATA else 0

    def take_unframed(self, count: int) -> None:
        self.chunk_remaining -= count
        if self.chunk_remaining == 0:
            self.state = self._DATA_END

    def _take_line(self, buffer: bytearray) -> bytes | None:
        """The next framing line without its CRLF, or None until it has all arrived.

        A line is refused as soon as its bytes show it is bad, with the same error
        whether it arrived whole or in pieces.
        """
        end = buffer.find(b"\r\n")
        line = buffer if end < 0 else buffer[:end]
        pending_cr = end < 0 and buffer.endswith(b"\r")
        if b"\n" in line or line.count(b"\r") > pending_cr:
            raise RequestError("bare CR or LF in chunk framing")
        if self.state == self._DATA_END and line[: len(line) - pending_cr]:
            raise RequestError("chunk data longer than its size")
        if len(line) - pending_cr > self.limits.field_size:
            if self.state == self._TRAILER:
                raise FieldsTooLarge("trailer field too large")
            raise RequestError("chunk size line too long")
        if end < 0:
            return None
        taken = bytes(line)
        del buffer[: end + 2]
        return taken

    def _start_chunk(self, line: bytes) -> None:
        match = _CHUNK_SIZE_LINE.fullmatch(line)
        if match is None:
            raise RequestError("malformed chunk size")
        self.chunk_remaining = int(match.group(1), 16)
        self.declared += self.chunk_remaining
        if self.declared > self.limits.body_size > 0:
            raise self._too_large()
        self.state = self._DATA if self.chunk_remaining else self._TRAILER

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"chunked body larger than {self.limits.body_size} bytes")

    def _read_trailer_line(self, line: bytes) -> None:
        if not line:
            self.done = True
            return
        self.trailer_count += 1
        if self.trailer_count > self.limits.field_count:
            raise FieldsTooLarge("too many trailer fields")
        match = _FIELD_LINE.fullmatch(line + b"\r\n")
        if match is None:
            raise RequestError("malformed trailer field")
        if match.group(1).lower() in _FORBIDDEN_TRAILERS:
            raise RequestError("forbidden field in trailer section")


_NO_BODY: Final = NoBody()


def body_decoder(head: RequestHead, limits: HeadLimits) -> BodyDecoder:
    """The decoder for the body that follows `head`. A Content-Length over
    `limits.body_size` is the caller's to refuse, once the head has arrived; a chunked
    body over it raises `BodyTooLarge` as it is decoded."""
    if head.chunked:
        return ChunkedBody(limits)
    if head.content_length:
        return LengthBody(head.content_length)
    return _NO_BODY
