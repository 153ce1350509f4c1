"""The probe's requests: GET on a fresh connection each, alone or many at once.

Every failure (refused, unresolved, timed out, cut, not HTTP, an error status) becomes a
`ProbeFailure` with one line for the user; nothing here prints.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class ProbeFailure(Exception):
    """The server or the network failed the probe; the message is one line."""


class BadTarget(ValueError):
    """The URL cannot be probed; the message is one line."""


@dataclass(frozen=True)
class Target:
    """Where the probe sends its requests: `scheme` "http" or "https", `host`, `port`,
    `path` (with the query), `url` as given, and for https the `tls` context that checks
    the server's certificate against the system's (or `SSL_CERT_FILE`'s) authorities."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_url(cls, url: str) -> Target:
        """Parse an http:// or https:// URL; raises BadTarget for anything else."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise BadTarget(f"not a URL: {url!r} ({error})") from None
        if parts.scheme not in ("http", "https"):
            raise BadTarget(f"only http:// and https:// URLs can be probed, not {url!r}")
        if not parts.hostname:
            raise BadTarget(f"no host in {url!r}")
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        # Made once: loading the authorities takes milliseconds, which would be timed.
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        return cls(url, parts.scheme, parts.hostname, port, path, tls)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# Each request closes its connection: a server that keeps connections alive must not hold
# a thread or a process for the probe's finished ones.
_HEADERS = {"Connection": "close", "User-Agent": "corral-probe"}


def _connect(target: Target, timeout: float) -> socket.socket:
    """A TCP connection to `target`, nothing sent yet."""
    try:
        return socket.create_connection((target.host, target.port), timeout)
    except OSError as error:
        raise _failure(error, target, timeout) from None


def _exchange(sock: socket.socket, target: Target, timeout: float) -> float:
    """On a connected socket: the TLS handshake for https, then the GET and its whole
    answer. The seconds taken; closes the socket.

    The handshake is timed with the request, not done beforehand: a server that
    shakes hands on the thread or process that serves (gunicorn's sync workers) would
    leave the clients beyond its limit waiting for a handshake, and all of them waiting
    for each other."""
    connection: http.client.HTTPConnection
    started = time.perf_counter()
    try:
        if target.tls is not None:
            connection = http.client.HTTPSConnection(target.host, target.port, timeout=timeout)
            sock = target.tls.wrap_socket(sock, server_hostname=target.host)
        else:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        # An HTTPConnection given its socket sends on it instead of connecting.
        connection.sock = sock
        connection.request("GET", target.path, headers=_HEADERS)
        response = connection.getresponse()
        response.read()
        latency = time.perf_counter() - started
    except Exception as error:
        raise _failure(error, target, timeout) from None
    finally:
        sock.close()
    if response.status >= 400:
        raise ProbeFailure(
            f"GET {target.path} answered {response.status} {response.reason}: probe an "
            "endpoint that answers 2xx"
        )
    return latency


def _failure(error: BaseException, target: Target, timeout: float) -> ProbeFailure:
    """One line for what went wrong talking to `target`."""
    if isinstance(error, TimeoutError):
        return ProbeFailure(f"no answer from {target.address} within {timeout:g} s (--timeout)")
    if isinstance(error, socket.gaierror):
        return ProbeFailure(f"cannot find host {target.host!r}: {error.strerror}")
    if isinstance(error, ConnectionRefusedError):
        return ProbeFailure(f"cannot connect to {target.address}: connection refused")
    if isinstance(error, ssl.SSLError):
        return ProbeFailure(f"TLS with {target.address} failed: {error.reason or error}")
    if isinstance(error, http.client.RemoteDisconnected | ConnectionResetError):
        return ProbeFailure(f"{target.address} closed the connection without an answer")
    if isinstance(error, http.client.HTTPException):
        return ProbeFailure(f"{target.address} did not answer in HTTP: {error!r}")
    if isinstance(error, OSError):
        return ProbeFailure(f"talking to {target.address} failed: {error.strerror or error}")
    return ProbeFailure(f"talking to {target.address} failed: {error!r}")


def latency_alone(target: Target, timeout: float, count: int = 3) -> float:
    """The latency in seconds of the fastest of `count` requests sent one after another,
    after one more that warms the server up (its first request may import or connect
    lazily). The fastest, because noise on a busy machine only ever adds time. Raises
    ProbeFailure."""
    latencies = [_exchange(_connect(target, timeout), target, timeout) for _ in range(count + 1)]
    return min(latencies[1:])


def latencies_together(target: Target, clients: int, timeout: float) -> tuple[float, ...]:
    """Send `clients` requests at once, each on its own connection, from as many threads:
    every TCP connection is opened first, then all requests leave together behind a
    barrier.
    Each request's latency in seconds, from sending to the last byte of its answer, sorted.
    Raises ProbeFailure, saying how many failed and how the first did, if any did."""
    barrier = threading.Barrier(clients, timeout=timeout)
    latencies: list[float] = []
    failures: list[ProbeFailure] = []
    lock = threading.Lock()

    def send() -> None:
        try:
            sock = _connect(target, timeout)
        except ProbeFailure as failure:
            with lock:
                failures.append(failure)
            # The others would wait for this client in vain.
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            sock.close()
            return
        try:
            latency = _exchange(sock, target, timeout)
        except ProbeFailure as failure:
            with lock:
                failures.append(failure)
            return
        with lock:
            latencies.append(latency)

    threads = [threading.Thread(target=send, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise ProbeFailure(
            f"with {clients} at once, {len(failures)} of {clients} failed; the first: {failures[0]}"
        )
    if len(latencies) < clients:
        raise ProbeFailure(
            f"with {clients} at once, the connections were not all open within "
            f"{timeout:g} s (--timeout)"
        )
    return tuple(sorted(latencies))
