"""The environ's CGI names, made from the parser's wire names."""

from __future__ import annotations

from corral.http.parser import HeadLimits, RequestHead, body_decoder, parse_head
from corral.wsgi.environ import base_environ, build_environ
from corral.wsgi.input import RequestBody

BASE = base_environ("localhost", "8000", "http", "", False, False)


def head_of(*field_lines: str, line: str = "POST /a%20b?x=1 HTTP/1.1") -> RequestHead:
    data = "".join(f"{item}\r\n" for item in [line, *field_lines]).encode("latin-1") + b"\r\n"
    parsed = parse_head(data, HeadLimits())
    assert parsed is not None
    return parsed[0]


class _Unread:
    """A body source build_environ never reads from."""

    buffer = bytearray()

    def receive(self) -> None:
        raise AssertionError("build_environ read the body")

    def receive_unframed(self, size: int) -> bytes:
        raise AssertionError("build_environ read the body")


def unread_body(head: RequestHead) -> RequestBody:
    """A real `wsgi.input` for `head` that build_environ stores but must not read: the
    compiled build_environ checks the type of what it is given."""
    return RequestBody(_Unread(), body_decoder(head, HeadLimits()), None)


def environ_of(head: RequestHead) -> dict[str, object]:
    return build_environ(head, unread_body(head), BASE, ("10.0.0.1", 5000))


def test_fields_become_cgi_names() -> None:
    environ = environ_of(
        head_of(
            "Host: example.com",
            "Content-Type: text/plain",
            "content-length: 3",
            "X-Forwarded-For: 1.2.3.4",
            "x-forwarded-for: 5.6.7.8",
        )
    )
    assert environ["HTTP_HOST"] == "example.com"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "3"
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4, 5.6.7.8"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]) == (
        "POST",
        "/a b",
        "x=1",
    )


def test_names_holding_underscore_are_dropped() -> None:
    """`X_Forwarded_For` would otherwise pass for `X-Forwarded-For` (and `Content_Type`
    for `Content-Type`), whichever came last or first."""
    environ = environ_of(
        head_of(
            "Host: example.com",
            "X_Forwarded_For: 6.6.6.6",
            "Content_Type: evil/type",
            "Content_Length: 99",
        )
    )
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert "CONTENT_TYPE" not in environ and "CONTENT_LENGTH" not in environ
    assert not [key for key in environ if "FORWARDED" in key or "CONTENT" in key]


def test_underscore_name_does_not_join_the_dashed_one() -> None:
    environ = environ_of(
        head_of("Host: example.com", "X-Forwarded-For: 1.2.3.4", "X_Forwarded_For: 6.6.6.6")
    )
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
