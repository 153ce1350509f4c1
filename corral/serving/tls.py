"""TLS: the server's `ssl.SSLContext` from gunicorn's settings and its `ssl_context` hook,
and the handshake, run as an opening step of each new connection.

The handshake never blocks the dispatcher's thread nor holds a worker: the dispatcher
calls `ServerTLS.open` each time a new connection turns readable, on its own thread (in
gevent's loop under -k gevent, where nothing may wait or switch), and each call does what
the bytes that have arrived allow, on a non-blocking socket. A client that stalls mid-way
costs a descriptor until --ssl-handshake-timeout closes it. Then the connection's
transport is a `TLSTransport` (`corral.serving.tls_transport`) and it is served as any
other.

Importing this module imports ssl: only a process that serves TLS does, after gevent has
patched it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from corral.config import Config, ConfigError
from corral.http.framing import encode_error
from corral.serving.connection import Connection
from corral.serving.tls_transport import TLSTransport
from corral.serving.transport import PlainTransport
from corral.wsgi.response import current_date

error_log = logging.getLogger("corral.error")

_MINIMUM_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# OpenSSL's reasons for a first record that is the start of a plain HTTP request (GET,
# POST, HEAD, PUT) or of a proxy's CONNECT: such a client gets a readable answer, as
# nginx gives one, instead of a connection closed for no reason it can see.
_PLAIN_HTTP_REASONS = frozenset({"HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})
_PLAIN_HTTP_REASON_PHRASE = "Plain HTTP Request Sent to HTTPS Port"
_DRAIN_SIZE = 65536


class TLSSetupError(ConfigError):
    """The TLS settings cannot make a context: a certificate or key that is not PEM, a
    key that is encrypted or does not match, an unknown cipher list, a hook that fails.
    The message names the setting."""


def build_context(config: Config) -> ssl.SSLContext:
    """The context to serve TLS with: the `ssl_context` hook's, called as gunicorn calls
    it (`ssl_context(conf, default_ssl_context_factory)`), else the default factory's.

    The default is `SSLContext(PROTOCOL_TLS_SERVER)` with --certfile/--keyfile loaded,
    --ssl-version as the oldest version, --cert-reqs and --ca-certs for client
    certificates and --ciphers; ALPN offers only "http/1.1" on every context, the hook's
    included, since that is all corral speaks. Raises `TLSSetupError` in one line.
    """

    def default_ssl_context_factory() -> ssl.SSLContext:
        return _default_context(config)

    hook = config.ssl_context
    if hook is None:
        context = default_ssl_context_factory()
    else:
        try:
            context = hook(config, default_ssl_context_factory)
        except TLSSetupError:
            raise
        except Exception as error:
            raise TLSSetupError(f"ssl_context hook failed: {_summary(error)}") from None
        if not isinstance(context, ssl.SSLContext):
            raise TLSSetupError(
                f"ssl_context hook returned {type(context).__name__}, not an ssl.SSLContext"
            )
    if context.verify_mode != ssl.CERT_NONE and not context.cert_store_stats()["x509_ca"]:
        raise TLSSetupError(
            "--cert-reqs asks for client certificates, but no certificate authority "
            "checks them: give --ca-certs"
        )
    context.set_alpn_protocols(["http/1.1"])
    return context


def _default_context(config: Config) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MINIMUM_VERSIONS[config.ssl_version]
    # Renegotiation started by a client costs the server a handshake for each request
    # of it (CVE-2011-1473); TLS 1.3 has none anyway.
    context.options |= ssl.OP_NO_RENEGOTIATION
    if config.certfile is not None:
        _load_certificate(context, config.certfile, config.keyfile)
    context.verify_mode = ssl.VerifyMode(config.cert_reqs)
    if config.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except (OSError, ValueError) as error:
            raise TLSSetupError(
                f"--ca-certs {config.ca_certs}: no PEM certificate in it ({_summary(error)})"
            ) from None
    if config.ciphers is not None:
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError:
            raise TLSSetupError(
                f"--ciphers {config.ciphers!r}: OpenSSL knows no cipher in that list"
            ) from None
    return context


def _load_certificate(context: ssl.SSLContext, certfile: str, keyfile: str | None) -> None:
    def refuse_encrypted_key() -> str:
        # Without a password callback OpenSSL would ask on the terminal and wait there.
        raise TLSSetupError(
            f"--keyfile {keyfile or certfile}: the key is encrypted; give an unencrypted "
            "key readable only by the server's user"
        )

    try:
        context.load_cert_chain(certfile, keyfile, password=refuse_encrypted_key)
    except TLSSetupError:
        raise
    except ssl.SSLError as error:
        named = f"--certfile {certfile}" + (f" with --keyfile {keyfile}" if keyfile else "")
        if "KEY_VALUES_MISMATCH" in str(error):
            reason = "the key is not the certificate's"
        elif keyfile is None:
            reason = "expected a PEM certificate and its private key (or give --keyfile)"
        else:
            reason = "expected a PEM certificate and a PEM private key"
        raise TLSSetupError(f"{named}: {reason} ({_summary(error)})") from None
    except OSError as error:
        raise TLSSetupError(f"--certfile {certfile}: {error.strerror or error}") from None


def _summary(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class ServerTLS:
    """The context new connections are wrapped with, and the opening step that performs
    their handshakes. `reload` builds a new context from the settings (HUP): connections
    already open keep their session, new ones get the new certificate."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.context = build_context(config)

    def reload(self) -> None:
        """Build the context again from the files as they are now; on `TLSSetupError` the
        current context stays."""
        self.context = build_context(self.config)

    def open(self, connection: Connection) -> bool:
        """The opening step (`corral.serving.connection.OpeningStep`): start or continue
        the handshake with what has arrived; True once it is done. Never waits.

        The socket is taken from the plain transport in place, whichever step ran before
        (a PROXY header read leaves the TLS bytes unread). A plain HTTP request is
        answered 400 before the connection closes. Raises OSError (ssl.SSLError) or
        ValueError for a client that is not speaking TLS or fails the handshake: the
        dispatcher logs that at debug level and closes the connection.
        """
        transport = connection.transport
        if not isinstance(transport, TLSTransport):
            if not isinstance(transport, PlainTransport):
                raise ValueError(f"TLS needs a socket transport, not {type(transport).__name__}")
            sock = transport.sock
            # gevent's sockets carry a timeout; this step runs inside gevent's loop,
            # where only a call that never waits is allowed.
            sock.setblocking(False)
            wrapped = self.context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
            transport = TLSTransport(wrapped, transport.peer, transport.timeout)
            connection.transport = transport
        try:
            transport.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            # Write-blocked only with a full socket buffer on the server's first flight,
            # a few KiB: the client's next bytes (or the handshake timeout) come first.
            return False
        except ssl.SSLError as error:
            if error.reason in _PLAIN_HTTP_REASONS:
                _answer_plain_http(transport.sock)
                raise ValueError("plain HTTP request on the TLS port; answered 400") from None
            raise
        transport.established = True
        return True


def _answer_plain_http(sock: ssl.SSLSocket) -> None:
    """Answer in plain text, then stop sending and drain what the client sent, so that
    the answer is read instead of lost to a reset (RFC 9112 section 9.6). Never waits:
    the socket is non-blocking and the answer a few hundred bytes."""
    answer = encode_error(400, _PLAIN_HTTP_REASON_PHRASE, "HTTP/1.1", current_date())
    fd = sock.fileno()
    with contextlib.suppress(OSError):
        # Below TLS: the client sent no handshake, so no record may wrap this.
        os.write(fd, answer)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(_DRAIN_SIZE):
            pass


def make_reload_trigger(
    server_tls: ServerTLS,
    watch: Callable[[int, Callable[[], None]], None],
    finished: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """A function that a signal handler may call (HUP in a single process) to have the
    certificates read again on the dispatcher's thread: `watch(fd, callback)` is the
    dispatcher's, calling back on that thread when the pipe made here turns readable.
    The outcome is logged: new certificates, or why the current ones stay. `finished`
    is called on that thread after each attempt, whatever its outcome."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)

    def reload_now() -> None:
        with contextlib.suppress(OSError):
            os.read(read_fd, 4096)
        try:
            server_tls.reload()
        except TLSSetupError as error:
            error_log.error("TLS certificates not reloaded: %s; the current ones serve on", error)
        else:
            error_log.info("TLS certificates reloaded: new connections get them")
        if finished is not None:
            finished()

    def trigger(*_: Any) -> None:
        with contextlib.suppress(OSError):
            # A full pipe means a reload is already due.
            os.write(write_fd, b"\0")

    watch(read_fd, reload_now)
    return trigger
