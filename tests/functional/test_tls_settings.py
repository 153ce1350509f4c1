"""The TLS settings (gunicorn's names), their mistakes told in one line, the ssl_context
hook with SNI, client certificates, the handshake timeout, and HUP reading the
certificates again in a single process and under a master."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests.functional.test_master import is_gone, workers_of
from tests.server import ROOT, SINGLE_PROCESS_MODELS, RunningServer, wait_until
from tests.tls import (
    CertificateFiles,
    client_context,
    client_hello,
    https_connection,
    peer_serial,
    write_certificate,
)
from tests.wire import read_until_closed

APP = "tests.apps.behaviours:app"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certificate(authority: trustme.CA, tmp_path: Path) -> CertificateFiles:
    return write_certificate(authority, tmp_path / "tls")


def _get(port: int, ca: Path, path: str = "/") -> tuple[int, bytes]:
    connection = https_connection(port, ca)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# Mistakes in the TLS settings.


def _corral(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", *options, APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def _encrypted_key(files: CertificateFiles) -> Path:
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    path = files.key.with_name("encrypted.key")
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


def _mistakes(files: CertificateFiles, other: CertificateFiles) -> dict[str, tuple[list[str], str]]:
    """Options given wrong, and what the one line says."""
    not_pem = files.cert.with_name("notes.txt")
    not_pem.write_text("not a certificate\n")
    cert, key = str(files.cert), str(files.key)
    return {
        "missing key": (
            ["--certfile", cert, "--keyfile", "/nonexistent/key.pem"],
            "--keyfile: cannot read /nonexistent/key.pem: no such file",
        ),
        "directory as certificate": (
            ["--certfile", str(files.cert.parent)],
            f"--certfile: cannot read {files.cert.parent}: not a file",
        ),
        "not PEM": (["--certfile", str(not_pem), "--keyfile", key], f"--certfile {not_pem}"),
        "another certificate's key": (
            ["--certfile", cert, "--keyfile", str(other.key)],
            "the key is not the certificate's",
        ),
        "encrypted key": (
            ["--certfile", cert, "--keyfile", str(_encrypted_key(files))],
            "the key is encrypted",
        ),
        "key alone": (["--keyfile", key], "--keyfile needs --certfile"),
        "TLS 1.0": (
            ["--certfile", cert, "--keyfile", key, "--ssl-version", "TLSv1"],
            "TLS 1.0 and 1.1 are broken",
        ),
        "client certificates without authorities": (
            ["--certfile", cert, "--keyfile", key, "--cert-reqs", "required"],
            "give --ca-certs",
        ),
        "unknown ciphers": (
            ["--certfile", cert, "--keyfile", key, "--ciphers", "NO-SUCH-CIPHER"],
            "OpenSSL knows no cipher in that list",
        ),
    }


@pytest.mark.parametrize("processes", [[], ["-w", "2"]], ids=["single", "master"])
def test_each_mistake_is_one_line_and_a_non_zero_exit(
    authority: trustme.CA, tmp_path: Path, processes: list[str]
) -> None:
    files = write_certificate(authority, tmp_path / "tls")
    other = write_certificate(authority, tmp_path / "other")
    for name, (options, expected) in _mistakes(files, other).items():
        result = _corral(*processes, *options)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("corral: error: "), (name, lines)
        assert expected in lines[0], (name, lines)
        assert "Listening" not in result.stdout + result.stderr


def test_check_config_reads_the_certificate_and_key(authority: trustme.CA, tmp_path: Path) -> None:
    files = write_certificate(authority, tmp_path / "tls")
    other = write_certificate(authority, tmp_path / "other")
    good = _corral("--check-config", *files.options())
    assert (good.returncode, good.stdout) == (0, "corral: configuration OK\n"), good.stderr
    bad = _corral("--check-config", "--certfile", str(files.cert), "--keyfile", str(other.key))
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"corral: error: --certfile {files.cert} with --keyfile {other.key}: the key is not "
        "the certificate's"
    )


def test_gevent_workers_that_cannot_read_the_certificate_stop_the_master(
    certificate: CertificateFiles,
) -> None:
    """The gevent master checks the files exist without importing ssl (gevent must
    patch it first); the workers find them unusable and the master stops, saying why."""
    result = _corral(
        "-w", "2", "-k", "gevent", "--certfile", str(certificate.ca), "--keyfile",
        str(certificate.key),
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "Worker failed to boot: --certfile" in result.stderr
    assert "the key is not the certificate's" in result.stderr
    assert "Traceback" not in result.stderr


# What the settings do.


def test_client_certificates_are_required_when_asked(
    start_server: Callable[..., RunningServer], authority: trustme.CA, certificate: CertificateFiles
) -> None:
    options = [*certificate.options(), "--ca-certs", str(certificate.ca), "--cert-reqs", "2"]
    server = start_server(options=options)
    with_certificate = client_context(certificate.ca)
    authority.issue_cert("client@example.org").configure_cert(with_certificate)
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=with_certificate, timeout=10
    )
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"hello\n"
    connection.close()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        # TLS 1.3 tells the client of the refusal only after its side of the handshake.
        _get(server.port, certificate.ca)


def test_the_oldest_version_is_tls_1_2_unless_raised(
    start_server: Callable[..., RunningServer], certificate: CertificateFiles
) -> None:
    only_1_2 = client_context(certificate.ca)
    only_1_2.maximum_version = ssl.TLSVersion.TLSv1_2
    for options, accepted in (([], True), (["--ssl-version", "TLSv1.3"], False)):
        server = start_server(options=[*certificate.options(), *options])
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            if accepted:
                with only_1_2.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    assert tls.version() == "TLSv1.2"
            else:
                with pytest.raises(ssl.SSLError):
                    only_1_2.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.parametrize("model", ["one-at-a-time", "workers-gevent"])
def test_the_ssl_context_hook_picks_a_certificate_by_sni(
    start_server: Callable[..., RunningServer],
    authority: trustme.CA,
    tmp_path: Path,
    model: str,
) -> None:
    main = write_certificate(authority, tmp_path / "main")
    other = write_certificate(authority, tmp_path / "other", "other", "other.example")
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        f"certfile = {str(main.cert)!r}\n"
        f"keyfile = {str(main.key)!r}\n"
        "\n"
        "def ssl_context(conf, default_ssl_context_factory):\n"
        "    context = default_ssl_context_factory()\n"
        "    other = default_ssl_context_factory()\n"
        f"    other.load_cert_chain({str(other.cert)!r}, {str(other.key)!r})\n"
        "\n"
        "    def by_name(sock, name, _context):\n"
        "        if name == 'other.example':\n"
        "            sock.context = other\n"
        "\n"
        "    context.sni_callback = by_name\n"
        "    return context\n"
    )
    options = ["-w", "2", "-k", "gevent"] if model == "workers-gevent" else []
    server = start_server(options=["-c", str(config), *options])
    assert peer_serial(server.port, main.ca) == main.serial()
    assert peer_serial(server.port, main.ca, "other.example") == other.serial()


def test_a_stalled_handshake_is_closed_after_its_own_timeout(
    start_server: Callable[..., RunningServer], certificate: CertificateFiles
) -> None:
    options = [*certificate.options(), "--ssl-handshake-timeout", "1"]
    server = start_server(options=[*options, "--client-timeout", "60", "--keep-alive", "60"])
    established = https_connection(server.port, certificate.ca, timeout=30)
    try:
        established.request("GET", "/")
        assert established.getresponse().read() == b"hello\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as stalled:
            stalled.sendall(client_hello()[:40])
            # Closed long before --client-timeout's 60 seconds, or this would time out.
            assert read_until_closed(stalled, reset_ends=True) == b""
        # The handshake timeout is for handshakes: an established connection stays.
        established.request("GET", "/")
        assert established.getresponse().read() == b"hello\n"
    finally:
        established.close()


def test_a_plain_http_request_is_one_debug_line(
    start_server: Callable[..., RunningServer], certificate: CertificateFiles
) -> None:
    server = start_server(options=[*certificate.options(), "--log-level", "debug"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        port = sock.getsockname()[1]
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")
    assert wait_until(lambda: f"127.0.0.1:{port}:" in server.log), server.log
    lines = [line for line in server.lines if f":{port}" in line]
    assert len(lines) == 1 and "[DEBUG]" in lines[0], lines
    assert "plain HTTP request on the TLS port; answered 400" in lines[0]


@pytest.mark.parametrize("model", ["one-at-a-time", "gevent", "process-per-request"])
def test_a_proxy_protocol_header_comes_before_the_handshake(
    start_server: Callable[..., RunningServer], certificate: CertificateFiles, model: str
) -> None:
    """HAProxy's send-proxy to a TLS port: the header in the clear, then TLS."""
    options = [*SINGLE_PROCESS_MODELS[model], *certificate.options()]
    server = start_server(options=[*options, "--proxy-protocol", "--proxy-allow-from", "127.0.0.1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n")
        with client_context(certificate.ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = read_until_closed(tls)
    environ = json.loads(received.partition(b"\r\n\r\n")[2])
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("203.0.113.7", "51000")
    assert environ["wsgi.url_scheme"] == "https"


# HUP reads the certificates again.


@pytest.mark.parametrize("model", list(SINGLE_PROCESS_MODELS))
def test_hup_reads_a_replaced_certificate_in_a_single_process(
    start_server: Callable[..., RunningServer],
    authority: trustme.CA,
    certificate: CertificateFiles,
    model: str,
) -> None:
    server = start_server(options=[*SINGLE_PROCESS_MODELS[model], *certificate.options()])
    first = certificate.serial()
    assert peer_serial(server.port, certificate.ca) == first
    kept = https_connection(server.port, certificate.ca)
    try:
        kept.request("GET", "/")
        assert kept.getresponse().read() == b"hello\n"
        renewed = write_certificate(authority, certificate.cert.parent).serial()
        assert renewed != first
        server.process.send_signal(signal.SIGHUP)
        assert server.wait_for_log("TLS certificates reloaded"), server.log
        assert peer_serial(server.port, certificate.ca) == renewed
        # A connection opened before keeps its session.
        kept.request("GET", "/")
        assert kept.getresponse().read() == b"hello\n"
    finally:
        kept.close()
    # A broken file on the next HUP is told, and the certificate read last serves on.
    certificate.cert.write_text("truncated by a failed renewal\n")
    server.process.send_signal(signal.SIGHUP)
    assert server.wait_for_log("TLS certificates not reloaded: --certfile"), server.log
    assert peer_serial(server.port, certificate.ca) == renewed
    assert "Traceback" not in server.log


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_hup_reads_a_replaced_certificate_under_a_master(
    start_server: Callable[..., RunningServer],
    authority: trustme.CA,
    certificate: CertificateFiles,
    worker_class: str,
) -> None:
    options = ["-w", "2", "-k", worker_class, *certificate.options()]
    server = start_server(options=options)
    assert wait_until(lambda: server.log.count("Booted worker") >= 2, 15), server.log
    assert peer_serial(server.port, certificate.ca) == certificate.serial()
    old_workers = workers_of(server.process.pid)
    renewed = write_certificate(authority, certificate.cert.parent)
    server.process.send_signal(signal.SIGHUP)
    assert server.wait_for_log("Reload complete", 30), server.log
    # Only the new workers accept from here on.
    assert wait_until(lambda: all(is_gone(pid) for pid in old_workers), 30), server.log
    assert peer_serial(server.port, certificate.ca) == renewed.serial()
    assert _get(server.port, certificate.ca) == (200, b"hello\n")
