"""Behind proxies: who may set the client's address, scheme and host with forwarded
headers, under every concurrency model.

The server sees its clients at different loopback addresses: a client socket is bound to
one before it connects. 127.0.0.1 is trusted for forwarded headers, 127.0.0.2 is not.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.server import MODELS, RunningServer
from tests.wire import read_until_closed

TRUSTED_PROXY = "127.0.0.1"
STRANGER = "127.0.0.2"
OPTIONS = ["--forwarded-allow-ips", TRUSTED_PROXY, "--keep-alive", "60"]
TIMEOUT = 10.0

FORGED = (
    ("X-Forwarded-For", "198.51.100.9"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Host", "forged.example"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/forged"),
    ("Forwarded", 'for=198.51.100.9;proto=https;host="forged.example"'),
)


@pytest.fixture(scope="module")
def proxied(model_name: str) -> Iterator[RunningServer]:
    with RunningServer(options=[*MODELS[model_name], *OPTIONS]) as running:
        yield running


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def request(path: str = "/", headers: Sequence[tuple[str, str]] = (), close: bool = True) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: backend:8000", "X-Show-Environ: 1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def environ_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    environ: dict[str, Any] = json.loads(body)
    return environ


def exchange(port: int, source: str, data: bytes) -> bytes:
    """Send `data` from `source` and read everything until the server closes."""
    with connect(port, source) as sock:
        sock.sendall(data)
        return read_until_closed(sock, reset_ends=True)


def environ_from(
    port: int,
    source: str,
    headers: Sequence[tuple[str, str]] = (),
    preamble: bytes = b"",
    path: str = "/",
) -> dict[str, Any]:
    return environ_of(exchange(port, source, preamble + request(path, headers)))


def seen(environ: dict[str, Any]) -> tuple[Any, ...]:
    return (
        environ["REMOTE_ADDR"],
        environ["wsgi.url_scheme"],
        environ["HTTP_HOST"],
        environ["SERVER_NAME"],
        environ["SERVER_PORT"],
        environ["SCRIPT_NAME"],
    )


# Forwarded headers.


def test_an_untrusted_client_cannot_change_address_scheme_or_host(proxied: RunningServer) -> None:
    alone = environ_from(proxied.port, STRANGER)
    for header in FORGED:
        environ = environ_from(proxied.port, STRANGER, [header])
        assert seen(environ) == seen(alone), header
    environ = environ_from(proxied.port, STRANGER, FORGED)
    assert seen(environ) == (STRANGER, "http", "backend:8000", "127.0.0.1", str(proxied.port), "")
    assert environ["REMOTE_PORT"] == alone["REMOTE_PORT"] or environ["REMOTE_PORT"].isdigit()
    # The headers reach the application as sent.
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.9"


def test_a_trusted_proxy_sets_address_scheme_host_port_and_prefix(proxied: RunningServer) -> None:
    headers = [
        ("X-Forwarded-For", "6.6.6.6, 198.51.100.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "example.com"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Prefix", "/app/"),
    ]
    environ = environ_from(proxied.port, TRUSTED_PROXY, headers, path="/app/page")
    assert seen(environ) == (
        "198.51.100.9",
        "https",
        "example.com:8443",
        "example.com",
        "8443",
        "/app",
    )
    assert "REMOTE_PORT" not in environ
    assert environ["PATH_INFO"] == "/app/page"


def test_a_trusted_proxy_speaking_rfc_7239(proxied: RunningServer) -> None:
    header = ("Forwarded", 'for="[2001:db8::9]:4711";proto=https;host=example.com')
    environ = environ_from(proxied.port, TRUSTED_PROXY, [header])
    assert seen(environ)[:4] == ("2001:db8::9", "https", "example.com", "example.com")
    assert environ["REMOTE_PORT"] == "4711"


def test_conflicting_or_malformed_values_are_ignored_not_refused(proxied: RunningServer) -> None:
    alone = environ_from(proxied.port, TRUSTED_PROXY)
    conflicting = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")]
    assert seen(environ_from(proxied.port, TRUSTED_PROXY, conflicting)) == seen(alone)
    disagreeing = [("X-Forwarded-For", "198.51.100.9"), ("Forwarded", "for=198.51.100.7")]
    assert seen(environ_from(proxied.port, TRUSTED_PROXY, disagreeing)) == seen(alone)
    malformed = [
        ("X-Forwarded-For", "not-an-address"),
        ("X-Forwarded-Host", "bad/host"),
        ("X-Forwarded-Port", "99999"),
        ("X-Forwarded-Prefix", "no-slash"),
        ("Forwarded", 'for="unterminated'),
    ]
    for header in malformed:
        assert seen(environ_from(proxied.port, TRUSTED_PROXY, [header])) == seen(alone), header
