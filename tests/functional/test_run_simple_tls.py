"""corral.run_simple's ssl_context takes what Werkzeug's takes: an ssl.SSLContext, a
(certfile, keyfile) pair and "adhoc"."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.server import ROOT, listening_port, listening_scheme, wait_until
from tests.tls import CertificateFiles, client_context, write_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return write_certificate(trustme.CA(), tmp_path_factory.mktemp("tls"))


class RunSimple:
    """`python -m tests.apps.run_simple_tls ARGUMENTS`, its standard error in a file."""

    def __init__(self, log: Path, *arguments: str) -> None:
        self.log = log
        with log.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.apps.run_simple_tls", *arguments],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )

    def text(self) -> str:
        return self.log.read_text()

    def port(self) -> int:
        wait_until(lambda: listening_port(self.text()) is not None or self.ended(), 15)
        port = listening_port(self.text())
        assert port is not None, self.text()
        assert listening_scheme(self.text()) == "https", self.text()
        return port

    def ended(self) -> bool:
        return self.process.poll() is not None

    def stop(self) -> int:
        if not self.ended():
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


@pytest.fixture
def run_simple(tmp_path: Path) -> Iterator[type[RunSimple]]:
    started: list[RunSimple] = []

    class Started(RunSimple):
        def __init__(self, *arguments: str) -> None:
            super().__init__(tmp_path / f"run_simple{len(started)}.log", *arguments)
            started.append(self)

    yield Started  # type: ignore[misc]
    for each in started:
        each.stop()


def _environ(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> dict[str, object]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while piece := tls.recv(65536):
            received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    environ: dict[str, object] = json.loads(body)
    return environ


@pytest.mark.parametrize(
    "keywords", [[], ["workers=2"], ["processes=2"]], ids=["threaded", "workers", "processes"]
)
@pytest.mark.parametrize("form", ["context", "pair"])
def test_a_context_or_a_pair_of_files_serves_https(
    run_simple: type[RunSimple], certificate: CertificateFiles, form: str, keywords: list[str]
) -> None:
    server = run_simple(form, str(certificate.cert), str(certificate.key), *keywords)
    environ = _environ(server.port(), client_context(certificate.ca))
    assert environ["wsgi.url_scheme"] == "https"
    assert server.stop() == 0


def test_adhoc_makes_a_self_signed_certificate_for_localhost(run_simple: type[RunSimple]) -> None:
    server = run_simple("adhoc")
    port = server.port()
    shown = ssl.get_server_certificate(("127.0.0.1", port))
    # Trusting the certificate itself verifies it: self-signed, for localhost.
    trusting_it = ssl.create_default_context(cadata=shown)
    assert _environ(port, trusting_it, "localhost")["wsgi.url_scheme"] == "https"
    with pytest.raises(ssl.SSLCertVerificationError):
        _environ(port, ssl.create_default_context(), "localhost")
    assert server.stop() == 0


def test_adhoc_without_cryptography_is_one_line_and_status_1(
    run_simple: type[RunSimple],
) -> None:
    server = run_simple("adhoc-without-cryptography")
    assert server.process.wait(15) == 1
    assert server.text().splitlines() == [
        "corral: error: ssl_context='adhoc' makes its certificate with the cryptography "
        "package, which is not installed: pip install 'corral[adhoc]'"
    ]


def test_files_that_make_no_context_are_one_line_and_status_1(
    run_simple: type[RunSimple], certificate: CertificateFiles
) -> None:
    server = run_simple("pair", str(certificate.ca), str(certificate.key))
    assert server.process.wait(15) == 1
    lines = server.text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"corral: error: --certfile {certificate.ca} with --keyfile")
