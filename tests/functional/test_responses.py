"""The PEP 3333 response side: write(), exc_info, close() and wsgi.file_wrapper."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid

import requests

from tests.server import RunningServer

TIMEOUT = 5.0
# Where /close-called records each call of its iterable's close().
CLOSE_LOG = os.path.join(tempfile.gettempdir(), "corral-close-calls")


def close_logged(query: str, timeout: float = 5.0) -> bool:
    """Whether /close-called?QUERY has recorded its close() call, polled up to `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(CLOSE_LOG) as log:
                if any(line.split()[2:] == [query] for line in log):
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return False


def test_write_callable_sends_before_the_returned_body(server: RunningServer) -> None:
    response = requests.get(f"{server.url}/write", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == b"written then returned"


def test_start_response_with_exc_info_replaces_the_status(server: RunningServer) -> None:
    response = requests.get(f"{server.url}/exc-info", timeout=TIMEOUT)
    assert response.status_code == 503
    assert response.content == b"replaced"


def test_close_is_called_after_the_body(server: RunningServer) -> None:
    query = f"ok-{uuid.uuid4().hex}"
    response = requests.get(f"{server.url}/close-called?{query}", timeout=TIMEOUT)
    assert response.content == b"body"
    assert close_logged(query)


def test_close_is_called_on_a_list_that_has_one(server: RunningServer) -> None:
    query = f"list-{uuid.uuid4().hex}"
    response = requests.get(f"{server.url}/close-called?{query}", timeout=TIMEOUT)
    assert response.content == b"body"
    assert close_logged(query)


def test_close_is_called_when_the_iterable_fails(server: RunningServer) -> None:
    query = f"fail-{uuid.uuid4().hex}"
    request = f"GET /close-called?{query} HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode())
        received = b""
        while piece := sock.recv(65536):
            received += piece
    assert b"\r\n\r\n4\r\nbody\r\n" in received
    assert close_logged(query)


def test_file_wrapper_sends_the_whole_file(server: RunningServer) -> None:
    response = requests.get(f"{server.url}/file", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "1000000"
    assert response.content == b"0123456789" * 100_000


def test_file_wrapper_response_leaves_the_connection_usable(server: RunningServer) -> None:
    with requests.Session() as session:
        first = session.get(f"{server.url}/file", timeout=TIMEOUT)
        second = session.get(f"{server.url}/", timeout=TIMEOUT)
    assert len(first.content) == 1_000_000
    assert second.content == b"hello\n"
