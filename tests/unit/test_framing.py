"""Response framing: the fields sent, how the body ends and whether the connection stays.

Each case names one rule of RFC 9110 / RFC 9112 and fails if that rule is removed.
"""

from __future__ import annotations

import pytest

from corral.http.framing import (
    CHUNKED,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    BodyFraming,
    InvalidResponse,
    ResponseFraming,
    check_response_headers,
    chunk_size_line,
    encode_chunk,
    encode_head,
    frame_response,
    status_code,
)

DATE = "Mon, 30 Nov 2026 16:50:11 GMT"
TYPE = ("Content-Type", "text/plain")
ADDED = [("Date", DATE), ("Server", "corral")]
CLOSE = ("Connection", "close")
KEEP = ("Connection", "keep-alive")
Headers = list[tuple[str, str]]

# name: (version, method, code, app headers, body length, may keep alive)
#    -> (headers sent, framing, length, keep alive)
CASES: dict[str, tuple[tuple[str, str, int, Headers, int | None, bool], ResponseFraming]] = {
    "1.1 one piece gets its length": (
        ("HTTP/1.1", "GET", 200, [TYPE], 5, True),
        ([TYPE, ("Content-Length", "5"), *ADDED], LENGTH, 5, True),
    ),
    "1.1 pieces are chunked": (
        ("HTTP/1.1", "GET", 200, [TYPE], None, True),
        ([TYPE, ("Transfer-Encoding", "chunked"), *ADDED], CHUNKED, None, True),
    ),
    "1.1 an error in pieces is chunked too": (
        ("HTTP/1.1", "POST", 500, [TYPE], None, True),
        ([TYPE, ("Transfer-Encoding", "chunked"), *ADDED], CHUNKED, None, True),
    ),
    "1.0 one piece gets its length and keep-alive": (
        ("HTTP/1.0", "GET", 200, [TYPE], 5, True),
        ([TYPE, ("Content-Length", "5"), *ADDED, KEEP], LENGTH, 5, True),
    ),
    "1.0 pieces run until close": (
        ("HTTP/1.0", "GET", 200, [TYPE], None, True),
        ([TYPE, *ADDED, CLOSE], UNTIL_CLOSE, None, False),
    ),
    "1.0 app length kept": (
        ("HTTP/1.0", "GET", 200, [("Content-Length", "10")], None, True),
        ([("Content-Length", "10"), *ADDED, KEEP], LENGTH, 10, True),
    ),
    "app length kept for pieces": (
        ("HTTP/1.1", "GET", 200, [("content-length", "10"), TYPE], None, True),
        ([("content-length", "10"), TYPE, *ADDED], LENGTH, 10, True),
    ),
    "app length equal to the one piece": (
        ("HTTP/1.1", "GET", 200, [("Content-Length", "5")], 5, True),
        ([("Content-Length", "5"), *ADDED], LENGTH, 5, True),
    ),
    "app length longer than the one piece closes": (
        ("HTTP/1.1", "GET", 200, [("Content-Length", "10")], 4, True),
        ([("Content-Length", "10"), *ADDED, CLOSE], LENGTH, 10, False),
    ),
    "app length and no body at all closes": (
        ("HTTP/1.1", "GET", 200, [("Content-Length", "10")], 0, True),
        ([("Content-Length", "10"), *ADDED, CLOSE], LENGTH, 10, False),
    ),
    "app length shorter than the one piece: the body is cut": (
        ("HTTP/1.1", "GET", 200, [("Content-Length", "3")], 5, True),
        ([("Content-Length", "3"), *ADDED], LENGTH, 3, True),
    ),
    "HEAD in pieces: no length": (
        ("HTTP/1.1", "HEAD", 200, [TYPE], None, True),
        ([TYPE, *ADDED], NO_BODY, 0, True),
    ),
    "HEAD counts a one-piece body": (
        ("HTTP/1.1", "HEAD", 200, [TYPE], 4, True),
        ([TYPE, ("Content-Length", "4"), *ADDED], NO_BODY, 0, True),
    ),
    "HEAD keeps the app length": (
        ("HTTP/1.1", "HEAD", 200, [("Content-Length", "4")], 0, True),
        ([("Content-Length", "4"), *ADDED], NO_BODY, 0, True),
    ),
    "HEAD 1.0 in pieces keeps alive": (
        ("HTTP/1.0", "HEAD", 200, [TYPE], None, True),
        ([TYPE, *ADDED, KEEP], NO_BODY, 0, True),
    ),
    "HEAD of a 204 drops the app length": (
        ("HTTP/1.1", "HEAD", 204, [("Content-Length", "4")], 4, True),
        ([*ADDED], NO_BODY, 0, True),
    ),
    "204 drops the app length": (
        ("HTTP/1.1", "GET", 204, [("Content-Length", "4"), TYPE], 4, True),
        ([TYPE, *ADDED], NO_BODY, 0, True),
    ),
    "204 in pieces": (
        ("HTTP/1.1", "GET", 204, [], None, True),
        ([*ADDED], NO_BODY, 0, True),
    ),
    "204 on 1.0 keeps alive": (
        ("HTTP/1.0", "GET", 204, [], None, True),
        ([*ADDED, KEEP], NO_BODY, 0, True),
    ),
    "304 keeps the app length": (
        ("HTTP/1.1", "GET", 304, [("ETag", '"a"'), ("Content-Length", "4")], 4, True),
        ([("ETag", '"a"'), ("Content-Length", "4"), *ADDED], NO_BODY, 0, True),
    ),
    "304 adds no length of its own": (
        ("HTTP/1.1", "GET", 304, [("ETag", '"a"')], 4, True),
        ([("ETag", '"a"'), *ADDED], NO_BODY, 0, True),
    ),
    "304 on 1.0 in pieces keeps alive": (
        ("HTTP/1.0", "GET", 304, [], None, True),
        ([*ADDED, KEEP], NO_BODY, 0, True),
    ),
    "2xx to CONNECT: no length, no body, closed": (
        ("HTTP/1.1", "CONNECT", 200, [("Content-Length", "4")], 4, True),
        ([*ADDED, CLOSE], NO_BODY, 0, False),
    ),
    "4xx to CONNECT is framed as usual": (
        ("HTTP/1.1", "CONNECT", 405, [TYPE], 9, True),
        ([TYPE, ("Content-Length", "9"), *ADDED], LENGTH, 9, True),
    ),
    "may not keep alive: 1.1": (
        ("HTTP/1.1", "GET", 200, [TYPE], 5, False),
        ([TYPE, ("Content-Length", "5"), *ADDED, CLOSE], LENGTH, 5, False),
    ),
    "may not keep alive: 1.1 chunked": (
        ("HTTP/1.1", "GET", 200, [], None, False),
        ([("Transfer-Encoding", "chunked"), *ADDED, CLOSE], CHUNKED, None, False),
    ),
    "may not keep alive: 1.0": (
        ("HTTP/1.0", "GET", 200, [], 5, False),
        ([("Content-Length", "5"), *ADDED, CLOSE], LENGTH, 5, False),
    ),
    "may not keep alive: HEAD": (
        ("HTTP/1.1", "HEAD", 200, [], None, False),
        ([*ADDED, CLOSE], NO_BODY, 0, False),
    ),
    "app Connection: close is kept, not repeated": (
        ("HTTP/1.1", "GET", 200, [("Connection", "close")], 5, True),
        ([CLOSE, ("Content-Length", "5"), *ADDED], LENGTH, 5, False),
    ),
    "app Connection: close in any case, among other tokens": (
        ("HTTP/1.0", "GET", 200, [("connection", "Upgrade, Close")], 5, True),
        ([("connection", "Upgrade, Close"), ("Content-Length", "5"), *ADDED], LENGTH, 5, False),
    ),
    "app Connection: keep-alive on 1.0 is not repeated": (
        ("HTTP/1.0", "GET", 200, [KEEP], 5, True),
        ([KEEP, ("Content-Length", "5"), *ADDED], LENGTH, 5, True),
    ),
    "app Connection: keep-alive when closing adds nothing": (
        ("HTTP/1.1", "GET", 200, [KEEP], 5, False),
        ([KEEP, ("Content-Length", "5"), *ADDED], LENGTH, 5, False),
    ),
    "app Date and Server are kept, not repeated": (
        ("HTTP/1.1", "GET", 200, [("date", "yesterday"), ("SERVER", "mine")], 0, True),
        ([("date", "yesterday"), ("SERVER", "mine"), ("Content-Length", "0")], LENGTH, 0, True),
    ),
    "app Date only: Server still added": (
        ("HTTP/1.1", "GET", 200, [("Date", "yesterday")], 0, True),
        ([("Date", "yesterday"), ("Content-Length", "0"), ("Server", "corral")], LENGTH, 0, True),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_frame_response(case: str) -> None:
    (version, method, code, headers, body_length, may_keep_alive), expected = CASES[case]
    given = list(headers)
    framing = frame_response(version, method, code, headers, body_length, may_keep_alive, DATE)
    assert framing == expected
    assert isinstance(framing[1], BodyFraming)
    assert headers == given, "the application's list was changed"


def test_head_bytes_from_a_framing() -> None:
    headers, _, _, _ = frame_response("HTTP/1.0", "GET", 200, [TYPE], 5, True, DATE)
    assert encode_head("HTTP/1.0", "200 OK", headers) == (
        b"HTTP/1.0 200 OK\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 5\r\n"
        b"Date: Mon, 30 Nov 2026 16:50:11 GMT\r\n"
        b"Server: corral\r\n"
        b"Connection: keep-alive\r\n"
        b"\r\n"
    )


def test_framing_is_immutable() -> None:
    framing = frame_response("HTTP/1.1", "GET", 200, [], None, True, DATE)
    with pytest.raises(TypeError):
        framing[3] = False  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        (b"hello", b"5\r\nhello\r\n"),
        (b"x" * 16, b"10\r\n" + b"x" * 16 + b"\r\n"),
        (b"\r\n0\r\n\r\n", b"7\r\n\r\n0\r\n\r\n\r\n"),
    ],
)
def test_encode_chunk(data: bytes, encoded: bytes) -> None:
    assert encode_chunk(data) == encoded
    assert chunk_size_line(len(data)) + data + b"\r\n" == encoded


def test_last_chunk() -> None:
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_checked_headers_pass() -> None:
    check_response_headers([TYPE, ("Content-Length", "0"), ("X-Empty", "")])
    # HTAB, obs-text and latin-1 letters are sendable as they are.
    check_response_headers([("X-Tab", "a\tb"), ("X-Latin", "caf\u00e9 \u00ff")])


@pytest.mark.parametrize(
    "headers",
    [
        [("Transfer-Encoding", "chunked")],
        [("transfer-encoding", "identity")],
        [("Content-Length", "-1")],
        [("Content-Length", "1 2")],
        [("Content-Length", "\N{ARABIC-INDIC DIGIT ONE}")],
        [("Content-Length", "")],
        [("Bad Name", "x")],
        [("X-Split", "a\r\nSet-Cookie: b")],
        # A name or a status found valid before does not let a bad one through after it.
        [("X-Good", "1"), ("X-Good ", "1")],
        [("X-Good", "1"), ("X-Good", "\x7f")],
        [("X-Good", "1"), ("X-Good", "nul\x00")],
        [("X-Good", "1"), ("X-Good", "euro \u20ac")],
        [("X-Good", "1"), ("X-Good", 1)],
        [("X-Good", "1"), (b"X-Good", "1")],
        # Nor does a whole line found valid before, given as a list or in other pieces.
        [("X-Good", "1"), ["X-Good", "1\r\nSet-Cookie: b"]],
        [("X-Good", "1"), ("X-Good", "1", "2")],
        [("X-Good", "1"), ("X-Good", ["1"])],
        [("X-Good",)],
        ["X-Good: 1"],
        [None],
    ],
)
def test_headers_that_cannot_be_framed_are_refused(headers: Headers) -> None:
    with pytest.raises(InvalidResponse):
        check_response_headers(headers)


def test_headers_are_copied_as_tuples_and_checked_again_once_many_were_seen() -> None:
    given = [TYPE, ["X-List", "1"]]
    assert check_response_headers(given) == [TYPE, ("X-List", "1")]
    assert check_response_headers(given) == [TYPE, ("X-List", "1")]
    # More distinct lines than are remembered: the set starts again, and still refuses.
    many = [(f"X-Request-{number}", str(number)) for number in range(3000)]
    assert check_response_headers(many) == many
    with pytest.raises(InvalidResponse):
        check_response_headers([*many[:5], ("X-Request-1", "1\r\n")])


@pytest.mark.parametrize("status", ["200", "200OK", "2000 OK", "099 Low", "200 A\r\nB", 200])
def test_a_status_found_valid_before_lets_no_bad_one_through(status: object) -> None:
    assert status_code("200 OK") == 200
    assert status_code("200 OK") == 200
    with pytest.raises(InvalidResponse):
        status_code(status)
