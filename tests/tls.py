"""Certificates made at test time (trustme) and TLS clients for the HTTPS tests."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509


@dataclass(frozen=True)
class CertificateFiles:
    """A server certificate for 127.0.0.1 and localhost, its key, and the authority
    that signed it, as PEM files."""

    cert: Path
    key: Path
    ca: Path

    def options(self) -> list[str]:
        return ["--certfile", str(self.cert), "--keyfile", str(self.key)]

    def serial(self) -> int:
        return x509.load_pem_x509_certificate(self.cert.read_bytes()).serial_number


def write_certificate(
    authority: trustme.CA, directory: Path, name: str = "server", *hosts: str
) -> CertificateFiles:
    """A new certificate from `authority`, in `directory` as NAME.pem, NAME.key and
    NAME-ca.pem; for 127.0.0.1 and localhost unless `hosts` are given."""
    directory.mkdir(parents=True, exist_ok=True)
    issued = authority.issue_cert(*(hosts or ("127.0.0.1", "localhost")))
    files = CertificateFiles(
        directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}-ca.pem"
    )
    # Replaced whole, by rename, as a certificate renewal tool does.
    for path, pem in (
        (files.cert, b"".join(blob.bytes() for blob in issued.cert_chain_pems)),
        (files.key, issued.private_key_pem.bytes()),
        (files.ca, authority.cert_pem.bytes()),
    ):
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(pem)
        os.replace(temporary, path)
    return files


def client_context(ca: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context trusting only `ca`, checking the host name as browsers do."""
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def https_connection(
    port: int, ca: Path, timeout: float = 10, alpn: list[str] | None = None
) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        "127.0.0.1", port, context=client_context(ca, alpn), timeout=timeout
    )


def peer_serial(port: int, ca: Path, server_hostname: str = "127.0.0.1") -> int:
    """The serial number of the certificate a new TLS connection is shown."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context(ca).wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def client_hello() -> bytes:
    """The first flight of a real TLS client (its ClientHello), as bytes to send by hand."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        # The client waits for the server's answer: the hello is all it has to send.
        client.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", "a TLS handshake record"
    return hello
