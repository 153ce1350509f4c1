"""Applications that fail or misbehave: the client gets a safe answer, the log the detail.

After each failure the server must still serve a new connection normally.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from tests.server import RunningServer
from tests.wire import read_until_closed

TIMEOUT = 5.0


def exchange(port: int, path: str) -> bytes:
    """Everything the server sends for one keep-alive GET, up to the moment it closes.

    A server that kept the connection open would make this time out.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        return read_until_closed(sock, reset_ends=True)


def split_response(received: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


def assert_still_serving(server: RunningServer) -> None:
    response = requests.get(f"{server.url}/", timeout=TIMEOUT)
    assert (response.status_code, response.content) == (200, b"hello\n")


def test_exception_before_start_response_is_a_plain_500(server: RunningServer) -> None:
    received = exchange(server.port, "/raise-before-start")
    status, fields, _ = split_response(received)
    assert status == 500
    assert fields["connection"] == "close"
    assert b"SECRET-TRACEBACK-TEXT" not in received
    assert b"Traceback" not in received
    assert server.wait_for_log("RuntimeError: failure before start_response: SECRET-TRACEBACK")
    assert "Traceback (most recent call last)" in server.log
    assert_still_serving(server)


def test_exception_in_the_iterable_before_any_body_is_a_500(server: RunningServer) -> None:
    received = exchange(server.port, "/raise-in-iterable")
    assert split_response(received)[0] == 500
    assert b"failure before the first body byte" not in received
    assert server.wait_for_log("RuntimeError: failure before the first body byte")
    assert_still_serving(server)


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/raise-os-error", "FileNotFoundError"),
        ("/raise-type-error", "TypeError: can't concat int to bytes"),
    ],
)
def test_application_oserror_and_typeerror_are_app_failures(
    server: RunningServer, path: str, logged: str
) -> None:
    # Neither may pass for a client that went away (OSError) or for a body of the wrong
    # type (TypeError): each is the application's bug, so 500 and a traceback.
    received = exchange(server.port, path)
    assert split_response(received)[0] == 500
    assert server.wait_for_log(f"Error handling request GET {path}\nTraceback")
    assert server.wait_for_log(logged)
    assert_still_serving(server)


def test_exception_after_the_head_aborts_the_connection(server: RunningServer) -> None:
    received = exchange(server.port, "/raise-after-head")
    status, fields, body = split_response(received)
    assert status == 200
    assert fields["transfer-encoding"] == "chunked"
    # The first piece went out; the last chunk never does, so no client can mistake the
    # cut body for a whole one.
    assert body == b"a\r\nfirst part\r\n"
    assert server.wait_for_log("RuntimeError: failure after the head was sent")
    assert_still_serving(server)


@pytest.mark.parametrize(
    ("path", "never_sent"),
    [("/bad-header-value", b"stolen"), ("/bad-header-name", b"Bad Name")],
)
def test_invalid_header_is_never_sent(server: RunningServer, path: str, never_sent: bytes) -> None:
    received = exchange(server.port, path)
    assert split_response(received)[0] == 500
    assert never_sent not in received
    assert b"never sent" not in received
    assert server.wait_for_log(f"GET {path}: invalid ")
    assert_still_serving(server)


def test_body_longer_than_declared_is_cut_and_the_connection_closed(
    server: RunningServer,
) -> None:
    received = exchange(server.port, "/declared-longer")
    status, fields, body = split_response(received)
    assert (status, fields["content-length"], body) == (200, "10", b"0123456789")
    assert_still_serving(server)


def test_body_shorter_than_declared_closes_the_connection(server: RunningServer) -> None:
    received = exchange(server.port, "/declared-shorter")
    status, fields, body = split_response(received)
    assert (status, fields["content-length"], body) == (200, "100", b"only this")
    assert_still_serving(server)


def test_non_bytes_body_is_a_500_with_one_clear_log_line(server: RunningServer) -> None:
    received = exchange(server.port, "/not-bytes")
    status, _, body = split_response(received)
    assert status == 500
    assert b"a str, not bytes" not in body
    assert server.wait_for_log("GET /not-bytes: response body must be bytes, not str")
    assert_still_serving(server)


def test_access_log_records_the_status_sent(start_server: Callable[..., RunningServer]) -> None:
    # The app asked for 200 but failed before the head went out; the client got a 500
    # and so must the log say. Nothing here depends on the concurrency model.
    running = start_server(options=["--access-logfile", "-"])
    assert split_response(exchange(running.port, "/raise-in-iterable"))[0] == 500
    assert running.wait_for_log('"GET /raise-in-iterable HTTP/1.1" 500')
