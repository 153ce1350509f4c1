"""Hypothesis strategies for request bytes: mostly valid requests, pipelined, then broken.

`valid_requests` draws one request that corral's parser must accept under the default
limits, with what it stands for (`Intended`); `pipelines` strings several together;
`mutated` breaks a byte string in the ways requests are broken on purpose or by accident
(bit flips, stray CR, LF, NUL, SP and TAB, line endings changed, framing fields repeated
or contradicted); `token_soup` joins pieces of HTTP syntax at random, which reaches deeper
into the parser than arbitrary bytes do. Used by the property tests and as the fuzz
target's engine where atheris is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from corral.http.parser import HeadLimits

TOKEN_CHARACTERS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Visible ASCII and obs-text: what a field value or a request target may hold.
VISIBLE = "".join(map(chr, range(0x21, 0x7F))) + "\x80\xa0\xe9\xff"
PATH_CHARACTERS = "abcxyzABC0129-._~!$&'()*+,;=:@/%"
# Trailer fields the parser refuses (RFC 9110 section 6.5.1); generated trailers avoid them.
FORBIDDEN_TRAILERS = {
    "content-length",
    "transfer-encoding",
    "host",
    "content-type",
    "content-encoding",
    "content-range",
    "trailer",
    "connection",
    "expect",
    "authorization",
    "cookie",
    "set-cookie",
    "te",
}
# Fields a generated request sets itself.
FRAMING_NAMES = {"host", "content-length", "transfer-encoding"}
COMMON_NAMES = [
    "Accept",
    "User-Agent",
    "Connection",
    "Expect",
    "Cookie",
    "Content-Type",
    "X-Forwarded-For",
    "X_Underscored",
    "Vary",
    "accept-encoding",
]
# Lines inserted into requests: each one repeats, contradicts or bends the framing.
HOSTILE_LINES = [
    b"Content-Length: 0",
    b"Content-Length: 5",
    b"Content-Length: 1, 1",
    b"Content-Length: +5",
    b"Content-Length: -1",
    b"Content-Length:  007",
    b"Content-Length: 99999999999999999999",
    b"Content-Length: 0x10",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: Chunked ",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: chunked,",
    b"Transfer-Encoding: identity",
    b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\x0bchunked",
    b"Transfer_Encoding: chunked",
    b"Content_Length: 3",
    b" chunked",
    b"\tobs-fold",
    b"Host: other",
    b"Host: a b",
    b"Host:",
    b"Expect: 100-continue",
    b"Connection: close",
    b"X-Nul: a\x00b",
    b"0",
    b"0;ext",
    b"5",
    b"ffffffffffffffff",
    b"10000000000000000",
    b"Trailer-Field: v",
]
# Pieces of HTTP syntax for `token_soup`.
SOUP = [
    b"GET",
    b"POST",
    b"CONNECT",
    b"OPTIONS",
    b" ",
    b"\t",
    b"/",
    b"*",
    b"?",
    b"#",
    b"http://",
    b"a:1",
    b"[::1]",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\r",
    b"\n",
    b"\x00",
    b":",
    b";",
    b",",
    b"=",
    b'"',
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"chunked",
    b"Connection",
    b"close",
    b"Expect",
    b"100-continue",
    b"0",
    b"1",
    b"5",
    b"a",
    b"F",
    b"hello",
    b"\x80",
    b"\xff",
]
STRAY_BYTES = b'\r\n\x00 \t:;,\x7f\x80\xff0aAzZ-_"='
LINE_ENDINGS = [b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n", b"", b"\r\n ", b"\r\n\t"]


@dataclass(frozen=True)
class Intended:
    """What a generated valid request stands for."""

    method: str
    target: str
    body: bytes


def tokens(max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(TOKEN_CHARACTERS, min_size=1, max_size=max_size)


def whitespace() -> st.SearchStrategy[str]:
    return st.text(" \t", max_size=2)


def field_values() -> st.SearchStrategy[str]:
    """A value with no surrounding whitespace: runs of visible bytes split by SP and TAB."""
    words = st.lists(st.text(VISIBLE, min_size=1, max_size=8), max_size=3)
    return st.tuples(words, st.sampled_from([" ", "\t", "  "])).map(
        lambda drawn: drawn[1].join(drawn[0])
    )


@st.composite
def targets(draw: st.DrawFn, method: str) -> str:
    if method == "CONNECT":
        host = draw(st.sampled_from(["example.com", "10.0.0.1", "[::1]", "a-b.c"]))
        return f"{host}:{draw(st.integers(0, 65535))}"
    form = draw(st.sampled_from(["origin", "origin", "origin", "absolute", "asterisk"]))
    if form == "asterisk" and method == "OPTIONS":
        return "*"
    path = "/" + draw(st.text(PATH_CHARACTERS + "\x80\xff", max_size=16))
    if draw(st.booleans()):
        path += "?" + draw(st.text(PATH_CHARACTERS + "?", max_size=12))
    if draw(st.integers(0, 5)) == 0:
        path += "#" + draw(st.text(PATH_CHARACTERS + "?#", max_size=6))
    if form == "absolute":
        scheme = draw(st.sampled_from(["http", "https", "HTTP", "ws+x"]))
        authority = draw(st.sampled_from(["example.com", "u:p@h", "[::1]:8080", "h:", ""]))
        return f"{scheme}://{authority}{path}"
    return path


@st.composite
def field_lines(draw: st.DrawFn, avoid: set[str], max_count: int) -> list[str]:
    names = st.sampled_from(COMMON_NAMES) | tokens()
    lines = []
    for name in draw(st.lists(names, max_size=max_count)):
        if name.lower() in avoid:
            continue
        if name.lower() == "content-type":
            avoid = avoid | {"content-type"}
        spacing_before = draw(whitespace())
        spacing_after = draw(whitespace())
        lines.append(f"{name}:{spacing_before}{draw(field_values())}{spacing_after}")
    return lines


def hex_size(size: int, upper: bool, zeros: int) -> str:
    digits = f"{size:X}" if upper else f"{size:x}"
    return "0" * min(zeros, 16 - len(digits)) + digits


@st.composite
def chunk_extensions(draw: st.DrawFn) -> str:
    extensions = []
    for name in draw(st.lists(tokens(6), max_size=2)):
        value = draw(st.sampled_from(["", "=1", "=token", '="quoted value"', '="a\\"b"', "=\t x"]))
        extensions.append(f"{draw(whitespace())};{name}{value}")
    return "".join(extensions)


@st.composite
def chunked_body(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """The chunked framing of a body, and the body."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=24), max_size=4))
    upper = draw(st.booleans())
    wire = bytearray()
    for chunk in chunks:
        size = hex_size(len(chunk), upper, draw(st.integers(0, 3)))
        wire += f"{size}{draw(chunk_extensions())}\r\n".encode("latin-1") + chunk + b"\r\n"
    wire += f"{hex_size(0, upper, draw(st.integers(0, 3)))}{draw(chunk_extensions())}\r\n".encode(
        "latin-1"
    )
    for line in draw(field_lines(FORBIDDEN_TRAILERS, 3)):
        wire += line.encode("latin-1") + b"\r\n"
    wire += b"\r\n"
    return bytes(wire), b"".join(chunks)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, Intended]:
    """One request corral's parser accepts under the default limits, and what it means."""
    method = draw(
        st.sampled_from(["GET", "GET", "POST", "PUT", "HEAD", "OPTIONS", "CONNECT", "PATCH"])
        | tokens(8)
    )
    target = draw(targets(method))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.7"]))
    http10 = version == "HTTP/1.0"
    lines = draw(field_lines(FRAMING_NAMES, 6))
    if not http10 or draw(st.booleans()):
        host = draw(st.sampled_from(["example.com", "example.com:8080", "[::1]:80", "h", ""]))
        lines.append(f"{draw(st.sampled_from(['Host', 'host', 'HOST']))}:{host}")
    framing = draw(st.sampled_from(["none", "length", "chunked", "chunked"]))
    body = wire_body = b""
    if framing == "length" or (framing == "chunked" and http10):
        body = wire_body = draw(st.binary(max_size=40))
        zeros = "0" * draw(st.integers(0, 2))
        lines.append(f"Content-Length: {zeros}{len(body)}")
    elif framing == "chunked":
        wire_body, body = draw(chunked_body())
        coding = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED", " chunked\t"]))
        lines.append(f"Transfer-Encoding:{coding}")
    lines = draw(st.permutations(lines))
    empty_lines = "\r\n" * draw(st.integers(0, 1))
    head = f"{empty_lines}{method} {target} {version}\r\n" + "".join(f"{ln}\r\n" for ln in lines)
    return head.encode("latin-1") + b"\r\n" + wire_body, Intended(method, target, body)


def pipelines(max_requests: int = 4) -> st.SearchStrategy[tuple[bytes, list[Intended]]]:
    """Valid requests sent back to back on one connection."""
    return st.lists(valid_requests(), min_size=1, max_size=max_requests).map(
        lambda drawn: (b"".join(wire for wire, _ in drawn), [intended for _, intended in drawn])
    )


def _line_starts(data: bytearray) -> list[int]:
    starts = [0]
    position = data.find(b"\r\n")
    while position >= 0:
        starts.append(position + 2)
        position = data.find(b"\r\n", position + 2)
    return starts


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` broken from one to four times."""
    result = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(result)))
        action = draw(
            st.sampled_from(
                [
                    "flip",
                    "insert",
                    "delete",
                    "replace",
                    "line ending",
                    "hostile line",
                    "repeat line",
                    "repeat",
                    "truncate",
                    "digit",
                ]
            )
        )
        if action == "flip" and position < len(result):
            result[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            byte = draw(st.sampled_from(STRAY_BYTES) | st.integers(0, 255))
            result[position:position] = bytes([byte])
        elif action == "delete":
            del result[position : position + draw(st.integers(1, 4))]
        elif action == "replace" and position < len(result):
            result[position] = draw(st.sampled_from(b"\r\n\x00 \t:;") | st.integers(0, 255))
        elif action == "line ending":
            ends = [start - 2 for start in _line_starts(result)[1:]]
            if ends:
                end = draw(st.sampled_from(ends))
                result[end : end + 2] = draw(st.sampled_from(LINE_ENDINGS))
        elif action == "hostile line":
            start = draw(st.sampled_from(_line_starts(result)))
            result[start:start] = draw(st.sampled_from(HOSTILE_LINES)) + b"\r\n"
        elif action == "repeat line":
            starts = _line_starts(result)
            index = draw(st.integers(0, len(starts) - 1))
            end = starts[index + 1] if index + 1 < len(starts) else len(result)
            result[end:end] = result[starts[index] : end]
        elif action == "repeat":
            result[position:position] = result[position : position + draw(st.integers(1, 40))]
        elif action == "truncate":
            del result[position:]
        elif action == "digit":
            digits = [index for index, byte in enumerate(result) if 0x30 <= byte <= 0x39]
            if digits:
                index = draw(st.sampled_from(digits))
                result[index] = draw(st.sampled_from(b"0123456789aAfF"))
    return bytes(result)


def mutated_pipelines() -> st.SearchStrategy[bytes]:
    return pipelines(3).flatmap(lambda drawn: mutated(drawn[0]))


def token_soup(max_pieces: int = 60) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(SOUP), max_size=max_pieces).map(b"".join)


def limits() -> st.SearchStrategy[HeadLimits]:
    """The default limits, or small ones so that inputs reach every limit."""
    small = st.builds(
        HeadLimits,
        request_line=st.integers(8, 120),
        field_count=st.integers(0, 8),
        field_size=st.integers(2, 80),
        body_size=st.integers(0, 48),
    )
    # One time in four: small limits.
    return st.integers(0, 3).flatmap(lambda pick: small if pick == 0 else st.just(HeadLimits()))


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    """Positions to cut `data` at: a few anywhere, or many."""
    return st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12)
