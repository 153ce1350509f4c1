"""Serves one client connection: recv -> parser -> WSGI app -> framing -> send.

Every concurrency model runs this same code; they differ only in who calls `serve()`
and when. `serve()` handles the requests whose bytes have arrived and returns as soon as
the connection has nothing complete to work on, so an idle keep-alive connection holds
no thread or process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
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
from corral.serving.listeners import ListenerInfo
from corral.serving.request_observer import RequestObserver, RequestRecord
from corral.serving.transport import ClientSocketError, Transport
from corral.wsgi.environ import build_environ
from corral.wsgi.forwarded import ForwardedHeaders
from corral.wsgi.input import RequestBody
from corral.wsgi.response import Response, WSGIApp, current_date, run_application

error_log = logging.getLogger("corral.error")

# Measured: a 256 KiB receive buffer, allocated afresh on every recv, cost 15 µs per
# request (a fresh mapping each time); 64 KiB costs nothing extra. Large bodies bypass
# this buffer (`receive_unframed`).
_RECEIVE_SIZE = 65536
# Responses ending in more than this are sent at once: holding them saves nothing.
_HOLD_LIMIT = 16384


@dataclass(eq=False)
class ServingState:
    """What every connection of one server shares. `stopping` flips once, on shutdown."""

    app: WSGIApp
    limits: HeadLimits
    listener: ListenerInfo
    base_environ: dict[str, Any]
    client_timeout: float
    # Also among `observers`; named here for USR1's reopen and for the requests corral
    # refuses itself, which no other observer is told of.
    access_log: AccessLog | None
    observers: tuple[RequestObserver, ...] = ()
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # What happens on a new connection before its first request, in order (a PROXY
    # protocol header, a TLS handshake): see `OpeningStep`.
    opening: tuple[OpeningStep, ...] = ()
    # Whose proxy headers count (--forwarded-allow-ips); None reads none.
    forwarded: ForwardedHeaders | None = None


# One step of opening a connection, run by the dispatcher on its own thread each time the
# connection turns readable until it returns True (done). It must never wait: it reads
# what has arrived and returns False to be called again when more arrives. It may replace
# `connection.transport` or `connection.peer`. Any OSError or ValueError it raises closes
# the connection. Steps that are not done within the client timeout close it too.
OpeningStep = Callable[["Connection"], bool]


class Connection:
    """One accepted connection's transport and the bytes received on it but not yet
    consumed."""

    __slots__ = (
        "buffer",
        "busy",
        "closed",
        "fd",
        "fresh",
        "held",
        "idle_since",
        "on_close",
        "opening",
        "peer",
        "request",
        "request_started",
        "scanner",
        "state",
        "transport",
    )

    def __init__(self, transport: Transport, state: ServingState) -> None:
        self.transport = transport
        self.peer = transport.peer
        self.state = state
        self.fd = transport.fileno()
        self.buffer = bytearray()
        self.scanner = HeadScanner(state.limits)
        self.busy = False
        # Accepted, its first request not yet handed to the model (see Dispatcher).
        self.fresh = False
        self.closed = False
        # The opening steps not yet done; None once there are none left.
        self.opening: list[OpeningStep] | None = list(state.opening) or None
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
        data = self.transport.receive(size)
        if not data:
            raise IncompleteBody("peer closed the connection inside a request body")
        return data

    def send(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            data = held + data
        self.transport.send_all(data)

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
            self.transport.send_all(held)
        except OSError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        if self.held is not None:
            self.send(b"")
        if self.transport.sendfile(fd, offset, count) < count:
            # The application's file shrank after its length was announced; the
            # response cannot be completed, so the connection must end.
            raise InvalidResponse("file ended before its announced length")

    # The request loop.

    def serve(self) -> bool:
        """Serve every complete request that has arrived; False once the connection is closed."""
        try:
            data = self.transport.receive_ready(_RECEIVE_SIZE)
        except OSError:
            self.close()
            return False
        if data is None:
            return True
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
        environ = build_environ(head, body, state.base_environ, self.peer, state.forwarded)
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
        except OSError:
            # The client is gone; there is no one left to tell.
            pass
        else:
            self.transport.half_close()
        self.close()
        return answer

    def close(self) -> None:
        if self.closed:
            return
        if self.held is not None:
            held, self.held = self.held, None
            with contextlib.suppress(OSError):
                # A response completed before the connection ends still goes out.
                self.transport.send_all(held)
        self.closed = True
        if self.on_close is not None:
            self.on_close(self)
        self.transport.close()

    def peer_text(self) -> str:
        return self.transport.peer_text()
