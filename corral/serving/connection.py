"""Serves one client connection: recv -> parser -> WSGI app -> framing -> send.

Every concurrency model runs this same code; they differ only in who calls `serve()`
and when. `serve()` handles the requests whose bytes have arrived and returns as soon as
the connection has nothing complete to work on, so an idle keep-alive connection holds
no thread or process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from corral.http.errors import IncompleteBody, RequestError
from corral.http.framing import CONTINUE_RESPONSE, InvalidResponse, encode_error
from corral.http.parser import (
    HeadLimits,
    HeadScanner,
    RequestHead,
    body_decoder,
    parse_request_line_only,
)
from corral.serving.access_log import AccessLog
from corral.serving.request_observer import RequestObserver, RequestRecord
from corral.wsgi.environ import build_environ
from corral.wsgi.input import RequestBody
from corral.wsgi.response import Response, WSGIApp, current_date, run_application

error_log = logging.getLogger("corral.error")

# Measured: a 256 KiB receive buffer, allocated afresh on every recv, cost 15 µs per
# request (a fresh mapping each time); 64 KiB costs nothing extra. Large bodies bypass
# this buffer (`receive_unframed`).
_RECEIVE_SIZE = 65536
# Responses ending in more than this are sent at once: holding them saves nothing.
_HOLD_LIMIT = 16384


class ClientSocketError(ConnectionError):
    """A read or write on the client's socket failed: reset, broken pipe or timeout.

    An OSError, so an application that catches OSError around `write()` keeps working,
    yet a type of its own, so the application's own OSErrors still count as its failures.
    """


@dataclass(eq=False)
class ServingState:
    """What every connection of one server shares. `stopping` flips once, on shutdown."""

    app: WSGIApp
    limits: HeadLimits
    base_environ: dict[str, Any]
    client_timeout: float
    # Also among `observers`; named here for USR1's reopen and for the requests corral
    # refuses itself, which no other observer is told of.
    access_log: AccessLog | None
    observers: tuple[RequestObserver, ...] = ()
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Connection:
    """One accepted socket and the bytes received on it but not yet consumed."""

    __slots__ = (
        "buffer",
        "busy",
        "closed",
        "fd",
        "fresh",
        "held",
        "idle_since",
        "on_close",
        "peer",
        "request",
        "request_started",
        "scanner",
        "sock",
        "state",
    )

    def __init__(self, sock: socket.socket, peer: Any, state: ServingState) -> None:
        self.sock = sock
        self.peer = peer
        self.state = state
        self.fd = sock.fileno()
        self.buffer = bytearray()
        self.scanner = HeadScanner(state.limits)
        self.busy = False
        # Accepted, its first request not yet handed to the model (see Dispatcher).
        self.fresh = False
        self.closed = False
        self.idle_since = time.monotonic()
        self.on_close: Any = None
        # The last bytes of responses already complete, not sent yet: see `send_last`.
        self.held: bytes | None = None
        # The request being served and when it began, for the log of a stop that cuts it.
        self.request: RequestHead | None = None
        self.request_started = 0.0

    def restore(self, received: bytes) -> None:
        """Take back bytes received by another process serving this connection (the start
        of a next request, not complete yet), to be parsed when the rest arrives."""
        self.buffer = bytearray(received)
        self.scanner = HeadScanner(self.state.limits)

    # I/O used by the request body and the response.

    def receive(self) -> None:
        self.buffer += self.receive_unframed(_RECEIVE_SIZE)

    def receive_unframed(self, size: int) -> bytes:
        """Up to `size` body bytes straight from the socket, when no framing lies between."""
        if self.held is not None:
            # The client may wait for the earlier response before sending more.
            self.flush()
        sock = self.sock
        try:
            while True:
                try:
                    data = sock.recv(size)
                    break
                except BlockingIOError:
                    _wait(sock, select.POLLIN, self.state.client_timeout)
        except OSError as error:
            raise ClientSocketError(f"receiving the request body: {error}") from error
        if not data:
            raise IncompleteBody("peer closed the connection inside a request body")
        return data

    def send(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            data = held + data
        try:
            self._send_all(data)
        except OSError as error:
            raise ClientSocketError(f"sending: {error}") from error

    def _send_all(self, data: bytes) -> None:
        """sendall() for a non-blocking socket. CPython's own, on a socket with a timeout,
        polls before every send: a system call more per response."""
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        rest = memoryview(data)[sent:]
        while rest:
            try:
                sent = sock.send(rest)
            except BlockingIOError:
                _wait(sock, select.POLLOUT, self.state.client_timeout)
                continue
            rest = rest[sent:]

    def send_last(self, data: bytes) -> None:
        """Send the bytes that complete a response, or hold them while the client's next
        request has already arrived on this connection.

        Pipelined responses then go out in one send when the last of them is done
        (`serve` flushes before it returns). A response is never held across a request
        of another connection: its bytes leave as soon as its own app call has ended.
        """
        if not self.buffer or len(data) > _HOLD_LIMIT:
            self.send(data)
        elif self.held is None:
            self.held = data
        else:
            self.held += data

    def flush(self) -> None:
        """Send held bytes now; a client gone meanwhile closes the connection."""
        held = self.held
        if held is None:
            return
        self.held = None
        try:
            self._send_all(held)
        except OSError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        if self.held is not None:
            self.send(b"")
        sent = 0
        sock = self.sock
        while sent < count:
            try:
                # The socket is non-blocking (or, under gevent, non-blocking underneath).
                n = os.sendfile(sock.fileno(), fd, offset + sent, min(count - sent, 1 << 30))
            except BlockingIOError:
                try:
                    _wait(sock, select.POLLOUT, self.state.client_timeout)
                except TimeoutError as error:
                    raise ClientSocketError(str(error)) from error
                continue
            except OSError as error:
                if error.errno in (errno.EPIPE, errno.ECONNRESET):
                    raise ClientSocketError(f"sending a file: {error}") from error
                # Anything else is about the file, which the application gave us.
                raise
            if n == 0:
                # The application's file shrank after its length was announced; the
                # response cannot be completed, so the connection must end.
                raise InvalidResponse("file ended before its announced length")
            sent += n

    # The request loop.

    def serve(self) -> bool:
        """Serve every complete request that has arrived; False once the connection is closed."""
        try:
            data = self.sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self.close()
            return False
        if not data:
            self.close()
            return False
        self.buffer += data
        try:
            while True:
                try:
                    parsed = self.scanner.parse(self.buffer)
                except RequestError as error:
                    self._refuse_head(error)
                    return False
                if parsed is None:
                    if self.held is not None:
                        self.flush()
                        return not self.closed
                    return True
                head, size = parsed
                del self.buffer[:size]
                # While draining, a response sent with keep-alive leaves the connection
                # open: the next request gets "Connection: close" (RFC 9112 section 9.6).
                if not self._serve_request(head):
                    self.close()
                    return False
                self.request = None
                if not self.buffer:
                    if self.held is not None:
                        self.flush()
                        return not self.closed
                    return True
        except OSError as error:
            # Resets, broken pipes and timeouts: the peer is gone or too slow.
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()
            return False

    def _serve_request(self, head: RequestHead) -> bool:
        """Run the app for one request; True if the connection may carry another."""
        state = self.state
        self.request = head
        self.request_started = started = time.monotonic()
        decoder = body_decoder(head, state.limits)
        before_first_read = None
        if head.expect_continue and not decoder.done and not self.buffer:
            before_first_read = self._send_continue
        body = RequestBody(self, decoder, before_first_read)
        environ = build_environ(head, body, state.base_environ, self.peer)
        response = Response(self, head, body, state.stopping)
        observers = state.observers
        if observers:
            tokens = [observer.started(head, environ) for observer in observers]
        try:
            run_application(state.app, environ, response)
        except RequestError as error:
            # The body the app was reading turned out malformed, or the peer left.
            if isinstance(error, IncompleteBody):
                error_log.debug("%s: %s", self.peer_text(), error)
                return False
            if not response.head_sent:
                response.code = error.status
                self._answer_error(error, head.version)
            return False
        except ClientSocketError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            return False
        except Exception as error:
            self._answer_app_failure(head, response, error)
            return False
        finally:
            if observers:
                record = RequestRecord(
                    response.code,
                    response.status_text(),
                    response.header_list(),
                    response.bytes_sent,
                    head,
                    self.peer,
                )
                seconds = time.monotonic() - started
                for observer, token in zip(observers, tokens, strict=True):
                    observer.finished(token, record, seconds)
        if not response.keep_alive:
            return False
        if not decoder.done:
            try:
                return body.discard()
            except RequestError as error:
                # The response has gone out whole; the unread rest of the body is bad
                # or cut short, so the connection cannot carry another request.
                error_log.info("%s: unread request body: %s; closing", self.peer_text(), error)
                return False
        return True

    def _send_continue(self) -> None:
        self.send(CONTINUE_RESPONSE)

    def _answer_app_failure(self, head: RequestHead, response: Response, error: Exception) -> None:
        request_line = f"{head.method} {head.target}"
        # The application's misuse of the response is told in one line; a traceback
        # would point into the server, not at the application's code.
        if isinstance(error, InvalidResponse) and not response.head_sent:
            error_log.error("%s: %s: %s", self.peer_text(), request_line, error)
        else:
            error_log.exception("Error handling request %s", request_line)
        if response.head_sent:
            # Part of the response is on the wire; closing without the rest tells the
            # client it is incomplete, which a 500 appended to it could not.
            return
        response.code = 500
        with contextlib.suppress(OSError):
            # The client may be gone already; there is no one left to tell.
            self.send(encode_error(500, "Internal Server Error", head.version, current_date()))

    def _refuse_head(self, error: RequestError) -> None:
        """Answer a head that cannot be parsed, and log it as Werkzeug and gunicorn do: with
        its request line when that much was valid, else with "-"."""
        access_log = self.state.access_log
        if access_log is None:
            self._answer_error(error, "HTTP/1.1")
            return
        started = time.monotonic()
        head = parse_request_line_only(self.buffer, self.state.limits)
        answer = self._answer_error(error, "HTTP/1.1")
        fields, _, body = answer.partition(b"\r\n\r\n")
        headers = [
            (name, value)
            for name, _, value in (
                line.decode("latin-1").partition(": ") for line in fields.split(b"\r\n")[1:]
            )
        ]
        record = RequestRecord(
            error.status, f"{error.status} {error.reason}", headers, len(body), head, self.peer
        )
        access_log.finished(None, record, time.monotonic() - started)

    def _answer_error(self, error: RequestError, version: str) -> bytes:
        """Send the short answer for `error` and close; returns the answer."""
        error_log.info("%s: bad request: %s; answered %d", self.peer_text(), error, error.status)
        answer = encode_error(error.status, error.reason, version, current_date())
        try:
            self.send(answer)
            # Half-close first so the answer is not lost to a reset if the client is
            # still sending (RFC 9112 section 9.6).
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.setblocking(False)
            for _ in range(16):
                if not self.sock.recv(65536):
                    break
        except OSError:
            pass
        self.close()
        return answer

    def close(self) -> None:
        if self.closed:
            return
        if self.held is not None:
            held, self.held = self.held, None
            with contextlib.suppress(OSError):
                # A response completed before the connection ends still goes out.
                self._send_all(held)
        self.closed = True
        if self.on_close is not None:
            self.on_close(self)
        with contextlib.suppress(OSError):
            # Closing can only fail on an fd already gone, which is the goal anyway.
            self.sock.close()

    def peer_text(self) -> str:
        if isinstance(self.peer, tuple):
            return f"{self.peer[0]}:{self.peer[1]}"
        return str(self.peer) or "unix"


def _wait(sock: socket.socket, event: int, timeout: float) -> None:
    """Wait until `sock` is readable (POLLIN) or writable (POLLOUT), or time out."""
    poller = select.poll()
    poller.register(sock.fileno(), event)
    if not poller.poll(timeout * 1000):
        if event == select.POLLIN:
            raise TimeoutError("client sent nothing in time")
        raise TimeoutError("client did not read the response in time")
