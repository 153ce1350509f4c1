"""Werkzeug's dev-server tests (tests/test_serving.py, with the `dev_server` fixture and
the apps in tests/live_apps/) run against `corral.run_simple`, with real clients.

Each test names the Werkzeug case whose observable behaviour it asserts. Where corral
answers differently on purpose, the test asserts corral's answer and a comment gives the
RFC section.

Left out, and why:

- test_server[https], test_ssl_dev_cert, test_ssl_object: corral does not serve TLS;
  run_simple refuses `ssl_context` with a ValueError (tests/functional/test_run_simple.py).
- test_server[reloader], test_reloader_sys_path, test_watchdog_reloader_*,
  test_exclude_patterns: Werkzeug's own reloader, which run_simple calls unchanged.
- test_host_with_ipv6_scope: it replaces the client address inside Werkzeug's request
  handler (`override_client_addr`); a real client cannot send from a scoped IPv6 address
  to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from io import BytesIO

import pytest
import requests
from werkzeug.datastructures import FileStorage
from werkzeug.test import stream_encode_multipart

from tests.dev_server import DevServer
from tests.wire import read_until_closed


@pytest.fixture(scope="module")
def environ_server() -> Iterator[DevServer]:
    """Werkzeug's "standard" app: the environ as JSON, /crash raises."""
    with DevServer("environ") as server:
        yield server


def _environ(server: DevServer, target: str = "/", **kwargs: object) -> dict[str, object]:
    response, body = server.request(target, **kwargs)  # type: ignore[arg-type]
    assert response.status == 200, body
    environ: dict[str, object] = json.loads(body)
    return environ


# test_server


def test_server_over_tcp(environ_server: DevServer) -> None:
    environ = _environ(environ_server)
    assert environ["PATH_INFO"] == "/"


def test_server_over_a_unix_socket(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("sock") / "test.sock"
    with DevServer("environ", hostname=f"unix://{path}") as server:
        environ = _environ(server)
    assert environ["PATH_INFO"] == "/"


# test_untrusted_host: an absolute-form target names the host.


def test_an_absolute_target_overrides_the_host(environ_server: DevServer) -> None:
    environ = _environ(
        environ_server,
        "http://missing.test:1337/index.html#ignore",
        headers={"X-Base-Url": environ_server.url},
    )
    assert environ["HTTP_HOST"] == "missing.test:1337"
    assert environ["PATH_INFO"] == "/index.html"
    host, _, port = str(environ["HTTP_X_BASE_URL"]).rpartition(":")
    assert environ["SERVER_NAME"] == host.removeprefix("http://")
    assert environ["SERVER_PORT"] == port


# test_double_slash_path


def test_a_double_slash_path_is_not_taken_for_a_host(environ_server: DevServer) -> None:
    environ = _environ(environ_server, "//double-slash")
    assert "double-slash" not in str(environ["HTTP_HOST"])
    # Werkzeug gives "/double-slash" (urlsplit reads "//x" as a network location). An
    # origin-form target is an absolute-path whose segments may be empty (RFC 9112
    # section 3.2.1, RFC 3986 section 3.3), so corral passes the path on unchanged.
    assert environ["PATH_INFO"] == "//double-slash"


# test_500_error


def test_an_application_error_is_a_500(environ_server: DevServer) -> None:
    response, body = environ_server.request("/crash")
    assert response.status == 500
    assert b"Internal Server Error" in body
    assert environ_server.wait_for_stderr("RuntimeError: crash requested")


# test_wrong_protocol


def test_https_to_the_http_server_shows_no_traceback() -> None:
    with DevServer("environ") as server:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, timeout=10, context=ssl.create_default_context()
        )
        with pytest.raises(ssl.SSLError):
            connection.request("GET", "/")
        connection.close()
        # The TLS ClientHello is a malformed request line: one line in the error log.
        assert server.wait_for_stderr("refused: ")
    assert "Traceback" not in server.log


# test_content_type_and_length


def test_content_type_and_length_only_when_sent(environ_server: DevServer) -> None:
    environ = _environ(environ_server)
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ
    environ = _environ(
        environ_server, method="POST", body=b"{}", headers={"Content-Type": "application/json"}
    )
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "2"


# test_port_is_int


def test_the_port_must_be_an_int() -> None:
    from corral import run_simple

    with pytest.raises(TypeError, match="port must be an integer"):
        run_simple("127.0.0.1", "5000", None)  # type: ignore[arg-type]


# test_chunked_request


def _multipart_form() -> tuple[bytes, str]:
    stream, _, boundary = stream_encode_multipart(
        {
            "value": "this is text",
            "file": FileStorage(
                BytesIO(b"this is a file"), filename="test.txt", content_type="text/plain"
            ),
        }
    )
    return stream.read(), boundary


@pytest.fixture(scope="module")
def form_server() -> Iterator[DevServer]:
    """Werkzeug's "data" app: environ, form and files as JSON."""
    with DevServer("form") as server:
        yield server


def test_a_chunked_request_body_is_read_to_its_end(form_server: DevServer) -> None:
    body, boundary = _multipart_form()
    # A small block size sends the body as many chunks.
    connection = form_server.connect(blocksize=128)
    connection.putrequest("POST", "/")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.endheaders(BytesIO(body), encode_chunked=True)
    response = connection.getresponse()
    data = json.load(response)
    connection.close()
    assert data["form"]["value"] == "this is text"
    assert data["files"]["file"] == "this is a file"
    environ = data["environ"]
    assert environ["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert "CONTENT_LENGTH" not in environ
    assert environ["wsgi.input_terminated"] is True


def test_chunked_with_a_bad_content_length_is_refused(form_server: DevServer) -> None:
    # Werkzeug ignores Content-Length beside chunked and serves the request. A request
    # with both is a smuggling vector a server MAY refuse (RFC 9112 section 6.1), and an
    # invalid Content-Length is an unrecoverable framing error (RFC 9112 section 6.3):
    # corral answers 400 and closes.
    body, boundary = _multipart_form()
    connection = form_server.connect()
    connection.putrequest("POST", "/")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Content-Length", "invalid")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.endheaders(BytesIO(body), encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 400
    assert response.getheader("Connection") == "close"
    connection.close()


# test_multiple_headers_concatenated


def test_a_repeated_header_is_joined_with_commas(environ_server: DevServer) -> None:
    connection = environ_server.connect()
    connection.putrequest("GET", "/")
    connection.putheader("XYZ", "a ")
    connection.putheader("X-Ignore-1", "ignore value")
    connection.putheader("XYZ", " b")
    connection.putheader("X-Ignore-2", "ignore value")
    connection.putheader("XYZ", "c ")
    connection.putheader("X-Ignore-3", "ignore value")
    connection.putheader("XYZ", "d")
    connection.endheaders()
    data = json.load(connection.getresponse())
    connection.close()
    # Werkzeug gives "a ,b,c ,d". Whitespace around a field value is not part of it
    # (RFC 9110 section 5.5), and values are combined with ", " (RFC 9110 section 5.3;
    # RFC 3875 section 4.1.18 asks for a comma-separated list).
    assert data["HTTP_XYZ"] == "a, b, c, d"


# test_multiline_header_folding


def test_a_folded_header_is_refused(environ_server: DevServer) -> None:
    connection = environ_server.connect()
    connection.putrequest("GET", "/")
    connection.putheader("XYZ", "first", "second", "third")
    connection.endheaders()
    response = connection.getresponse()
    connection.close()
    # Werkzeug unfolds to "first\tsecond\tthird". obs-fold is deprecated and a server
    # may reject it with 400 (RFC 9112 section 5.2); corral does, so no two parties can
    # read the field differently.
    assert response.status == 400


# test_streaming_close_response, test_streaming_chunked_response,
# test_streaming_chunked_truncation


_STREAMED = b"".join(b"%d\n" % number for number in range(5))


@pytest.fixture(scope="module", params=[{}, {"threaded": True}], ids=["default", "threaded"])
def streaming_server(request: pytest.FixtureRequest) -> Iterator[DevServer]:
    """Werkzeug's "streaming" app: five lines from a generator; /crash raises after."""
    with DevServer("streaming", **request.param) as server:
        yield server


@pytest.mark.parametrize("target", ["/", "/crash"])
def test_a_streamed_response_to_http_1_0_ends_with_the_connection(
    streaming_server: DevServer, target: str
) -> None:
    # Werkzeug's single-threaded server answers every request as HTTP/1.0; corral speaks
    # HTTP/1.1 in every model, so the close-delimited case is an HTTP/1.0 client's.
    with socket.create_connection(("127.0.0.1", streaming_server.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.0\r\n\r\n".encode())
        received = read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ")
    assert b"\r\nconnection: close" in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert body == _STREAMED


def test_a_streamed_response_is_chunked(streaming_server: DevServer) -> None:
    response, body = streaming_server.request("/")
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert body == _STREAMED


def test_a_failing_stream_is_seen_as_truncated(streaming_server: DevServer) -> None:
    with pytest.raises(http.client.IncompleteRead):
        streaming_server.request("/crash")


# Behaviour a dev-server user relies on that test_serving.py covers only in passing.


def test_expect_100_continue_is_answered_before_the_body(form_server: DevServer) -> None:
    # Werkzeug's run_wsgi sends "100 Continue" first (RFC 9110 section 10.1.1).
    with socket.create_connection(("127.0.0.1", form_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 7\r\nConnection: close\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            data = sock.recv(4096)
            assert data, interim
            interim += data
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"value=1")
        received = interim.partition(b"\r\n\r\n")[2] + read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["form"] == {"value": "1"}


def test_connection_close_is_honoured(environ_server: DevServer) -> None:
    with socket.create_connection(("127.0.0.1", environ_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = read_until_closed(sock)
    head = received.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200 ")
    assert b"\r\nconnection: close" in head


def test_a_connection_carries_more_than_one_request(environ_server: DevServer) -> None:
    # Werkzeug closes every connection ("Connection: close" on each response, because
    # http.server cannot drain a body); corral keeps HTTP/1.1 connections open (RFC 9112
    # section 9.3), which requests' session relies on for speed, not for correctness.
    with requests.Session() as session:
        first = session.get(environ_server.url + "/one", timeout=10)
        second = session.get(environ_server.url + "/two", timeout=10)
    assert first.json()["REMOTE_PORT"] == second.json()["REMOTE_PORT"]
    assert "close" not in first.headers.get("Connection", "").lower()


def test_each_request_is_logged(environ_server: DevServer) -> None:
    # Werkzeug's request line on standard error, e.g. test_wrong_protocol's "127.0.0.1".
    environ_server.request("/logged?x=1")
    logged = environ_server.wait_for_stderr('"GET /logged')
    assert len(logged) == 1
    assert logged[0].startswith("127.0.0.1 - - [")
    assert logged[0].endswith('] "GET /logged?x=1 HTTP/1.1" 200 -\n')
