"""The request parser, fed whole, byte by byte and with the next request's bytes behind.

Each refusal test names one rule of RFC 9110 / RFC 9112 and fails if that rule is removed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.http.errors import BodyTooLarge, FieldsTooLarge, RequestError
from corral.http.parser import (
    BodyDecoder,
    ChunkedBody,
    HeadLimits,
    HeadScanner,
    LengthBody,
    NoBody,
    RequestHead,
    body_decoder,
    parse_head,
)

LIMITS = HeadLimits()
SMALL = HeadLimits(request_line=32, field_count=3, field_size=30)
# A second, pipelined request: whatever a parse consumes, this must stay in the buffer.
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: next\r\n\r\n"


def head_of(data: bytes, limits: HeadLimits = LIMITS) -> RequestHead:
    """Parse `data`, a complete head, in every way; all must agree.

    Whole, it takes every byte; any shorter prefix asks for more; with the next request
    behind it, it takes the same bytes and leaves the next request alone.
    """
    whole = parse_head(data, limits)
    assert whole is not None, "a complete head was not parsed"
    head, consumed = whole
    assert consumed == len(data)
    buffer = bytearray()
    # One scanner for the whole arrival, as a connection keeps it: it must reach the same
    # head while looking only at the bytes that are new each time.
    scanner = HeadScanner(limits)
    for byte in data[:-1]:
        buffer.append(byte)
        assert parse_head(buffer, limits) is None, f"parsed early at {bytes(buffer)!r}"
        assert scanner.parse(buffer) is None
        assert scanner.checked >= len(buffer) - 1
    buffer.append(data[-1])
    assert parse_head(buffer, limits) == (head, consumed)
    assert scanner.parse(buffer) == (head, consumed)
    # After a head the scanner starts over, for the next request on the connection.
    assert scanner.parse(NEXT_REQUEST) == parse_head(NEXT_REQUEST, limits)
    assert parse_head(data + NEXT_REQUEST, limits) == (head, consumed)
    return head


def refused_status(data: bytes, limits: HeadLimits = LIMITS) -> int:
    """The status `data` is refused with, the same whole and byte by byte."""
    with pytest.raises(RequestError) as whole:
        parse_head(data, limits)
    status = whole.value.status
    for parse in (lambda prefix: parse_head(prefix, limits), HeadScanner(limits).parse):
        for end in range(1, len(data) + 1):
            try:
                result = parse(data[:end])
            except RequestError as error:
                assert error.status == status, f"{error.status} at {data[:end]!r}, {status}"
                break
            assert result is None, f"{data[:end]!r} parsed as a head"
        else:
            raise AssertionError("refused whole but not byte by byte")
    return status


def body_of(data: bytes, limits: HeadLimits = LIMITS) -> bytes:
    """The body after the head in `data`, decoded in every way; all must agree."""
    head, consumed = parse_head(data, limits) or pytest.fail("no head")
    body = data[consumed:]
    whole = _decode(body_decoder(head, limits), bytearray(body + NEXT_REQUEST), 1 << 20)
    assert whole[1] == NEXT_REQUEST, "the body decoder took bytes of the next request"
    small_reads = _decode(body_decoder(head, limits), bytearray(body + NEXT_REQUEST), 1)
    assert small_reads == whole
    # Byte by byte: the decoder sees each byte arrive on its own.
    decoder = body_decoder(head, limits)
    buffer = bytearray()
    parts = []
    for byte in body:
        buffer.append(byte)
        parts.append(decoder.read(buffer, 1 << 20))
    assert decoder.done, "the body did not end after its last byte"
    assert buffer == b"", "bytes of the body were left behind"
    assert b"".join(parts) == whole[0]
    return whole[0]


def _decode(decoder: BodyDecoder, buffer: bytearray, size: int) -> tuple[bytes, bytes]:
    parts = []
    while not decoder.done:
        piece = decoder.read(buffer, size)
        assert piece or decoder.done, "the decoder asked for more bytes than the body has"
        parts.append(piece)
    return b"".join(parts), bytes(buffer)


def body_refused_status(data: bytes, limits: HeadLimits = LIMITS) -> int:
    """The status a body is refused with, the same whole and byte by byte."""
    head, consumed = parse_head(data, limits) or pytest.fail("no head")
    body = data[consumed:]
    with pytest.raises(RequestError) as whole:
        _decode(body_decoder(head, limits), bytearray(body), 1 << 20)
    decoder = body_decoder(head, limits)
    buffer = bytearray()
    with pytest.raises(RequestError) as pieces:
        for byte in body:
            buffer.append(byte)
            decoder.read(buffer, 1 << 20)
    assert pieces.value.status == whole.value.status
    return whole.value.status


def request(*field_lines: str, line: str = "GET / HTTP/1.1", host: bool = True) -> bytes:
    lines = [line, *(["Host: example.com"] if host else []), *field_lines]
    return "".join(f"{item}\r\n" for item in lines).encode("latin-1") + b"\r\n"


def chunked(body: bytes) -> bytes:
    return request("Transfer-Encoding: chunked", line="POST /upload HTTP/1.1") + body


# Valid heads.


def test_simple_request() -> None:
    head = head_of(request("Accept: */*", line="GET /path/to?a=1&b=2 HTTP/1.1"))
    assert (head.method, head.target, head.path, head.query) == (
        "GET",
        "/path/to?a=1&b=2",
        "/path/to",
        "a=1&b=2",
    )
    assert head.version == "HTTP/1.1"
    assert head.fields == {"host": "example.com", "accept": "*/*"}
    assert (head.content_length, head.chunked, head.keep_alive) == (None, False, True)
    assert head.authority is None


def test_field_names_are_wire_names_lower_cased() -> None:
    head = head_of(request("X-Forwarded-For: 10.0.0.1", "content-TYPE: text/plain"))
    assert head.fields == {
        "host": "example.com",
        "x-forwarded-for": "10.0.0.1",
        "content-type": "text/plain",
    }


def test_field_names_may_use_every_token_character() -> None:
    head = head_of(request("X.Custom|Pipe!#$%&'*+^`~9: ok"))
    assert head.fields["x.custom|pipe!#$%&'*+^`~9"] == "ok"


def test_field_values_lose_surrounding_whitespace_only() -> None:
    head = head_of(request("Name: \t value \t with  inside \t "))
    assert head.fields["name"] == "value \t with  inside"


def test_empty_field_value() -> None:
    assert head_of(request("Empty:", "Blank: \t ")).fields["empty"] == ""


def test_obs_text_in_values_is_kept_as_latin1() -> None:
    head = head_of(request("X-Value: caf\xc3\xa9"))
    assert head.fields["x-value"] == "caf\xc3\xa9"


def test_underscore_names_are_kept_apart_and_never_frame() -> None:
    """`Content_Length` is not `Content-Length`: it neither frames the body nor counts
    as a repeat; the environ drops it (see test_environ)."""
    head = head_of(
        request(
            "Content-Length: 7",
            "Content_Length: 99",
            "Transfer_Encoding: chunked",
            "X_Forwarded_For: 1.2.3.4",
            line="POST / HTTP/1.0",
            host=False,
        )
    )
    assert head.content_length == 7
    assert not head.chunked
    assert head.fields == {
        "content-length": "7",
        "content_length": "99",
        "transfer_encoding": "chunked",
        "x_forwarded_for": "1.2.3.4",
    }


def test_repeated_fields_are_joined() -> None:
    head = head_of(request("Accept: a", "Cookie: x=1", "accept: b", "ACCEPT: c"))
    assert head.fields["accept"] == "a, b, c"
    assert head.fields["cookie"] == "x=1"


def test_leading_empty_lines_are_ignored() -> None:
    head = head_of(b"\r\n\r\n" + request())
    assert head.path == "/"


def test_too_many_leading_empty_lines_are_refused() -> None:
    assert refused_status(b"\r\n" * 100 + request()) == 400


def test_http10_needs_no_host_and_closes_by_default() -> None:
    head = head_of(request(line="GET / HTTP/1.0", host=False))
    assert head.version == "HTTP/1.0"
    assert not head.keep_alive


def test_higher_minor_version_is_served_as_http11() -> None:
    # RFC 9110 section 6.2: answer with the highest minor version we implement.
    assert head_of(request(line="GET / HTTP/1.7")).version == "HTTP/1.1"


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Keep-Alive, Close", False),
        ("HTTP/1.1", "closed", True),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
        ("HTTP/1.0", "Upgrade,  Keep-Alive", True),
        ("HTTP/1.0", "keep-alive, close", False),
        ("HTTP/1.0", "keep-alive-not", False),
    ],
)
def test_keep_alive(version: str, connection: str | None, keep_alive: bool) -> None:
    fields = [] if connection is None else [f"Connection: {connection}"]
    assert head_of(request(*fields, line=f"GET / {version}")).keep_alive is keep_alive


def test_expect_continue_only_on_http11() -> None:
    assert head_of(request("Expect: 100-Continue")).expect_continue
    assert not head_of(request("Expect: 100-continue", line="GET / HTTP/1.0")).expect_continue


def test_fragment_is_not_part_of_path_or_query() -> None:
    head = head_of(request(line="GET /a?b=1#frag HTTP/1.1"))
    assert (head.path, head.query) == ("/a", "b=1")
    head = head_of(request(line="GET /a#frag?not-query HTTP/1.1"))
    assert (head.path, head.query) == ("/a", "")


def test_absolute_form_sets_authority() -> None:
    head = head_of(request(line="GET http://user:pw@example.org:8080/p?q=1 HTTP/1.1"))
    assert (head.path, head.query, head.authority) == ("/p", "q=1", "example.org:8080")
    head = head_of(request(line="GET https://[::1]:8443 HTTP/1.1"))
    assert (head.path, head.authority) == ("/", "[::1]:8443")


def test_asterisk_form_for_options() -> None:
    head = head_of(request(line="OPTIONS * HTTP/1.1"))
    assert (head.method, head.path, head.authority) == ("OPTIONS", "*", None)


def test_asterisk_form_outside_options_is_refused() -> None:
    assert refused_status(request(line="GET * HTTP/1.1")) == 400


def test_connect_takes_authority_form() -> None:
    head = head_of(request(line="CONNECT example.com:443 HTTP/1.1"))
    assert (head.path, head.authority) == ("", "example.com:443")
    assert head_of(request(line="CONNECT [::1]:443 HTTP/1.1")).authority == "[::1]:443"


@pytest.mark.parametrize("target", ["/tunnel", "example.com", "http://example.com:443/"])
def test_connect_without_authority_form_is_refused(target: str) -> None:
    assert refused_status(request(line=f"CONNECT {target} HTTP/1.1")) == 400


@pytest.mark.parametrize("target", ["example.com:443", "foo/bar", "s://]bad/"])
def test_other_target_forms_are_refused(target: str) -> None:
    assert refused_status(request(line=f"GET {target} HTTP/1.1")) == 400


@pytest.mark.parametrize("method", ["-BLARGH", "M-SEARCH", "x", "PROPFIND", "get"])
def test_any_token_is_a_method(method: str) -> None:
    assert head_of(request(line=f"{method} / HTTP/1.1")).method == method


def test_limits_are_inclusive() -> None:
    line = "GET /" + "a" * (SMALL.request_line - 14) + " HTTP/1.1"
    assert len(line) == SMALL.request_line
    field = "X: " + "v" * (SMALL.field_size - 3)
    head = head_of(request(field, "Y: 1", line=line), SMALL)
    assert head.fields["x"] == field[3:]


# Refused heads.


def test_content_length_with_transfer_encoding_is_refused() -> None:
    # RFC 9112 section 6.3: the pair is how requests are smuggled.
    data = request("Content-Length: 3", "Transfer-Encoding: chunked", line="POST / HTTP/1.1")
    assert refused_status(data) == 400


@pytest.mark.parametrize(
    "fields",
    [
        ["Content-Length: 3", "Content-Length: 2"],
        ["Content-Length: 3", "Content-Length: 3"],
        ["Content-Length: 3, 3"],
    ],
)
def test_repeated_content_length_is_refused(fields: list[str]) -> None:
    assert refused_status(request(*fields, line="POST / HTTP/1.1")) == 400


@pytest.mark.parametrize(
    "value",
    ["+1", "-1", "-0", "1 2", "0x10", "1a", "1_0", "1.0", "", "\xb9", "1" * 19],
)
def test_malformed_content_length_is_refused(value: str) -> None:
    assert refused_status(request(f"Content-Length: {value}", line="POST / HTTP/1.1")) == 400


def test_content_length_of_18_digits_and_leading_zeros() -> None:
    assert head_of(request("Content-Length: " + "9" * 18)).content_length == 10**18 - 1
    assert head_of(request("Content-Length: 007")).content_length == 7


@pytest.mark.parametrize("codings", ["gzip", "identity", "chunked, gzip", "chunked, identity"])
def test_transfer_encoding_not_ending_in_chunked_is_refused(codings: str) -> None:
    # RFC 9112 section 6.3: without chunked last the body length cannot be known.
    assert refused_status(request(f"Transfer-Encoding: {codings}")) == 400


@pytest.mark.parametrize(
    "fields",
    [
        ["Transfer-Encoding: chunked, chunked"],
        ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    ],
)
def test_chunked_twice_is_refused(fields: list[str]) -> None:
    assert refused_status(request(*fields)) == 400


@pytest.mark.parametrize("codings", ["chunked,", ", chunked", "chunked,,"])
def test_empty_transfer_coding_is_refused(codings: str) -> None:
    assert refused_status(request(f"Transfer-Encoding: {codings}")) == 400


@pytest.mark.parametrize(
    "fields",
    [
        ["Transfer-Encoding: gzip, chunked"],
        ["Transfer-Encoding: identity, chunked"],
        ["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
    ],
)
def test_codings_under_chunked_are_not_implemented(fields: list[str]) -> None:
    # RFC 9112 section 6.1: an unimplemented transfer coding is answered with 501.
    assert refused_status(request(*fields)) == 501


def test_transfer_encoding_on_http10_is_refused() -> None:
    # RFC 9112 section 6.1: an HTTP/1.0 peer cannot have meant chunked framing.
    data = request("Transfer-Encoding: chunked", line="POST / HTTP/1.0", host=False)
    assert refused_status(data) == 400


def test_chunked_is_recognised_in_any_case() -> None:
    assert head_of(request("Transfer-Encoding: Chunked")).chunked


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\r\n\r\n",
        b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_bare_cr_in_head_is_refused(data: bytes) -> None:
    assert refused_status(data) == 400


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET\n/\nHTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_bare_lf_in_head_is_refused(data: bytes) -> None:
    assert refused_status(data) == 400


@pytest.mark.parametrize("partial", [b"GET / HTTP/1.1\r\nX: a\rb", b"GET / HTTP/1.1\r\nX: a\nb"])
def test_bare_cr_or_lf_is_refused_before_the_head_ends(partial: bytes) -> None:
    with pytest.raises(RequestError):
        parse_head(partial, LIMITS)


def test_obs_fold_is_refused() -> None:
    # RFC 9112 section 5.2: reject with 400 or unfold; corral rejects.
    assert refused_status(request("Long: one", " two")) == 400
    assert refused_status(request("Long: one", "\ttwo")) == 400


def test_whitespace_before_colon_is_refused() -> None:
    # RFC 9112 section 5.1: a server MUST answer 400.
    assert refused_status(request("Content-Length : 3")) == 400
    assert refused_status(request("Name\t: 3")) == 400


@pytest.mark.parametrize(
    "line",
    [
        "GE(T / HTTP/1.1",
        "GET\x00 / HTTP/1.1",
        "G\xc3\x9fT / HTTP/1.1",
        "bla:rgh / HTTP/1.1",
        " GET / HTTP/1.1",
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET /\x7f HTTP/1.1",
        "GET / HTTP/1.1 extra",
        "GET HTTP/1.1",
        "GET /",
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443",
    ],
)
def test_malformed_request_line_is_refused(line: str) -> None:
    assert refused_status(request(line=line)) == 400


@pytest.mark.parametrize(
    "name", ["Bad Name", "Bad(Name)", "Na\x00me", "Na\x80me", "Name;x", "", "Na\x7fme"]
)
def test_bad_field_name_is_refused(name: str) -> None:
    assert refused_status(request(f"{name}: value")) == 400


@pytest.mark.parametrize("control", ["\x00", "\x07", "\x1b", "\x0b", "\x0c", "\x7f"])
def test_control_characters_in_values_are_refused(control: str) -> None:
    # RFC 9110 section 5.5: field values hold no control characters other than HTAB.
    assert refused_status(request(f"X-Value: plain{control}injected")) == 400


def test_line_without_colon_is_refused() -> None:
    assert refused_status(request("no colon here")) == 400


def test_http11_without_host_is_refused() -> None:
    # RFC 9112 section 3.2: a server MUST answer 400 to HTTP/1.1 without exactly one Host.
    assert refused_status(request(host=False)) == 400


@pytest.mark.parametrize("fields", [["Host: a"], ["Host: a", "Host: a"], ["host: b"]])
def test_repeated_host_is_refused(fields: list[str]) -> None:
    assert refused_status(request(*fields)) == 400


@pytest.mark.parametrize("value", ["a b", "a/b", "a@b", "[::1", "a:b:c"])
def test_malformed_host_is_refused(value: str) -> None:
    assert refused_status(request(f"Host: {value}", host=False)) == 400
    # Also after a valid Host has been seen, and remembered as valid.
    assert head_of(request("Host: a", host=False)).fields["host"] == "a"
    assert refused_status(request(f"Host: {value}", host=False)) == 400


@pytest.mark.parametrize(
    "value", ["example.com", "example.com:8080", "[::1]:80", "0.0.0.0=5000", ""]
)
def test_host_forms(value: str) -> None:
    assert head_of(request(f"Host: {value}", host=False)).fields["host"] == value


def test_repeated_content_type_is_refused() -> None:
    assert refused_status(request("Content-Type: text/plain", "Content-Type: text/html")) == 400


def test_request_line_over_limit_is_414() -> None:
    line = "GET /" + "a" * (SMALL.request_line - 13) + " HTTP/1.1"
    assert refused_status(request(line=line), SMALL) == 414


def test_request_line_over_limit_is_refused_before_it_ends() -> None:
    with pytest.raises(RequestError) as error:
        parse_head(b"GET /" + b"a" * SMALL.request_line, SMALL)
    assert error.value.status == 414


def test_too_many_fields_is_431() -> None:
    assert refused_status(request("A: 1", "B: 2", "C: 3"), SMALL) == 431


def test_field_over_limit_is_431() -> None:
    field = "X: " + "v" * (SMALL.field_size - 2)
    assert refused_status(request(field), SMALL) == 431


def test_field_over_limit_is_refused_before_it_ends() -> None:
    with pytest.raises(RequestError) as error:
        parse_head(b"GET / HTTP/1.1\r\nX: " + b"v" * SMALL.field_size, SMALL)
    assert error.value.status == 431


def test_field_over_limit_is_refused_once_its_line_has_arrived() -> None:
    """An over-long field line that arrives whole, its CRLF included, is refused as when it
    arrives in pieces, before the head ends or the head size limit is reached."""
    data = b"GET / HTTP/1.1\r\nX: " + b"v" * SMALL.field_size + b"\r\nY: 1\r\n"
    assert refused_status(data, SMALL) == 431
    scanner = HeadScanner(SMALL)
    assert scanner.parse(b"GET / HTTP/1.1\r\nA: 1\r\n") is None
    with pytest.raises(FieldsTooLarge):
        scanner.parse(b"GET / HTTP/1.1\r\nA: 1\r\nX: " + b"v" * SMALL.field_size + b"\r\n")


def test_endless_head_is_refused() -> None:
    limits = HeadLimits(request_line=100, field_count=1000, field_size=100)
    data = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 2000
    with pytest.raises(RequestError) as error:
        parse_head(data, limits)
    assert error.value.status == 431


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3.0", "HTTP/2", "HTTP/9.9"])
def test_unsupported_version_is_505(version: str) -> None:
    assert refused_status(request(line=f"GET / {version}")) == 505


@pytest.mark.parametrize(
    "version", ["HTTP/0.9", "HTTP/0.99", "HTTP/1", "HTTP/1.10", "http/1.1", "FTP/1.1", "HTTP/1.1x"]
)
def test_malformed_or_ancient_version_is_400(version: str) -> None:
    assert refused_status(request(line=f"GET / {version}")) == 400


def test_bad_request_line_is_refused_before_the_head_ends() -> None:
    # A PROXY protocol line or other junk is answered at once, not when the head ends.
    with pytest.raises(RequestError):
        parse_head(b"PROXY TCP4 192.168.0.1 192.16...\r\n", LIMITS)


def test_incomplete_head_waits() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r", LIMITS) is None
    assert parse_head(b"", LIMITS) is None
    assert parse_head(b"\r\n", LIMITS) is None


# Bodies.


def test_no_body_without_framing_fields() -> None:
    head = head_of(request(line="POST / HTTP/1.1"))
    assert isinstance(body_decoder(head, LIMITS), NoBody)
    head = head_of(request("Content-Length: 0", line="POST / HTTP/1.1"))
    assert isinstance(body_decoder(head, LIMITS), NoBody)


def test_content_length_body() -> None:
    data = request("Content-Length: 11", line="POST / HTTP/1.1") + b"hello world"
    assert isinstance(body_decoder(head_of(data[:-11]), LIMITS), LengthBody)
    assert body_of(data) == b"hello world"


def test_chunked_body() -> None:
    data = chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert isinstance(body_decoder(head_of(chunked(b"")), LIMITS), ChunkedBody)
    assert body_of(data) == b"hello world"


def test_chunk_sizes_in_any_case_with_leading_zeros() -> None:
    assert body_of(chunked(b"A\r\n0123456789\r\n0005\r\nhello\r\n000\r\n\r\n")) == (
        b"0123456789hello"
    )


def test_chunk_extensions_are_ignored() -> None:
    data = chunked(b'5;name="quoted ; value"\r\nhello\r\n6 ; a=b;c\r\n world\r\n0;last\r\n\r\n')
    assert body_of(data) == b"hello world"


def test_trailers_are_read_and_discarded() -> None:
    data = chunked(b"5\r\nhello\r\n0\r\nVary: *\r\nX-Checksum: abc\r\n\r\n")
    assert body_of(data) == b"hello"


@pytest.mark.parametrize(
    "size",
    [b"+5", b"-5", b"0x5", b" 5", b"5 ", b"", b"5_0", b"g", b"1" * 17, b";ext", b"\xb5"],
)
def test_malformed_chunk_size_is_refused(size: bytes) -> None:
    assert body_refused_status(chunked(size + b"\r\nhello\r\n0\r\n\r\n")) == 400


BODY_LIMIT = HeadLimits(body_size=11)


def test_chunked_body_over_the_limit_is_refused_at_the_size_line_that_passes_it() -> None:
    assert body_of(chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), BODY_LIMIT) == (
        b"hello world"
    )
    over = chunked(b"5\r\nhello\r\n7\r\n")
    assert body_refused_status(over, BODY_LIMIT) == 413
    # The size line alone is enough: the refusal does not wait for the chunk's data.
    head, consumed = parse_head(over, BODY_LIMIT) or pytest.fail("no head")
    decoder = body_decoder(head, BODY_LIMIT)
    buffer = bytearray(over[consumed:])
    assert decoder.read(buffer, 100) == b"hello"
    with pytest.raises(BodyTooLarge):
        decoder.read(buffer, 100)
    # And every later read is refused too, whatever arrives.
    buffer += b" world!\r\n0\r\n\r\n"
    with pytest.raises(BodyTooLarge):
        decoder.read(buffer, 100)


def test_sixteen_hex_digits_are_a_chunk_size() -> None:
    head, _ = parse_head(chunked(b""), LIMITS) or pytest.fail("no head")
    decoder = body_decoder(head, LIMITS)
    buffer = bytearray(b"000000000000000A\r\n0123456789\r\n0\r\n\r\n")
    assert decoder.read(buffer, 100) == b"0123456789"


@pytest.mark.parametrize(
    "body",
    [
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
    ],
)
def test_bare_cr_or_lf_in_chunk_framing_is_refused(body: bytes) -> None:
    assert body_refused_status(chunked(body)) == 400


@pytest.mark.parametrize("partial", [b"5;a\rb", b"5;a\nb", b"5\r\nhello\r\n0\r\nX: \rb"])
def test_bare_cr_or_lf_in_chunk_framing_is_refused_before_the_line_ends(partial: bytes) -> None:
    read_all_buffered(partial)


def test_chunk_data_overrun_is_refused_before_the_line_ends() -> None:
    read_all_buffered(b"5\r\nhello!")


def read_all_buffered(body: bytes) -> None:
    """Read a chunked body's bytes as far as they go; they must be refused."""
    head, _ = parse_head(chunked(b""), LIMITS) or pytest.fail("no head")
    decoder = body_decoder(head, LIMITS)
    buffer = bytearray(body)
    with pytest.raises(RequestError):
        while decoder.read(buffer, 100):
            pass


def test_chunk_longer_than_its_size_is_refused() -> None:
    assert body_refused_status(chunked(b"5\r\nhello world\r\n0\r\n\r\n")) == 400


def test_chunk_extension_with_control_character_is_refused() -> None:
    assert body_refused_status(chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n")) == 400


def test_chunk_size_line_over_limit_is_refused() -> None:
    data = chunked(b"5;" + b"x" * SMALL.field_size + b"\r\nhello\r\n0\r\n\r\n")
    assert body_refused_status(data, HeadLimits(field_size=SMALL.field_size)) == 400


@pytest.mark.parametrize(
    "field",
    [
        b"Content-Length: 99",
        b"Transfer-Encoding: chunked",
        b"Host: evil.example.com",
        b"Content-Type: text/html",
        b"Authorization: Basic eA==",
        b"connection: close",
    ],
)
def test_forbidden_trailer_field_is_refused(field: bytes) -> None:
    # RFC 9110 section 6.5.1: fields that decide framing, routing or authority.
    assert body_refused_status(chunked(b"5\r\nhello\r\n0\r\n" + field + b"\r\n\r\n")) == 400


@pytest.mark.parametrize("field", [b"Bad Name: 1", b"X: a\x00b", b" folded", b"X : 1"])
def test_malformed_trailer_field_is_refused(field: bytes) -> None:
    assert body_refused_status(chunked(b"0\r\n" + field + b"\r\n\r\n")) == 400


def test_too_many_trailer_fields_is_431() -> None:
    trailers = b"".join(b"X-%d: 1\r\n" % number for number in range(SMALL.field_count + 1))
    assert body_refused_status(chunked(b"0\r\n" + trailers + b"\r\n"), SMALL) == 431


def test_trailer_field_over_limit_is_431() -> None:
    data = chunked(b"0\r\nX: " + b"v" * SMALL.field_size + b"\r\n\r\n")
    assert body_refused_status(data, SMALL) == 431


def test_incomplete_body_waits() -> None:
    head, _ = parse_head(chunked(b""), LIMITS) or pytest.fail("no head")
    decoder = body_decoder(head, LIMITS)
    buffer = bytearray(b"5\r\nhel")
    assert decoder.read(buffer, 100) == b"hel"
    assert decoder.read(buffer, 100) == b""
    assert not decoder.done
    buffer += b"lo\r\n0\r\n"
    assert decoder.read(buffer, 100) == b"lo"
    assert decoder.read(buffer, 100) == b""
    assert not decoder.done, "ended before the empty line after the last chunk"


# Fuzzing: whatever the bytes, the parser answers with a head, a wait or a RequestError.

VALID_REQUESTS = [
    request("Accept: */*", line="GET /a?b=c HTTP/1.1"),
    request(line="GET / HTTP/1.0", host=False),
    request("Content-Length: 5", line="POST /p HTTP/1.1") + b"hello",
    chunked(b"5;x=y\r\nhello\r\n0\r\nVary: *\r\n\r\n"),
    request("Connection: close", "X-A: 1", "x-a: 2", line="OPTIONS * HTTP/1.1"),
    request(line="CONNECT example.com:443 HTTP/1.1"),
    request(line="GET http://example.com:80/x HTTP/1.1"),
]
FUZZ = settings(max_examples=300, deadline=None, database=None)


def head_outcome(data: bytes, limits: HeadLimits) -> tuple[object, ...]:
    try:
        parsed = parse_head(data, limits)
    except RequestError as error:
        return ("refused", error.status)
    return ("wait",) if parsed is None else ("head", *parsed)


def body_outcome(
    head: RequestHead, body: bytes, limits: HeadLimits, step: int
) -> tuple[object, ...]:
    """The body as decoded when its bytes arrive `step` at a time, or its refusal."""
    decoder = body_decoder(head, limits)
    buffer = bytearray()
    parts = []
    try:
        for start in range(0, len(body), step):
            buffer += body[start : start + step]
            while not decoder.done and (piece := decoder.read(buffer, 5)):
                parts.append(piece)
            if decoder.done:
                break
    except RequestError as error:
        return ("refused", error.status)
    return ("body", b"".join(parts), decoder.done)


def check_every_way(data: bytes, limits: HeadLimits) -> None:
    """Whole or byte by byte, the parser gives the same head, body or refusal.

    The status of a refusal may differ when the bytes break two rules: byte by byte, the
    first break to arrive decides it, while whole, a bare CR or LF anywhere comes first.
    """
    whole = head_outcome(data, limits)
    for end in range(len(data)):
        partial = head_outcome(data[:end], limits)
        if partial[0] == "refused":
            assert whole[0] == "refused", (data[:end], partial, whole)
            break
        if partial[0] == "head":
            assert partial == whole, (data[:end], partial, whole)
            break
    if whole[0] != "head":
        return
    head, consumed = whole[1], whole[2]
    assert isinstance(head, RequestHead) and isinstance(consumed, int)
    body = data[consumed:]
    assert body_outcome(head, body, limits, 1) == body_outcome(head, body, limits, len(body) or 1)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_every_way(data, LIMITS)
    check_every_way(data, SMALL)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_REQUESTS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        byte = draw(st.sampled_from(b"\r\n\t :;,_-0aAzZ\x00\x7f\x80\xff"))
        if action == "insert":
            data[position:position] = bytes([byte])
        elif action == "delete":
            del data[position : position + 1]
        elif action == "replace":
            data[position : position + 1] = bytes([byte])
        else:
            data[position:position] = data[position : position + draw(st.integers(1, 20))]
    return bytes(data)


@FUZZ
@given(mutated_requests())
def test_mutated_requests(data: bytes) -> None:
    check_every_way(data, LIMITS)
    check_every_way(data, SMALL)


def test_scanner_looks_at_each_arriving_byte_once() -> None:
    """A head trickling in must not be rescanned from its start on every arrival."""
    scanner = HeadScanner(LIMITS)
    buffer = bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert scanner.parse(buffer) is None
    for _ in range(50):
        buffer += b"X-Field: value\r\n"
        before = scanner.checked
        assert scanner.parse(buffer) is None
        # Only the 16 new bytes were checked (the mark moves by exactly that much).
        assert scanner.checked - before == 16
    buffer += b"\r\n"
    result = scanner.parse(buffer)
    assert result is not None and result[1] == len(buffer)


def test_length_body_lets_unframed_bytes_be_read_past_the_buffer() -> None:
    body = LengthBody(10)
    assert body.unframed(64) == 10
    body.take_unframed(4)
    assert body.unframed(64) == 6 and not body.done
    assert body.read(bytearray(b"abcdef-next"), 64) == b"abcdef"
    assert body.done and body.unframed(64) == 0


def test_chunked_body_is_unframed_only_inside_chunk_data() -> None:
    body = ChunkedBody(LIMITS)
    buffer = bytearray(b"a;ext=1\r\n")
    assert body.unframed(64) == 0, "the chunk size line is framing"
    assert body.read(buffer, 64) == b""
    assert body.unframed(64) == 10 and body.unframed(4) == 4
    body.take_unframed(10)
    assert body.unframed(64) == 0, "the CRLF after the data is framing"
    buffer += b"\r\n0\r\n\r\n"
    assert body.read(buffer, 64) == b"" and body.done
