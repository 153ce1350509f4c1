"""Properties of the protocol layer over generated streams of requests.

Whatever the bytes, and however they arrive (whole, byte by byte, cut anywhere, read by
the body in any size, with or without unframed reads past the buffer), the parser and the
body decoders take them to be the same requests with the same body boundaries, or refuse
them with a `RequestError` at the same point; no other exception escapes. Valid requests
mean what they were generated to mean, and a valid stream cut short is never refused.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.http.errors import RequestError
from corral.http.parser import _REQUEST_LINE, HeadLimits, _parse_request_line, _split_fields
from tests.generated_requests import (
    Intended,
    cuts_for,
    limits,
    mutated_pipelines,
    pipelines,
    token_soup,
)
from tests.request_stream import Parsed, check_every_split, parse_stream

LIMITS = HeadLimits()
PROPERTY = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# The field-line grammar of RFC 9112 section 5 and RFC 9110 section 5.5 as regular
# expressions, the form the parser once used: the reference `_split_fields` must agree with.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE = rb"(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?"
_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\r\n")
_BLOCK = re.compile(rb"(?:" + _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*\r\n)*")
# Pieces of field lines, good and bad; CR and LF only as the line ends, as the parser
# refuses them anywhere else before it splits the fields.
_PIECES = st.sampled_from(
    [b"Host", b"x-Forwarded-For", b"a_b", b"!#$%&'*+.^`|~", b"", b" ", b"\t", b":", b"::",
     b"a b", b"v", b"1", b"@", b"(", b'"', b"/", b"\x00", b"\x0b", b"\x1f", b"\x7f",
     b"\x80", b"\xff"]
)  # fmt: skip


def as_intended(parsed: Parsed) -> list[Intended]:
    return [Intended(head.method, head.target, body) for head, body in parsed.requests]


@settings(PROPERTY, max_examples=500)
@given(st.data())
def test_valid_pipelines_parse_as_intended_however_they_arrive(data: st.DataObject) -> None:
    wire, intended = data.draw(pipelines())
    parsed = check_every_split(wire, LIMITS, data.draw(cuts_for(wire)))
    assert as_intended(parsed) == intended
    assert parsed.ending == ("idle",)


@settings(PROPERTY, max_examples=300)
@given(st.data())
def test_a_valid_stream_cut_short_waits_for_the_rest(data: st.DataObject) -> None:
    """A prefix of valid requests is never refused: it holds the requests that ended
    inside it and then waits."""
    wire, intended = data.draw(pipelines())
    end = data.draw(st.integers(0, len(wire) - 1))
    parsed = check_every_split(wire[:end], LIMITS, data.draw(cuts_for(wire[:end])))
    assert parsed.ending[0] in ("idle", "head incomplete", "body incomplete"), parsed.ending
    complete = as_intended(parsed)
    assert complete == intended[: len(complete)]
    if parsed.ending[0] == "body incomplete":
        # Body bytes are handed on as they arrive, never held back for the whole body.
        body_so_far = parsed.ending[2]
        assert isinstance(body_so_far, bytes)
        assert intended[len(complete)].body.startswith(body_so_far)


@settings(PROPERTY, max_examples=1000)
@given(st.data())
def test_broken_pipelines_do_not_depend_on_the_split(data: st.DataObject) -> None:
    wire = data.draw(mutated_pipelines())
    check_every_split(wire, data.draw(limits()), data.draw(cuts_for(wire)))


@settings(PROPERTY, max_examples=500)
@given(st.data())
def test_any_bytes_do_not_depend_on_the_split(data: st.DataObject) -> None:
    wire = data.draw(st.binary(max_size=300) | token_soup())
    check_every_split(wire, data.draw(limits()), data.draw(cuts_for(wire)))


def test_the_driver_sees_a_refusal_a_wait_and_a_pipeline() -> None:
    """The properties above rest on `parse_stream`; it reports each ending it can reach."""
    two = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    )
    parsed = parse_stream([two], LIMITS, 65536, unframed=False)
    assert [(head.target, body) for head, body in parsed.requests] == [("/a", b""), ("/b", b"abc")]
    assert parsed.ending == ("idle",)
    assert parse_stream([two[:-1]], LIMITS, 1, unframed=True).ending[2] == b"ab"
    assert parse_stream([two[:20]], LIMITS, 1, unframed=True).ending == (
        "head incomplete",
        two[:20],
    )
    bad = b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
    assert parse_stream([bad], LIMITS, 1, unframed=True).ending == ("refused", 400, "head")
    bad_chunk = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert parse_stream([bad_chunk], LIMITS, 1, unframed=True).ending == ("refused", 400, "body")


# Shaped as "name: value", each part a little soup of its own.
_SHAPED_FIELD = st.tuples(
    st.lists(_PIECES, min_size=1, max_size=2).map(b"".join),
    st.sampled_from([b":", b" :", b""]),
    st.sampled_from([b"", b" ", b"\t"]),
    st.lists(_PIECES, max_size=3).map(b"".join),
    st.sampled_from([b"", b" ", b"\t "]),
).map(b"".join)


@settings(PROPERTY, max_examples=3000)
@given(st.lists(_SHAPED_FIELD | st.lists(_PIECES, max_size=8).map(b"".join), max_size=5))
def test_field_lines_are_split_as_the_grammar_reads_them(lines: list[bytes]) -> None:
    """Names and values, or a refusal, exactly where the grammar's regular expressions
    give them."""
    block = b"".join(line + b"\r\n" for line in lines)
    expected = _LINE.findall(block) if _BLOCK.fullmatch(block) else None
    try:
        split: list[tuple[bytes, bytes]] | None = _split_fields(
            b"GET / HTTP/1.1\r\n" + block, list(lines)
        )
    except RequestError:
        split = None
    assert split == expected


_LINE_PIECES = st.sampled_from(
    [b"GET", b"get", b"M-SEARCH", b"PATCH", b"G\x00T", b"G(T", b" ", b"  ", b"\t", b"/",
     b"/a?b=c", b"*", b"http://x/", b"example.com:443", b"\x7f", b"\x80", b"\xff", b"\x00",
     b"\x1f", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.",
     b"HTTP/11", b"http/1.1", b"1.1"]
)  # fmt: skip


_SOUP = st.lists(_LINE_PIECES, max_size=7).map(b"".join)
# Shaped as "method SP target SP version", each part a little soup of its own.
_SHAPED_LINE = st.tuples(
    st.lists(_LINE_PIECES, min_size=1, max_size=2).map(b"".join),
    st.sampled_from([b" ", b"  ", b"\t", b""]),
    st.lists(_LINE_PIECES, min_size=1, max_size=3).map(b"".join),
    st.sampled_from([b" ", b"  ", b"\t", b""]),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/1.1 "]),
).map(b"".join)


@settings(PROPERTY, max_examples=3000)
@given(_SHAPED_LINE | _SOUP)
def test_a_request_line_is_taken_as_its_regular_expression_reads_it(line: bytes) -> None:
    """Method, target and version, or a refusal, exactly where the request line's
    regular expression gives them (RFC 9112 section 3)."""
    match = _REQUEST_LINE.fullmatch(line)
    expected = None
    if match is not None and match.group(3) == b"1":
        method, target, _, minor = match.groups()
        version = "HTTP/1.0" if minor == b"0" else "HTTP/1.1"
        expected = (method.decode("ascii"), target.decode("latin-1"), version)
    try:
        parsed: tuple[str, str, str] | None = _parse_request_line(line, LIMITS)
    except RequestError:
        parsed = None
    assert parsed == expected
