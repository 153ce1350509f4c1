"""Behind proxies: who may set the client's address, scheme and host, with forwarded
headers or a PROXY protocol header, under every concurrency model.

The server sees its clients at different loopback addresses: a client socket is bound to
one before it connects. 127.0.0.1 is trusted for forwarded headers, 127.0.0.4 for PROXY
protocol headers, 127.0.0.2 for neither, and 127.0.0.3 is where clients of a real HAProxy
(which connects from 127.0.0.4) come from.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.test_gunicorn_corpus import CORPUS, add_host, wire_bytes
from tests.haproxy import require_haproxy, running_haproxy
from tests.requirements import require
from tests.server import MODELS, RunningServer
from tests.wire import read_until_closed

TRUSTED_PROXY = "127.0.0.1"
STRANGER = "127.0.0.2"
HAPROXY_CLIENT = "127.0.0.3"
PROXY_SENDER = "127.0.0.4"
OPTIONS = [
    "--forwarded-allow-ips",
    TRUSTED_PROXY,
    "--proxy-protocol",
    "--proxy-allow-from",
    PROXY_SENDER,
    "--access-logfile",
    "-",
    "--keep-alive",
    "60",
]
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


def exchange(port: int, source: str, data: bytes, half_close: bool = False) -> bytes:
    """Send `data` from `source` and read everything until the server closes; with
    `half_close`, say that nothing follows, so that a keep-alive connection ends too."""
    with connect(port, source) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock, reset_ends=True)


def environ_from(
    port: int,
    source: str,
    headers: Sequence[tuple[str, str]] = (),
    preamble: bytes = b"",
    path: str = "/",
) -> dict[str, Any]:
    return environ_of(exchange(port, source, preamble + request(path, headers)))


def proxy_v1(source: str, source_port: int, family: str = "TCP4") -> bytes:
    destination = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {source_port} 8000\r\n".encode()


def proxy_v2(source: str, source_port: int, command: int = 0x21, tlvs: bytes = b"") -> bytes:
    """A TCP over IPv4 header, written from the specification's section 2.2."""
    block = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    block += struct.pack("!HH", source_port, 8000) + tlvs
    fixed = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([command, 0x11]) + struct.pack("!H", len(block))
    return fixed + block


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
    # The peer's own port stays beside its address.
    assert environ["REMOTE_PORT"].isdigit()
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


# PROXY protocol headers.


def test_an_allowed_proxy_names_the_client_in_the_environ_and_the_access_log(
    proxied: RunningServer,
) -> None:
    for preamble in (proxy_v1("203.0.113.7", 51000), proxy_v2("203.0.113.7", 51000)):
        path = f"/{uuid.uuid4().hex}"
        environ = environ_from(proxied.port, PROXY_SENDER, preamble=preamble, path=path)
        assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("203.0.113.7", "51000")
        assert proxied.wait_for_log(path)
        line = next(line for line in proxied.lines if path in line)
        assert line.startswith("203.0.113.7 - - ["), line


def test_an_ipv6_client_and_tlvs(proxied: RunningServer) -> None:
    preamble = proxy_v1("2001:db8::7", 1234, family="TCP6")
    environ = environ_from(proxied.port, PROXY_SENDER, preamble=preamble)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("2001:db8::7", "1234")
    tlvs = b"\x02\x00\x0bexample.com" + b"\x04\x00\x03abc"
    environ = environ_from(proxied.port, PROXY_SENDER, preamble=proxy_v2("192.0.2.5", 9, tlvs=tlvs))
    assert environ["REMOTE_ADDR"] == "192.0.2.5"


def test_every_request_of_the_connection_has_the_client_of_its_header(
    proxied: RunningServer,
) -> None:
    with connect(proxied.port, PROXY_SENDER) as sock:
        sock.sendall(proxy_v1("203.0.113.8", 4000) + request(close=False))
        first = sock.recv(65536)
        sock.sendall(request())
        second = read_until_closed(sock)
    assert environ_of(first)["REMOTE_ADDR"] == "203.0.113.8"
    assert environ_of(second)["REMOTE_ADDR"] == "203.0.113.8"


def test_local_keeps_the_proxys_own_address(proxied: RunningServer) -> None:
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    environ = environ_from(proxied.port, PROXY_SENDER, preamble=local)
    assert environ["REMOTE_ADDR"] == PROXY_SENDER
    unknown = environ_from(proxied.port, PROXY_SENDER, preamble=b"PROXY UNKNOWN\r\n")
    assert unknown["REMOTE_ADDR"] == PROXY_SENDER


def test_the_client_a_proxy_header_names_is_who_forwarded_headers_are_trusted_from(
    proxied: RunningServer,
) -> None:
    headers = [("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Proto", "https")]
    # The header names the trusted 127.0.0.1 as the client: its forwarded headers count.
    trusted = environ_from(proxied.port, PROXY_SENDER, headers, proxy_v1(TRUSTED_PROXY, 5))
    assert (trusted["REMOTE_ADDR"], trusted["wsgi.url_scheme"]) == ("198.51.100.9", "https")
    # It names an untrusted client: they do not, even though the proxy sent them.
    stranger = environ_from(proxied.port, PROXY_SENDER, headers, proxy_v1("203.0.113.7", 5))
    assert (stranger["REMOTE_ADDR"], stranger["wsgi.url_scheme"]) == ("203.0.113.7", "http")


@pytest.mark.parametrize("source", [STRANGER, TRUSTED_PROXY])
def test_a_proxy_header_from_a_peer_not_allowed_is_answered_400(
    proxied: RunningServer, source: str
) -> None:
    for preamble in (proxy_v1("203.0.113.7", 51000), proxy_v2("203.0.113.7", 51000)):
        answer = exchange(proxied.port, source, preamble + request())
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
        assert b"203.0.113.7" not in answer


@pytest.mark.parametrize(
    "data",
    [
        request(),
        b"PROXY TCP4 198.51.100.9 127.0.0.1 99999 8000\r\n" + request(),
        b"PROXY TCP4 198.51.100.9\n" + request(),
        b"\r\n\r\n\x00\r\nQUIT\n\x23\x11\x00\x0c" + bytes(12) + request(),
    ],
    ids=["no-header", "bad-port", "bare-lf", "bad-command"],
)
def test_an_allowed_proxy_without_a_valid_header_is_disconnected(
    proxied: RunningServer, data: bytes
) -> None:
    assert exchange(proxied.port, PROXY_SENDER, data) == b""


def test_the_gunicorn_corpus_proxy_protocol_files(proxied: RunningServer) -> None:
    require(CORPUS.is_dir(), f"the gunicorn request corpus is missing: expected it at {CORPUS}")
    for name in ("valid/pp_01.http", "valid/pp_02.http", "valid/pp_04.http", "valid/pp_05.http"):
        data = wire_bytes((CORPUS / name).read_bytes())
        if data.startswith(b"PROXY"):
            split = data.index(b"\r\n") + 2
        else:
            split = 16 + int.from_bytes(data[14:16], "big")
        # The requests without Host get one, as in the corpus replay.
        data = data[:split] + add_host(data[split:], every_request=True)
        answer = exchange(proxied.port, PROXY_SENDER, data, half_close=True)
        statuses = [
            line.split(b" ")[1] for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")
        ]
        assert statuses and all(status.startswith(b"2") for status in statuses), (name, answer)
    for name in ("invalid/pp_01.http", "invalid/pp_02.http", "invalid/pp_03.http"):
        data = wire_bytes((CORPUS / name).read_bytes())
        assert exchange(proxied.port, PROXY_SENDER, data + request()) == b"", name
    # gunicorn serves a connection without a header even with proxy_protocol on; corral
    # follows the specification and HAProxy's accept-proxy and disconnects it.
    data = wire_bytes((CORPUS / "valid/pp_03.http").read_bytes())
    assert exchange(proxied.port, PROXY_SENDER, data) == b""


# A real HAProxy in front.


@contextlib.contextmanager
def haproxy(
    tmp_path: Path,
    backend_port: int,
    mode: str,
    server_options: str,
    frontend: str = "",
    source: str = PROXY_SENDER,
) -> Iterator[int]:
    """HAProxy listening on a loopback port, forwarding to corral from `source`; yields
    the port. It is handed its listening socket already bound (`bind fd@N`), so clients
    can connect at once and the port is never let go and taken again."""
    require_haproxy()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        config = tmp_path / f"haproxy-{uuid.uuid4().hex}.cfg"
        config.write_text(
            textwrap.dedent(
                f"""\
                global
                    maxconn 100
                defaults
                    mode {mode}
                    timeout connect 5s
                    timeout client 10s
                    timeout server 10s
                frontend front
                    bind fd@{listener.fileno()}
                    {frontend}
                    default_backend back
                backend back
                    server s 127.0.0.1:{backend_port} {server_options} source {source}
                """
            )
        )
        with running_haproxy(config, listener):
            yield listener.getsockname()[1]


def through(port: int, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A request from 127.0.0.3 to HAProxy on `port`: the environ corral gave the app."""
    with connect(port, HAPROXY_CLIENT) as sock:
        sock.sendall(request(headers=headers))
        return environ_of(read_until_closed(sock, reset_ends=True))


@pytest.mark.parametrize(
    ("mode", "server_options", "frontend"),
    [
        ("tcp", "send-proxy", ""),
        ("tcp", "send-proxy-v2", ""),
        (
            "tcp",
            "send-proxy-v2 proxy-v2-options crc32c,unique-id",
            "unique-id-format %{+X}o%ci:%cp",
        ),
        ("http", "send-proxy-v2", ""),
    ],
    ids=["tcp-v1", "tcp-v2", "tcp-v2-crc32c-unique-id", "http-v2"],
)
def test_haproxy_sending_a_proxy_header(
    proxied: RunningServer, tmp_path: Path, mode: str, server_options: str, frontend: str
) -> None:
    with haproxy(tmp_path, proxied.port, mode, server_options, frontend) as port:
        environ = through(port, [("X-Forwarded-For", "198.51.100.9")])
        with connect(port, HAPROXY_CLIENT) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(request())
            second = environ_of(read_until_closed(sock, reset_ends=True))
    assert environ["REMOTE_ADDR"] == HAPROXY_CLIENT
    assert (second["REMOTE_ADDR"], second["REMOTE_PORT"]) == (HAPROXY_CLIENT, str(client_port))


def test_haproxy_sending_forwarded_headers(proxied: RunningServer, tmp_path: Path) -> None:
    frontend = "option forwardfor\n    http-request set-header X-Forwarded-Proto https"
    # HAProxy connects from 127.0.0.1 here, the proxy trusted for forwarded headers. The
    # client's own X-Forwarded-For is kept, and HAProxy adds the address it saw.
    with haproxy(tmp_path, proxied.port, "http", "", frontend, TRUSTED_PROXY) as port:
        forged = [("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Proto", "http")]
        environ = through(port, forged)
    assert environ["HTTP_X_FORWARDED_FOR"] == f"198.51.100.9, {HAPROXY_CLIENT}"
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == (HAPROXY_CLIENT, "https")
