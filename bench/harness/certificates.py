"""A throwaway certificate for scenario T, written into the run's temporary folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from harness.processes import LOOPBACK


@dataclass(frozen=True)
class CertificateFiles:
    certificate: Path
    """PEM: the server's certificate alone (its issuer is a root, which clients hold)."""
    key: Path
    """PEM, PKCS#8 unencrypted: granian reads no other key format."""


def write_certificate(directory: Path) -> CertificateFiles:
    """Issues a certificate for 127.0.0.1 and localhost from a fresh trustme CA.

    trustme writes EC keys in the traditional OpenSSL form ("BEGIN EC PRIVATE KEY");
    the key is written again as PKCS#8, which corral, gunicorn and granian all read.
    wrk does not verify certificates, so the CA is never installed anywhere.
    """
    authority = trustme.CA()
    leaf = authority.issue_cert(LOOPBACK, "localhost")
    private_key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    files = CertificateFiles(certificate=directory / "server.pem", key=directory / "server.key")
    files.certificate.write_bytes(leaf.cert_chain_pems[0].bytes())
    files.key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files
