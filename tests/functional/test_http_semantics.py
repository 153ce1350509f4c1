"""HTTP/1.1 message framing and connection handling, seen on the wire (RFC 9112, RFC 9110)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pytest

from tests.server import ALL_MODELS, RunningServer

TIMEOUT = 5.0


@dataclass
class RawResponse:
    version: str
    status: int
    headers: dict[str, str]
    body: bytes
    raw_body: bytes


def read_response(stream: BinaryIO, has_body: bool = True) -> RawResponse:
    """One response, framed as its head says; `raw_body` keeps any chunk framing."""
    status_line = stream.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    version, status, _ = status_line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = stream.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    code = int(status)
    if not has_body or code < 200 or code in (204, 304):
        return RawResponse(version, code, headers, b"", b"")
    if "content-length" in headers:
        body = stream.read(int(headers["content-length"]))
        return RawResponse(version, code, headers, body, body)
    if headers.get("transfer-encoding") == "chunked":
        body, raw = b"", b""
        while True:
            size_line = stream.readline()
            raw += size_line
            size = int(size_line.split(b";")[0], 16)
            data = stream.read(size + 2)
            raw += data
            if size == 0:
                return RawResponse(version, code, headers, body, raw)
            body += data[:-2]
    body = stream.read()
    return RawResponse(version, code, headers, body, body)


def server_closed(stream: BinaryIO) -> bool:
    """True if the server closes the connection with nothing more to send."""
    try:
        return stream.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def connect(server: RunningServer) -> tuple[socket.socket, BinaryIO]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    return sock, sock.makefile("rb")


def get(path: str, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return f"GET {path} {version}\r\nHost: test\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


# Request bodies.


def test_content_length_body_reaches_the_app(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(post("/echo", b"exactly these bytes"))
        assert read_response(stream).body == b"exactly these bytes"


def test_chunked_body_ignores_extensions_and_discards_trailers(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(
            b"POST /environ HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n"
            b"6 ; flag\r\n world\r\n"
            b"0\r\nX-Trailer: from the trailer\r\n\r\n"
            + get("/echo", extra="Connection: close\r\n")
        )
        environ = json.loads(read_response(stream).body)
        assert environ["body"] == "hello world"
        assert "HTTP_X_TRAILER" not in environ
        assert not any("from the trailer" in str(value) for value in environ.values())
        # The next request starts right after the trailer section.
        assert read_response(stream).status == 200


# Persistent connections (RFC 9112 section 9.3).


def test_small_unread_body_is_dropped_and_the_connection_kept(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(post("/ignore-body", b"x" * 50_000) + post("/echo", b"second"))
        first = read_response(stream)
        assert first.body == b"body not read"
        assert first.headers.get("connection") != "close"
        assert read_response(stream).body == b"second"


def test_large_unread_body_closes_and_says_so(server: RunningServer) -> None:
    """Past the discard limit an unread body is not kept for the next request; the
    response head says Connection: close."""
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\n")
        sock.sendall(b"a" * 2000000)
        response = read_response(stream)
        assert response.body == b"body not read"
        assert response.headers.get("connection") == "close"
        assert server_closed(stream)


def test_http11_connection_stays_open_by_default(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/"))
        first = read_response(stream)
        assert "close" not in first.headers.get("connection", "")
        sock.sendall(get("/"))
        assert read_response(stream).body == b"hello\n"


def test_http10_keep_alive_is_honoured(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/", "HTTP/1.0", "Connection: keep-alive\r\n"))
        first = read_response(stream)
        assert first.headers["connection"].lower() == "keep-alive"
        sock.sendall(get("/", "HTTP/1.0", "Connection: keep-alive\r\n"))
        assert read_response(stream).body == b"hello\n"


def test_http10_closes_by_default(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/", "HTTP/1.0"))
        assert read_response(stream).body == b"hello\n"
        assert server_closed(stream)


def test_connection_close_is_honoured(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/", extra="Connection: close\r\n"))
        response = read_response(stream)
        assert response.headers["connection"] == "close"
        assert server_closed(stream)


def test_connection_close_from_the_app_is_honoured(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/connection-close"))
        assert read_response(stream).body == b"bye"
        assert server_closed(stream)


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(post("/echo", b"first") + post("/echo", b"second") + post("/echo", b"third"))
        bodies = [read_response(stream).body for _ in range(3)]
        assert bodies == [b"first", b"second", b"third"]


# More than one read (64 KiB) of bytes, all arrived before the server reads any.
AT_ONCE = {
    "a body": (post("/echo", bytes(range(256)) * 400) + get("/"), 2),
    "pipelined requests": (get("/") * 2600, 2600),
}


@pytest.mark.parametrize("sent", list(AT_ONCE))
def test_more_than_one_read_sent_at_once_is_all_served(server: RunningServer, sent: str) -> None:
    """Served one at a time, a connection is watched edge-triggered: what the kernel
    already holds is not reported again, so the server reads on itself while a read
    fills all it asked for. Otherwise the rest waited for the client to send more."""
    data, count = AT_ONCE[sent]
    assert len(data) > 65536
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(data)
        responses = [read_response(stream) for _ in range(count)]
        assert [response.status for response in responses] == [200] * count
        assert responses[-1].body == b"hello\n"
        if sent == "a body":
            assert responses[0].body == bytes(range(256)) * 400


def test_a_client_that_waits_for_a_response_before_sending_the_next_body_gets_it(
    server: RunningServer,
) -> None:
    """The next request's head arrives with the first request; its body only once the
    client has read the first response. The first response must not wait for it."""
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/") + b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\n")
        assert read_response(stream).body == b"hello\n"
        sock.sendall(b"late")
        assert read_response(stream).body == b"late"


def test_a_request_sent_while_the_previous_one_is_served_is_answered_after_it(
    server: RunningServer,
) -> None:
    sock, stream = connect(server)
    mark = f"while-served-{time.monotonic_ns()}"
    with sock, stream:
        sock.sendall(get(f"/slow?ms=300&announce={mark}"))
        assert server.wait_for_log(f"app: started {mark}", 10), server.log
        sock.sendall(get("/"))
        first = read_response(stream)
        assert first.status == 200 and b"thread" in first.body
        assert read_response(stream).body == b"hello\n"
        # And the connection still carries requests after both.
        sock.sendall(get("/"))
        assert read_response(stream).body == b"hello\n"


def test_a_client_gone_while_its_request_is_served_leaves_the_others_served(
    server: RunningServer,
) -> None:
    sock, stream = connect(server)
    mark = f"client-gone-{time.monotonic_ns()}"
    with sock, stream:
        sock.sendall(get(f"/slow?ms=200&announce={mark}"))
        assert server.wait_for_log(f"app: started {mark}", 10), server.log
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/"))
        assert read_response(stream).body == b"hello\n"


def test_a_bad_request_after_a_good_one_is_answered_after_it(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/") + get("/") + b"NOT A REQUEST\r\n\r\n")
        assert [read_response(stream).status for _ in range(3)] == [200, 200, 400]
        assert server_closed(stream)


def test_an_app_failure_after_a_good_request_is_answered_after_it(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/") + get("/raise-before-start"))
        first = read_response(stream)
        assert (first.status, first.body) == (200, b"hello\n")
        assert read_response(stream).status == 500


# Expect: 100-continue (RFC 9110 section 10.1.1).


def test_100_continue_is_sent_when_the_app_reads_the_body(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert read_response(stream, has_body=False).status == 100
        sock.sendall(b"data")
        response = read_response(stream)
        assert (response.status, response.body) == (200, b"data")
        # The body was read in full, so the connection carries the next request.
        sock.sendall(get("/"))
        assert read_response(stream).body == b"hello\n"


def test_100_continue_is_sent_before_the_app_runs_even_when_it_ignores_the_body(
    server: RunningServer,
) -> None:
    # The body is gathered before a thread is given to the request, so "100 Continue"
    # goes out as soon as the head has arrived, as gunicorn, waitress and Werkzeug send
    # it; the application then finds the whole body in hand.
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(
            b"POST /ignore-body HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert read_response(stream, has_body=False).status == 100
        sock.sendall(b"data")
        response = read_response(stream)
        assert (response.status, response.body) == (200, b"body not read")
        # The unread body was in hand and is dropped: the connection carries on.
        assert "close" not in response.headers.get("connection", "")
        sock.sendall(get("/"))
        assert read_response(stream).body == b"hello\n"


def test_a_response_started_before_the_body_is_read_comes_after_100_continue(
    server: RunningServer,
) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(
            b"POST /respond-then-read HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert read_response(stream, has_body=False).status == 100
        sock.sendall(b"data")
        response = read_response(stream)
        assert response.status == 200
        assert response.body == b"head sent; body: data"


def test_http10_request_never_gets_100_continue(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(
            b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\ndata"
        )
        response = read_response(stream)
        assert (response.status, response.body) == (200, b"data")


# Response framing (RFC 9112 section 6.3).


def test_head_has_no_body_but_the_get_content_length(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(
            b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n"
            b"HEAD /one-piece HTTP/1.1\r\nHost: test\r\n\r\n"
            b"HEAD /stream HTTP/1.1\r\nHost: test\r\n\r\n" + get("/one-piece")
        )
        head = read_response(stream, has_body=False)
        assert head.headers["content-length"] == "6"
        head_one_piece = read_response(stream, has_body=False)
        head_stream = read_response(stream, has_body=False)
        assert "content-length" not in head_stream.headers
        assert "transfer-encoding" not in head_stream.headers
        # Any body bytes sent after a HEAD response would show up here.
        following = read_response(stream)
        assert following.body == b"one piece, no length given"
        assert head_one_piece.headers["content-length"] == str(len(following.body))


def test_content_length_given_by_the_app_is_used(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/declared-shorter"))
        response = read_response(stream, has_body=False)
        assert response.headers["content-length"] == "100"
        assert "transfer-encoding" not in response.headers


def test_single_piece_body_is_sent_with_its_length(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/one-piece"))
        response = read_response(stream)
        assert response.headers["content-length"] == str(len(b"one piece, no length given"))
        assert "transfer-encoding" not in response.headers
        assert response.body == b"one piece, no length given"


def test_streamed_body_is_chunked_on_http11(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/stream"))
        response = read_response(stream)
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        # The empty piece the app yields after "part 1" must not become a last chunk.
        expected = b"".join(b"7\r\npart %d\n\r\n" % number for number in range(5)) + b"0\r\n\r\n"
        assert response.raw_body == expected
        sock.sendall(get("/"))
        assert read_response(stream).body == b"hello\n"


def test_streamed_body_ends_with_the_connection_on_http10(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/stream", "HTTP/1.0", "Connection: keep-alive\r\n"))
        response = read_response(stream)
        assert "content-length" not in response.headers
        assert "transfer-encoding" not in response.headers
        assert response.headers["connection"] == "close"
        assert response.body == b"".join(b"part %d\n" % number for number in range(5))


@pytest.mark.parametrize("path", ["/no-content", "/not-modified"])
def test_no_body_for_204_and_304(server: RunningServer, path: str) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get(path) + get("/"))
        response = read_response(stream, has_body=False)
        assert response.status in (204, 304)
        assert "transfer-encoding" not in response.headers
        assert response.headers.get("content-length", "0") == "0"
        # Had any body been sent, it would sit where this response's status line is.
        assert read_response(stream).body == b"hello\n"


def test_date_and_server_headers_are_present(server: RunningServer) -> None:
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get("/stream"))
        response = read_response(stream)
        assert response.headers["date"].endswith(" GMT")
        assert response.headers["server"] == "corral"


# RFC 9110 sections 6.4.1, 8.6 and 9.3.6, RFC 9112 section 6.1: which responses carry no
# content, and which of them may still say how long the content would have been.
# (method, target, app's status, app's Content-Length or None, app's body) ->
# (Content-Length sent or None, connection kept)
NO_CONTENT_FRAMING = {
    "204 with the app's length 4": ("GET", "/framing?status=204&length=4&body=data", None, True),
    "204 with the app's length 0": ("GET", "/framing?status=204&length=0", None, True),
    "204 without a length": ("GET", "/framing?status=204&body=data", None, True),
    "304 keeps the app's length": ("GET", "/framing?status=304&length=4&body=data", "4", True),
    "304 without a length": ("GET", "/framing?status=304&body=data", None, True),
    "HEAD keeps the app's length": ("HEAD", "/framing?length=4&body=data", "4", True),
    "HEAD counts a one-piece body": ("HEAD", "/framing?body=data", "4", True),
    "HEAD of a 204": ("HEAD", "/framing?status=204&length=4&body=data", None, True),
    "2xx to CONNECT": ("CONNECT", "/framing?status=200&length=4&body=data", None, False),
}


@pytest.fixture(scope="module", params=list(ALL_MODELS))
def framing_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """Every model, worker processes of each class included."""
    with RunningServer(options=ALL_MODELS[request.param]) as running:
        yield running


@pytest.mark.parametrize("case", list(NO_CONTENT_FRAMING))
def test_responses_without_content_are_framed_by_status_and_method(
    framing_server: RunningServer, case: str
) -> None:
    server = framing_server
    method, target, length, kept = NO_CONTENT_FRAMING[case]
    if method == "CONNECT":
        request = _connect(target)
    else:
        request = f"{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(request + get("/"))
        response = read_response(stream, has_body=False)
        assert response.headers.get("content-length") == length, response.headers
        assert "transfer-encoding" not in response.headers
        if kept:
            # Had any body been sent, it would sit where this response's status line is.
            assert read_response(stream).body == b"hello\n"
        else:
            assert response.headers["connection"] == "close"
            assert server_closed(stream)


def _connect(target: str) -> bytes:
    """A CONNECT (its target is an authority, not a path) whose answer the test app takes
    from `target`'s query, given in a header."""
    query = target.partition("?")[2]
    return (
        f"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Framing: {query}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("status", ["100", "103"])
def test_an_interim_status_as_the_response_is_a_500(server: RunningServer, status: str) -> None:
    """PEP 3333 has no 1xx responses; sent as final, the client would wait for ever."""
    sock, stream = connect(server)
    with sock, stream:
        sock.sendall(get(f"/framing?status={status}&body=data"))
        response = read_response(stream)
        assert response.status == 500
