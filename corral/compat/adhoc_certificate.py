"""`run_simple(ssl_context="adhoc")`: a throw-away self-signed certificate, as Werkzeug
makes one, for trying HTTPS locally. Browsers warn about it, as they should.

It is made with the `cryptography` package (`pip install 'corral[adhoc]'`), lives only
in memory and in files deleted as soon as the context has read them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile

MISSING_CRYPTOGRAPHY = (
    "ssl_context='adhoc' makes its certificate with the cryptography package, which is "
    "not installed: pip install 'corral[adhoc]'"
)
# Long enough for a development session, short enough that a copy left somewhere soon
# stops being trusted by anyone who accepted it.
_VALID_DAYS = 30


class CryptographyMissing(ImportError):
    """The cryptography package is not installed; the message says what to install."""


def make_adhoc_context() -> ssl.SSLContext:
    """A server context with a new P-256 key and a self-signed certificate for
    localhost, 127.0.0.1 and ::1 (Werkzeug's is for "*"; a name that clients can check
    is more use). Raises `CryptographyMissing` without the cryptography package."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise CryptographyMissing(MISSING_CRYPTOGRAPHY) from None

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "corral ad-hoc certificate"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads only files; these exist for as long as it takes.
    with tempfile.TemporaryDirectory(prefix="corral-adhoc-") as directory:
        path = os.path.join(directory, "adhoc.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(certificate_pem + key_pem)
        context.load_cert_chain(path)
    return context
