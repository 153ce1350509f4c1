"""The PEP 3333 environ each request gets, as the application sees it."""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.server import RunningServer

TIMEOUT = 5.0


def fetch_environ(
    port: int,
    path: str = "/environ",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> dict[str, Any]:
    """The environ of one request; `headers` are sent in order, repeats included."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.putrequest(
            "POST" if body is not None else "GET", path, skip_accept_encoding=True
        )
        connection.putheader("X-Show-Environ", "yes")
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        assert response.status == 200
        environ: dict[str, Any] = json.loads(response.read())
        return environ
    finally:
        connection.close()


def test_path_info_is_percent_decoded_as_latin_1(server: RunningServer) -> None:
    environ = fetch_environ(server.port, "/caf%C3%A9/a%2Fb")
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/a/b"
    assert environ["REQUEST_URI"] == "/caf%C3%A9/a%2Fb"


def test_query_string_is_passed_raw(server: RunningServer) -> None:
    environ = fetch_environ(server.port, "/environ?a=%20b&c=d+e&caf%C3%A9")
    assert environ["QUERY_STRING"] == "a=%20b&c=d+e&caf%C3%A9"
    assert environ["PATH_INFO"] == "/environ"


def test_script_name_comes_from_root_path(start_server: Callable[..., RunningServer]) -> None:
    # Independent of the concurrency model: the environ is built the same way for all.
    running = start_server(options=["--root-path", "/api/"])
    inside = fetch_environ(running.port, "/api/environ")
    assert (inside["SCRIPT_NAME"], inside["PATH_INFO"]) == ("/api", "/environ")
    root = fetch_environ(running.port, "/api")
    assert (root["SCRIPT_NAME"], root["PATH_INFO"]) == ("/api", "")
    # "/api" is a prefix of "/apiary" only as a string, not as a path.
    beside = fetch_environ(running.port, "/apiary/x")
    assert beside["PATH_INFO"] == "/apiary/x"


def test_server_and_remote_address(server: RunningServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/environ")
        environ = json.loads(connection.getresponse().read())
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
    finally:
        connection.close()
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"] == str(client_port)
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_server_protocol_is_the_request_version(server: RunningServer, version: str) -> None:
    request = f"GET /environ {version}\r\nHost: test\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode())
        received = b""
        while piece := sock.recv(65536):
            received += piece
    environ = json.loads(received.partition(b"\r\n\r\n")[2])
    assert environ["SERVER_PROTOCOL"] == version


def test_content_type_and_length_have_no_http_prefix(server: RunningServer) -> None:
    environ = fetch_environ(server.port, headers=[("Content-Type", "text/x-test")], body=b"abc")
    assert environ["CONTENT_TYPE"] == "text/x-test"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["body"] == "abc"


def test_repeated_headers_are_joined(server: RunningServer) -> None:
    environ = fetch_environ(
        server.port, headers=[("X-Repeated", "one"), ("X-Other", "x"), ("x-repeated", "two")]
    )
    assert environ["HTTP_X_REPEATED"] == "one, two"


def test_header_names_with_underscores_are_dropped(server: RunningServer) -> None:
    # Otherwise a client could forge X-Forwarded-For past a proxy that sets it.
    alone = fetch_environ(server.port, headers=[("X_Forwarded_For", "6.6.6.6")])
    assert "HTTP_X_FORWARDED_FOR" not in alone
    both = fetch_environ(
        server.port, headers=[("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "6.6.6.6")]
    )
    assert both["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert not any("6.6.6.6" in str(value) for value in both.values())


def test_fixed_wsgi_keys(server: RunningServer) -> None:
    environ = fetch_environ(server.port)
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.input_terminated"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.errors_is_stderr"] is True


def test_wsgi_errors_reaches_the_server_log(server: RunningServer) -> None:
    token = uuid.uuid4().hex
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", f"/log-error?{token}")
        assert connection.getresponse().read() == b"logged"
    finally:
        connection.close()
    assert server.wait_for_log(f"message for wsgi.errors: {token}")


def test_multithread_and_multiprocess_tell_the_truth(
    server: RunningServer, model_name: str
) -> None:
    expected = {
        "one-at-a-time": (False, False),
        "thread-pool": (True, False),
        "thread-per-request": (True, False),
        "process-per-request": (False, True),
        "gevent": (True, False),
        "workers-thread": (True, True),
    }[model_name]
    environ = fetch_environ(server.port)
    assert (environ["wsgi.multithread"], environ["wsgi.multiprocess"]) == expected
