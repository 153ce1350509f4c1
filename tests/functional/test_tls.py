"""HTTPS served by corral itself, under every concurrency model: curl, Python's ssl
client and requests; keep-alive, request bodies and file responses over TLS; a plain HTTP
request to the TLS port; and handshakes left stalled by 200 clients while an established
connection is served."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

from tests.apps.behaviours import big_body
from tests.requirements import require
from tests.server import ALL_MODELS, RunningServer, wait_until
from tests.tls import (
    CertificateFiles,
    client_context,
    client_hello,
    https_connection,
    write_certificate,
)
from tests.wire import read_until_closed

STALLED = 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return write_certificate(trustme.CA(), tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=list(ALL_MODELS), ids=list(ALL_MODELS))
def server(
    request: pytest.FixtureRequest, certificate: CertificateFiles
) -> Iterator[RunningServer]:
    options = [*ALL_MODELS[request.param], *certificate.options()]
    with RunningServer(options=options) as running:
        yield running


def test_the_start_up_line_says_https(server: RunningServer) -> None:
    assert f"Listening at https://127.0.0.1:{server.port}" in server.log
    assert server.url.startswith("https://")


def test_curl_with_the_authority_gets_answers_on_one_connection(
    server: RunningServer, certificate: CertificateFiles
) -> None:
    curl = shutil.which("curl")
    require(curl is not None, "curl is not installed")
    assert curl is not None
    result = subprocess.run(
        [
            *(curl, "-sS", "--cacert", str(certificate.ca), "-w", " connects=%{num_connects}\n"),
            *(f"{server.url}/", "--data-binary", "sent by curl", f"{server.url}/echo"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    # The second request reused the first one's connection: keep-alive over TLS.
    assert result.stdout == "hello\n connects=1\nsent by curl connects=0\n"


def test_python_ssl_client_keep_alive_body_and_alpn(
    server: RunningServer, certificate: CertificateFiles
) -> None:
    connection = https_connection(server.port, certificate.ca, alpn=["h2", "http/1.1"])
    try:
        connection.request("GET", "/environ")
        response = connection.getresponse()
        environ = json.loads(response.read())
        assert response.status == 200
        assert environ["wsgi.url_scheme"] == "https"
        assert environ["SERVER_PORT"] == str(server.port)
        sock = connection.sock
        assert sock.selected_alpn_protocol() == "http/1.1"
        body = os.urandom(300_000)
        for _ in range(2):
            connection.request("POST", "/echo", body=body)
            response = connection.getresponse()
            assert response.status == 200
            assert response.read() == body
        # http.client opens a new socket when the server closed the last one.
        assert connection.sock is sock
    finally:
        connection.close()


def test_requests_gets_a_file_response_whole(
    server: RunningServer, certificate: CertificateFiles
) -> None:
    # Given with each request: requests prefers REQUESTS_CA_BUNDLE to a session's own.
    verify = str(certificate.ca)
    with requests.Session() as session:
        for _ in range(2):
            response = session.get(f"{server.url}/file", timeout=30, verify=verify)
            assert response.status_code == 200
            assert response.content == b"0123456789" * 100_000
        response = session.get(f"{server.url}/stream", timeout=30, verify=verify)
        assert response.text == "".join(f"part {number}\n" for number in range(5))


def test_a_request_decrypted_with_the_end_of_a_body_is_served_at_once(
    server: RunningServer, certificate: CertificateFiles
) -> None:
    """The next request shares a TLS record with the end of the previous body: reading
    the body decrypts it too, so it waits in the TLS layer, where no readiness set sees
    it, and is served all the same."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        client_context(certificate.ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
        tls.sendall(b"abcGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = read_until_closed(tls)
    first, second = received.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\nabc")
    assert second.endswith(b"\r\n\r\nhello\n")


def test_a_large_response_reaches_a_client_with_a_small_window_whole(
    server: RunningServer, certificate: CertificateFiles
) -> None:
    """The server's writes keep meeting a full socket: each TLS record it began must be
    finished before the next, through the outbox and the waiting thread alike."""
    with socket.socket() as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(30)
        raw.connect(("127.0.0.1", server.port))
        with client_context(certificate.ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            for kib in (4096, 300):
                tls.sendall(f"GET /big?kib={kib} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    head += tls.recv(1)
                body = bytearray()
                while len(body) < kib * 1024:
                    body += tls.recv(65536)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert body == big_body(kib)


def test_a_plain_http_request_is_answered_400_and_closed(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 Plain HTTP Request Sent to HTTPS Port\r\n")
    assert b"\r\nConnection: close\r\n" in answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # Neither TLS nor HTTP: closed without a word.
        sock.sendall(b"\x00" * 64)
        assert read_until_closed(sock, reset_ends=True) == b""
    assert "Traceback" not in server.log
    assert "[ERROR]" not in server.log and "[WARNING]" not in server.log


def _descriptors(pid: int) -> int:
    """Open descriptors of a process and its children (worker processes)."""
    total = 0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for each in [pid, *map(int, children.read_text().split())]:
        try:
            total += len(os.listdir(f"/proc/{each}/fd"))
        except OSError:
            continue
    return total


def test_stalled_handshakes_do_not_hold_an_established_connection(
    server: RunningServer, certificate: CertificateFiles
) -> None:
    connection = https_connection(server.port, certificate.ca)
    stalled: list[socket.socket] = []
    try:
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"hello\n"
        before = _descriptors(server.process.pid)
        hello = client_hello()
        for number in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            stalled.append(sock)
            if number % 2:
                # Half a ClientHello: the server reads it and waits for the rest.
                sock.sendall(hello[: len(hello) // 2])
        # The server has taken every one of them from the listen queue.
        assert wait_until(lambda: _descriptors(server.process.pid) >= before + STALLED, 30), (
            server.log
        )
        connection.request("GET", "/")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"hello\n")
        for sock in stalled:
            # Still open, mid-handshake, while the request was answered.
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1, socket.MSG_PEEK)
    finally:
        connection.close()
        for sock in stalled:
            sock.close()
