"""Serves one client connection: recv -> parser -> WSGI app -> framing -> send.

Every concurrency model runs this same code; they differ only in who calls `serve()`
and when. A thread (or process, or greenlet) is given a connection only once a whole
request has arrived: the dispatcher calls `collect()` on its own thread each time the
connection turns readable, and it gathers the head and the body (the body in memory up
to `_BODY_IN_MEMORY`, in a temporary file beyond, as waitress does) without waiting.
`serve()` then handles the complete requests and returns as soon as there is none, so a
client that sends slowly, or not at all, holds no thread.

Response bytes the client does not take at once wait in the connection's outbox (256 KiB
each, and up to 8 MiB from a budget of 64 MiB per process) while the thread goes on; the
dispatcher sends the rest when the client reads, so a client that reads slowly holds no
thread either.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import select
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Final

from corral.http.errors import BodyTooLarge, IncompleteBody, RequestError
from corral.http.framing import CONTINUE_RESPONSE, InvalidResponse, encode_error
from corral.http.parser import (
    ChunkedBody,
    HeadLimits,
    HeadScanner,
    RequestHead,
    body_decoder,
    parse_request_line_only,
)
from corral.serving import request_counts
from corral.serving.access_log import AccessLog
from corral.serving.listeners import ListenerInfo
from corral.serving.refusals import RefusalLog, WaitedTooLong
from corral.serving.request_counts import DURATION_BOUNDS
from corral.serving.request_observer import RequestObserver, RequestRecord
from corral.serving.sizing import SAMPLE_INTERVAL, SizingObserver
from corral.serving.transport import ClientSocketError, Transport
from corral.wsgi.environ import build_environ
from corral.wsgi.forwarded import ForwardedHeaders
from corral.wsgi.input import RequestBody
from corral.wsgi.response import BodyBytes, Response, WSGIApp, current_date, run_application

error_log: Final = logging.getLogger("corral.error")
_bucket: Final = bisect.bisect_left
# The counts' layout (`corral.serving.request_counts`) as literals: compiled, a Final
# literal is a constant where an imported name is a dictionary lookup on every request.
# Checked against the layout at import, so that a layout changed since cannot pass.
_BYTES_IN: Final = 10
_BYTES_OUT: Final = 11
_DURATION_SUM: Final = 12
_FIRST_BUCKET: Final = 13
_FIRST_BOUND: Final = 0.001
if (
    request_counts.BYTES_IN,
    request_counts.BYTES_OUT,
    request_counts.DURATION_SUM,
    request_counts.FIRST_BUCKET,
    DURATION_BOUNDS[0],
) != (_BYTES_IN, _BYTES_OUT, _DURATION_SUM, _FIRST_BUCKET, _FIRST_BOUND):
    raise ImportError("corral.serving.connection does not match request_counts' layout")

# Measured: a 256 KiB receive buffer, allocated afresh on every recv, cost 15 µs per
# request (a fresh mapping each time); 64 KiB costs nothing extra. Large bodies bypass
# this buffer (`receive_unframed`).
_RECEIVE_SIZE: Final = 65536
# Responses ending in more than this are sent at once: holding them saves nothing.
_HOLD_LIMIT: Final = 16384
# A request body is gathered in memory up to this size, in a temporary file beyond it.
_BODY_IN_MEMORY: Final = 1 << 20
# Response bytes kept for a client that is slow to read them. Past `_OUTBOX_LIMIT` a
# connection borrows from the process's `_OUTBOX_BUDGET`, up to `_OUTBOX_MOST` in all;
# beyond what it may hold, the thread writing the response waits for the client (up to
# --client-timeout). Eight slow readers of 1 MiB responses thus hold no thread, and a
# thousand of them hold no more than the budget in memory.
_OUTBOX_LIMIT: Final = 1 << 18
_OUTBOX_MOST: Final = 8 << 20
# A request body arrives at --min-request-body-rate on average once this much has
# passed since its head (Kestrel's MinRequestBodyDataRate has the same grace).
BODY_RATE_GRACE: Final = 5.0
_TIMEOUT_ANSWER_VERSION: Final = "HTTP/1.1"
# Seconds a connection ended after an answer reads what its client still sends (`linger`).
LINGER_SECONDS: Final = 2.0


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
    # Seconds a request may wait between `Dispatcher.submit` and its serving (0: no limit).
    queue_timeout: float = 0.0
    # The process's count of refused requests, shared by all its listeners.
    refusals: RefusalLog = field(default_factory=RefusalLog)
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # What happens on a new connection before its first request, in order (a PROXY
    # protocol header, a TLS handshake): see `OpeningStep`.
    opening: tuple[OpeningStep, ...] = ()
    # Whose proxy headers count (--forwarded-allow-ips); None reads none.
    forwarded: ForwardedHeaders | None = None
    # Told the status of each request corral answers itself before the app could run
    # (a bad head, a body over the limit, --queue-timeout, a late head), which the
    # observers never hear of (`SlotWriter.refused`).
    refused: Callable[[int], None] | None = None
    # The process's running counts of the requests the app ran (`request_counts`), added
    # to as each response ends when the slot table is written; then `counted` is called,
    # if given (--max-requests, a request process writing its counts).
    counts: list[float] | None = None
    # Samples CPU against wall time for the sizing advice (`corral.serving.sizing`).
    sizing: SizingObserver | None = None
    counted: Callable[[], None] | None = None
    # Seconds from accept that the opening steps may take (--ssl-handshake-timeout);
    # None for the client timeout.
    opening_timeout: float | None = None


# One step of opening a connection, run by the dispatcher on its own thread each time the
# connection turns readable until it returns True (done). It must never wait: it reads
# what has arrived and returns False to be called again when more arrives. It may replace
# `connection.transport` or `connection.peer`. Any OSError or ValueError it raises closes
# the connection. Steps that are not done within the client timeout close it too.
OpeningStep = Callable[["Connection"], bool]


class _Budget:
    """Bytes that connections of this process may hold past `_OUTBOX_LIMIT`, together."""

    def __init__(self, total: int) -> None:
        self.free = total
        self.lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Up to `wanted` bytes of the budget; how many were granted."""
        with self.lock:
            granted = min(wanted, self.free)
            self.free -= granted
            return granted

    def give(self, count: int) -> None:
        with self.lock:
            self.free += count


_OUTBOX_BUDGET: Final = _Budget(64 << 20)


class Connection:
    """One accepted connection's transport, the bytes received on it but not yet
    consumed, and the response bytes not yet taken by the client."""

    __slots__ = (
        "body_started",
        "borrowed",
        "buffer",
        "busy",
        "client_waited",
        "client_waited_for",
        "client_waiting_since",
        "closed",
        "closing",
        "fd",
        "fresh",
        "head",
        "head_size",
        "head_started",
        "idle_since",
        "lingering_until",
        "on_close",
        "opening",
        "outbox",
        "outbox_since",
        "parts",
        "parts_size",
        "peer",
        "probe",
        "refused",
        "request",
        "request_started",
        "request_thread",
        "scanner",
        "spool",
        "spooled",
        "state",
        "submitted",
        "tail",
        "transport",
        "wire_body",
    )

    def __init__(self, transport: Transport, state: ServingState) -> None:
        self.transport = transport
        self.peer = transport.peer
        self.state = state
        self.fd = transport.fileno()
        self.buffer = bytearray()
        # A body arriving after its head, in the pieces received (`_arrived`), and their
        # length: joined to the buffer once, when whole (`_join_parts`).
        self.parts: list[bytes] = []
        self.parts_size = 0
        self.scanner = HeadScanner(state.limits)
        self.busy = False
        # Accepted, its first request not yet handed to the model (see Dispatcher).
        self.fresh = False
        self.closed = False
        # The opening steps not yet done; None once there are none left.
        self.opening: list[OpeningStep] | None = list(state.opening) or None
        self.idle_since = time.monotonic()
        self.on_close: Any = None
        # After an answer that ends the connection: until when the loop reads and drops
        # what the client still sends before closing (`linger`); 0.0 otherwise.
        self.lingering_until = 0.0
        # Response bytes not yet sent: held back while a pipelined request follows (sent
        # together after it), or not taken yet by a client slow to read.
        self.outbox = bytearray()
        # When the outbox last made progress, for --client-timeout.
        self.outbox_since = 0.0
        # Bytes of `_OUTBOX_BUDGET` this connection's outbox holds past `_OUTBOX_LIMIT`.
        self.borrowed = 0
        # Close once the outbox is sent (the last response said "Connection: close").
        self.closing = False
        # The next request while it arrives: its head (parsed, still at the start of
        # `buffer`, `head_size` bytes), how many bytes its body takes on the wire (-1
        # until a chunked body's end has been seen, by `probe`), and when they began.
        self.head: RequestHead | None = None
        self.head_size = 0
        self.wire_body = 0
        self.probe: _ChunkedEnd | None = None
        self.head_started = 0.0
        self.body_started = 0.0
        # A body past `_BODY_IN_MEMORY`: the rest of it, `spooled` bytes, and the bytes
        # that arrived after its end (a next request's start).
        self.spool: IO[bytes] | None = None
        self.spooled = 0
        self.tail = b""
        # A head that cannot be parsed: answered by whoever serves the connection.
        self.refused: RequestError | None = None
        # The request being served, when it began and on which thread (or greenlet), for
        # the log of a stop that cuts it, --timeout and the stats.
        self.request: RequestHead | None = None
        self.request_started = 0.0
        self.request_thread = 0
        # Seconds the request has spent waiting on its client (a slow reader), and since
        # when it waits now (0.0: it does not): --timeout times the app, not the client.
        self.client_waited = 0.0
        # The request (its `request_started`) whose waits `client_waited` adds up: a
        # request's first wait starts the sum again, so that none is spent per request.
        self.client_waited_for = 0.0
        self.client_waiting_since = 0.0
        # When the dispatcher last handed it to the model, for --queue-timeout.
        self.submitted = self.idle_since

    @property
    def stays_in_process(self) -> bool:
        """True when a process that serves this connection must keep it to its end: its
        transport's state (a TLS session) cannot be handed back to another process."""
        return self.transport.stays_in_process

    def serve_to_end(self, idle_seconds: float) -> None:
        """In a forked process serving a connection that stays in it: serve request after
        request, gathering each one and sending each response whole itself, until the
        client closes, or sends nothing for `idle_seconds` between requests (the client
        timeout for each wait inside one); then close."""
        while self.serve() and self.send_outbox():
            while not self.collect():
                if self.closed:
                    return
                limit = self.state.client_timeout if self.buffer else idle_seconds
                if not self.transport.pending() and not _readable_within(self.fd, limit):
                    self.close()
                    return
        self.close()

    def forward_refusals(self, fd: int) -> None:
        """In a child process serving this connection for its parent: write refusals to
        `fd` for the parent to count (`take_refusals`), not to this process's log."""
        self.state.refusals.forward_to(fd)

    def take_refusals(self, data: bytes) -> None:
        """Count the refusals a child process serving this connection wrote."""
        self.state.refusals.take_forwarded(data)

    def hand_back(self) -> tuple[bytes, bytes]:
        """In a process about to give this connection back: (the response bytes not sent
        yet, the bytes received and not used), for `restore` in the other process. A
        connection to close once its outbox has gone ends now instead."""
        if self.closing:
            self.send_outbox()
        self._join_parts()
        return bytes(self.outbox), bytes(self.buffer)

    def restore(self, received: bytes, unsent: bytes = b"") -> None:
        """Take back a connection another process served: the bytes it received and did
        not use (the start of a next request, parsed when the rest arrives), and the
        response bytes it could not send yet (sent as the client takes them)."""
        self.outbox = bytearray(unsent)
        self.outbox_since = time.monotonic()
        self._drop_spool()
        self.buffer = bytearray(received)
        self.parts = []
        self.parts_size = 0
        self.scanner = HeadScanner(self.state.limits)
        self.head = None
        self.probe = None
        self.refused = None
        self.head_started = time.monotonic() if received else 0.0

    # Gathering a request, on the dispatcher's thread.

    def collect(self) -> bool:
        """Read what has arrived, without waiting; True when a whole request is here to
        serve (or a head to refuse). Closes the connection when the peer has closed it
        with no whole request left, or on a socket error."""
        try:
            data = self.transport.receive_ready(self._receive_size())
        except OSError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()
            return False
        if data is None:
            return self.has_request()
        if not data:
            if self.has_request():
                return True
            self.close()
            return False
        self._arrived(data)
        return self.has_request()

    def _receive_size(self) -> int:
        if self.spool is not None and not self.probe:
            # A Content-Length body past memory: read no further than its end, so the
            # spool holds the body alone.
            return max(1, min(_RECEIVE_SIZE, self.wire_body - len(self.buffer) - self.spooled))
        return _RECEIVE_SIZE

    def _arrived(self, data: bytes) -> None:
        if self.spool is None:
            if self.head is not None and self.wire_body:
                # A body kept in pieces: appended one by one, a bytearray would be
                # copied whole each time it outgrows itself (an eighth more each time),
                # eight times over for a body of a mebibyte.
                self.parts.append(data)
                self.parts_size += len(data)
            else:
                self.buffer += data
            if self.probe is not None:
                self._probe(data)
            return
        ended = False
        if self.probe is not None:
            end = self.probe.feed(data)
            if end is not None:
                # The chunked body ended inside `data`: the rest is the next request's.
                cut = len(data) - end
                self.tail = data[cut:]
                data = data[:cut]
                self._found_body_end()
                ended = True
        self.spool.write(data)
        self.spooled += len(data)
        if ended:
            self.wire_body = len(self.buffer) - self.head_size + self.spooled

    def has_request(self) -> bool:
        """True when a whole request (head and body) is in hand, or a request to refuse.
        Parses the head once it has arrived; never reads from the socket."""
        if self.refused is not None:
            return True
        if self.head is None:
            if not self.buffer:
                return False
            try:
                parsed = self.scanner.parse(self.buffer)
            except RequestError as error:
                self.refused = error
                return True
            if parsed is None:
                # A head in pieces: --header-timeout counts from the first piece seen.
                if not self.head_started:
                    self.head_started = time.monotonic()
                return False
            # Told by the call, not read again here: mypy would take `self.refused` as
            # still None from the check above, and the compiled code would check it so.
            if self._head_arrived(*parsed):
                return True
        received = len(self.buffer) + self.parts_size - self.head_size
        if self.wire_body < 0:
            if self.spool is None and received > _BODY_IN_MEMORY:
                self._start_spool()
            return False
        if received + self.spooled >= self.wire_body:
            self._join_parts()
            return True
        if self.spool is None and received > _BODY_IN_MEMORY:
            self._start_spool()
        return False

    def _join_parts(self) -> None:
        """Append the body's pieces received so far to the buffer, in one copy."""
        if self.parts:
            self.buffer = bytearray().join([self.buffer, *self.parts])
            self.parts = []
            self.parts_size = 0

    def _head_arrived(self, head: RequestHead, size: int) -> bool:
        """Take the head just parsed; True when the request is refused before its body."""
        self.head = head
        self.head_size = size
        body_limit = self.state.limits.body_size
        if head.content_length is not None and head.content_length > body_limit > 0:
            # Refused before the body is gathered, or asked for with 100 Continue.
            self.refused = BodyTooLarge(f"Content-Length larger than {body_limit} bytes")
            return True
        if head.chunked:
            self.wire_body = -1
            self.probe = _ChunkedEnd(self.state.limits)
            self._probe(bytes(self.buffer[size:]))
        else:
            self.wire_body = head.content_length or 0
        if self.wire_body and (self.wire_body < 0 or len(self.buffer) - size < self.wire_body):
            # The body is still to come: --min-request-body-rate counts from now.
            self.body_started = time.monotonic()
            if head.expect_continue:
                # Ask for it now (RFC 9110 section 10.1.1), as gunicorn, waitress and
                # Werkzeug do: it is read before the application runs.
                self.send(CONTINUE_RESPONSE)
        # A chunked body already in hand may have shown itself over the limit.
        return self.refused is not None

    def _probe(self, data: bytes) -> None:
        probe = self.probe
        assert probe is not None
        end = probe.feed(data)
        if end is not None:
            self.wire_body = len(self.buffer) + self.parts_size - self.head_size - end
            self._found_body_end()

    def _found_body_end(self) -> None:
        # A body found malformed ends here too: the application meets the same error
        # reading it, at the same byte, and it is answered then. One over
        # --limit-request-body is refused before the application runs, as a
        # Content-Length over it is, whether the application would read it or not.
        probe = self.probe
        if probe is not None and isinstance(probe.error, BodyTooLarge):
            self.refused = probe.error
        self.probe = None

    def _start_spool(self) -> None:
        # The body so far stays in the buffer, the rest goes to the spool.
        self._join_parts()
        # Closed by `_drop_spool`, when the request is done or the connection ends.
        self.spool = tempfile.TemporaryFile(prefix="corral-body-")  # noqa: SIM115

    def _drop_spool(self) -> None:
        spool = self.spool
        if spool is not None:
            self.spool = None
            self.spooled = 0
            with contextlib.suppress(OSError):
                spool.close()

    def timed_out(self, now: float, header_timeout: float, min_body_rate: int) -> bool:
        """True when the request arriving has broken --header-timeout or the
        --min-request-body-rate (called on the dispatcher's thread, for a connection no
        one is serving); the client is then answered 408 and the connection closed."""
        if self.head is None:
            if not self.buffer or not self.head_started:
                return False
            if now - self.head_started <= header_timeout:
                return False
            reason = "request head not received in time"
        else:
            rate = min_body_rate
            elapsed = now - self.body_started - BODY_RATE_GRACE
            if rate <= 0 or elapsed <= 0:
                return False
            received = len(self.buffer) + self.parts_size - self.head_size + self.spooled
            if received >= rate * (now - self.body_started):
                return False
            reason = f"request body slower than {rate} bytes/s"
        # Counted with the other refusals: a slowloris run makes thousands of them.
        self.state.refusals.record(408, "Request Timeout", reason, self.peer_text())
        if self.state.refused is not None:
            self.state.refused(408)
        with contextlib.suppress(OSError):
            self.transport.send_some(
                encode_error(408, "Request Timeout", _TIMEOUT_ANSWER_VERSION, current_date())
            )
        self.outbox.clear()
        self.close()
        return True

    # I/O used by the request body and the response.

    def receive(self) -> None:
        self.buffer += self.receive_unframed(_RECEIVE_SIZE)

    def receive_unframed(self, size: int) -> bytes:
        """Up to `size` body bytes past the buffer: from the spool while it lasts, then
        from the socket (waiting up to the client timeout)."""
        spool = self.spool
        if spool is not None:
            data = spool.read(size)
            if data:
                return data
        if self.outbox:
            # The client may wait for the earlier response before sending more.
            self.flush()
        data = self.transport.receive(size)
        if not data:
            raise IncompleteBody("peer closed the connection inside a request body")
        return data

    def send(self, data: BodyBytes) -> None:
        """Send `data` after anything still in the outbox. What the client does not take
        at once waits in the outbox; the calling thread waits only while more wait than
        the connection may hold (ClientSocketError after --client-timeout)."""
        outbox = self.outbox
        if not outbox:
            sent = self.transport.send_some(data)
            if sent == len(data):
                return
            outbox += memoryview(data)[sent:]
            self.outbox_since = time.monotonic()
        else:
            outbox += data
            self.push()
        if len(outbox) > _OUTBOX_LIMIT + self.borrowed:
            wanted = min(len(outbox), _OUTBOX_MOST) - _OUTBOX_LIMIT - self.borrowed
            if wanted > 0:
                self.borrowed += _OUTBOX_BUDGET.take(wanted)
            if len(outbox) > _OUTBOX_LIMIT + self.borrowed:
                self._wait_for_client(_OUTBOX_LIMIT + self.borrowed)

    def _wait_for_client(self, limit: int) -> None:
        """Wait until the outbox holds `limit` bytes at most (ClientSocketError after
        --client-timeout without progress): a wait on the client, which --timeout does not
        count (`client_waited`)."""
        self._client_wait_began()
        try:
            while len(self.outbox) > limit:
                self.transport.wait_writable()
                self.push()
        finally:
            self._client_wait_ended()

    def _client_wait_began(self) -> None:
        if self.client_waited_for != self.request_started:
            self.client_waited_for = self.request_started
            self.client_waited = 0.0
        self.client_waiting_since = time.monotonic()

    def waited_on_client(self) -> float:
        """Seconds the request in the app has waited on its client so far."""
        return self.client_waited if self.client_waited_for == self.request_started else 0.0

    def _client_wait_ended(self) -> None:
        self.client_waited += time.monotonic() - self.client_waiting_since
        self.client_waiting_since = 0.0

    def push(self) -> None:
        """Send what the client takes now of the outbox, without waiting."""
        outbox = self.outbox
        if not outbox:
            return
        sent = self.transport.send_some(outbox)
        if sent:
            del outbox[:sent]
            self.outbox_since = time.monotonic()
            if self.borrowed:
                self._repay(max(0, len(outbox) - _OUTBOX_LIMIT))

    def _repay(self, keep: int) -> None:
        """Give back to the budget what the outbox holds no longer, keeping `keep`."""
        if self.borrowed > keep:
            _OUTBOX_BUDGET.give(self.borrowed - keep)
            self.borrowed = keep

    def send_outbox(self) -> bool:
        """Send the whole outbox, waiting for the client (up to --client-timeout); True
        if the connection stays open after it."""
        try:
            self._wait_for_client(0)
        except OSError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()
            return False
        if self.closing:
            self.linger()
            return False
        return True

    def send_last(self, data: BodyBytes) -> None:
        """Send the bytes that complete a response, or hold them while the client's next
        request has already arrived on this connection.

        Pipelined responses then go out in one send when the last of them is done
        (`serve` flushes before it returns). A response is never held across a request
        of another connection: its bytes leave as soon as its own app call has ended.
        """
        if not self.buffer or len(data) > _HOLD_LIMIT or self.spool is not None:
            self.send(data)
        else:
            if not self.outbox:
                self.outbox_since = time.monotonic()
            self.outbox += data

    def flush(self) -> None:
        """Send held bytes now, as far as the client takes them; a client gone meanwhile
        closes the connection."""
        try:
            self.push()
        except OSError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        self.push()
        self._wait_for_client(0)
        # The file goes out at the client's pace: a wait on the client, not the app.
        self._client_wait_began()
        try:
            sent = self.transport.sendfile(fd, offset, count)
        finally:
            self._client_wait_ended()
        if sent < count:
            # The application's file shrank after its length was announced; the
            # response cannot be completed, so the connection must end.
            raise InvalidResponse("file ended before its announced length")

    # The request loop.

    def serve(self) -> bool:
        """Serve every whole request in hand; False once the connection is closed."""
        queue_timeout = self.state.queue_timeout
        if (
            queue_timeout
            and time.monotonic() - self.submitted > queue_timeout
            and self.head is not None
            and self.refused is None
        ):
            # Only the first request waited for this call: the others follow it at once.
            self.refused = WaitedTooLong(queue_timeout)
        try:
            while True:
                if self.refused is not None:
                    self._refuse(self.refused)
                    return not self.closed
                head = self.head
                # Whole: `collect` said so for the first, the loop's end for the next.
                if head is None or (
                    self.wire_body
                    and (
                        self.wire_body < 0
                        or len(self.buffer) - self.head_size + self.spooled < self.wire_body
                    )
                ):
                    break
                self._take_request()
                # A response whose head left before the drain began said keep-alive: the
                # connection stays open and the next request gets "Connection: close"
                # (RFC 9112 section 9.6), as closing it now could meet a request sent
                # on it meanwhile.
                keep = self._serve_request(head)
                self._request_done()
                if not keep:
                    self.finish()
                    return not self.closed
                self.request = None
                if self.outbox:
                    self.push()
                    if self.outbox:
                        # The client is not reading: the dispatcher sends the rest when
                        # it does, and serves what follows then.
                        break
                if not self.buffer or not self.has_request():
                    break
            if self.outbox:
                self.push()
        except OSError as error:
            # Resets, broken pipes and timeouts: the peer is gone or too slow.
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()
            return False
        return not self.closed

    def answer_itself(self, response: bytes, keep_alive: bool) -> None:
        """Answer the request in hand, which has no body, with `response`, a whole
        response corral made itself (the health path): the request is used up, and the
        connection ends after the response unless `keep_alive`. A client gone closes it."""
        self._take_request()
        try:
            self.send(response)
        except OSError as error:
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()
            return
        if keep_alive:
            return
        if self.outbox:
            self.closing = True
            return
        self.linger()

    def _take_request(self) -> None:
        """Remove the head of the request about to be served from the buffer."""
        del self.buffer[: self.head_size]
        if self.spool is not None:
            # The rest of the body, read after what the buffer holds.
            self.spool.seek(0)
        self.head = None
        self.head_started = 0.0

    def _request_done(self) -> None:
        """After a request: what follows its body becomes the buffer."""
        if self.spool is not None:
            # The whole body was in hand; whatever the application left unread goes.
            self._drop_spool()
            self.buffer = bytearray(self.tail)
            self.tail = b""

    def finish(self) -> None:
        """End the connection after its last response: at once when every byte has
        gone, else once the dispatcher has sent the outbox."""
        if self.closed:
            return
        if self.outbox:
            with contextlib.suppress(OSError):
                self.push()
        if self.outbox:
            self.closing = True
            return
        self.close()

    def _serve_request(self, head: RequestHead) -> bool:
        """Run the app for one request; True if the connection may carry another."""
        state = self.state
        self.request = head
        self.request_started = started = time.monotonic()
        counts = state.counts
        sizing = state.sizing
        cpu_began = -1.0
        if sizing is not None and started >= sizing.next_sample:
            # Inline and sampled in time: the thread's CPU clock costs a system call.
            sizing.next_sample = started + SAMPLE_INTERVAL
            cpu_began = time.thread_time()
        decoder = body_decoder(head, state.limits)
        body = RequestBody(self, decoder, None)
        environ = build_environ(head, body, state.base_environ, self.peer, state.forwarded)
        response = Response(self, head, body, state)
        observers = state.observers
        if observers:
            tokens = [observer.started(head, environ) for observer in observers]
        try:
            run_application(state.app, environ, response)
        except RequestError as error:
            # The body the app was reading turned out malformed, or the peer left.
            if isinstance(error, IncompleteBody):
                error_log.debug("%s: %s", self.peer_text(), error)
                self.close()
                return False
            if not response.head_sent:
                response.code = error.status
                self._answer_error(error, head.version)
            return False
        except ClientSocketError as error:
            # Nothing more can reach this client, what waits in the outbox included.
            error_log.debug("%s: connection ended: %s", self.peer_text(), error)
            self.close()
            return False
        except Exception as error:
            self._answer_app_failure(head, response, error)
            return False
        finally:
            if observers or counts is not None:
                seconds = time.monotonic() - started
            if observers:
                record = RequestRecord(
                    response.code,
                    response.status_text(),
                    response.header_list(),
                    response.bytes_sent,
                    head,
                    self.peer,
                )
                for observer, token in zip(observers, tokens, strict=True):
                    observer.finished(token, record, seconds)
            if counts is not None:
                # Inline, without a call: this is all --stats costs a request (see
                # `corral.serving.request_counts`).
                # The head and the body as they came on the wire (gathered whole, so
                # `wire_body` is known).
                counts[_BYTES_IN] += self.head_size + self.wire_body
                counts[_BYTES_OUT] += response.head_length + response.bytes_sent
                counts[_DURATION_SUM] += seconds
                if seconds < _FIRST_BOUND:
                    # The fast requests, without a call.
                    counts[_FIRST_BUCKET] += 1
                else:
                    counts[_FIRST_BUCKET + _bucket(DURATION_BOUNDS, seconds)] += 1
                # The request is counted last: a reader that sees it sees the rest.
                counts[response.code // 100] += 1
                if state.counted is not None:
                    state.counted()
            if cpu_began >= 0 and sizing is not None:
                sizing.sampled(time.thread_time() - cpu_began, time.monotonic() - started)
        if not response.keep_alive:
            return False
        if not decoder.done and self.spool is None:
            try:
                return body.discard()
            except RequestError as error:
                # The response has gone out whole; the unread rest of the body is bad
                # or cut short, so the connection cannot carry another request.
                error_log.debug("%s: unread request body: %s; closing", self.peer_text(), error)
                return False
        return True

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

    def _refuse(self, error: RequestError) -> None:
        """Answer a request the application never sees (a head that cannot be parsed, a
        body over the limit, a wait past --queue-timeout), and log it in the access log as
        Werkzeug and gunicorn do: with its request line when that much was valid, else
        with "-"."""
        self.refused = None
        if self.state.refused is not None:
            self.state.refused(error.status)
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
        """Send the short answer for `error` and end the connection (once the answer has
        gone, if the client is slow to take it); returns the answer. The error log counts
        it among the refusals (`corral.serving.refusals`), unless it was logged in full."""
        if not error.logged_in_full:
            self.state.refusals.record(error.status, error.reason, str(error), self.peer_text())
        answer = encode_error(error.status, error.reason, version, current_date(), error.headers)
        try:
            self.send(answer)
        except OSError:
            # The client is gone; there is no one left to tell.
            self.close()
            return answer
        if self.outbox:
            self.closing = True
            return answer
        self.linger()
        return answer

    def linger(self) -> None:
        """End the connection once its last answer has gone: stop sending, then read and
        drop what the client still sends until it closes its side, for up to
        `LINGER_SECONDS`, and only then close. Closed at once instead, data the client
        sends after the answer would reach a closed socket, whose reset makes the client
        drop the answer unread (RFC 9112 section 9.6; nginx's lingering_close and
        Apache's lingering close do the same). The loop that watches the connection
        (`corral.serving.dispatcher`) reads it meanwhile. A request process, which no
        loop watches, closes its copy of the socket at once: `lingering_until` tells the
        process that forked it, which holds the socket too, to linger instead."""
        if self.transport.half_close():
            self.close()
            return
        self.lingering_until = time.monotonic() + LINGER_SECONDS
        if self.on_close is None:
            self.close()

    def linger_after_child(self) -> None:
        """In the process that forked a request process which ended this connection
        lingering (`linger`): linger here, where the loop watches it."""
        self.lingering_until = time.monotonic() + LINGER_SECONDS

    def close(self) -> None:
        if self.closed:
            return
        if self.outbox:
            with contextlib.suppress(OSError):
                # A response completed before the connection ends goes out if it can.
                self.push()
            self.outbox.clear()
        self._repay(0)
        self._drop_spool()
        self.closed = True
        if self.on_close is not None:
            self.on_close(self)
        self.transport.close()

    def peer_text(self) -> str:
        return self.transport.peer_text()


class _ChunkedEnd:
    """Finds where a chunked body ends on the wire, by running over a copy of its bytes
    the very decoder the application's reads will run: the body ends at the same byte
    however its bytes are split. Chunk data is skipped, not copied."""

    __slots__ = ("decoder", "error", "scratch")

    def __init__(self, limits: HeadLimits) -> None:
        self.decoder = ChunkedBody(limits)
        self.scratch = bytearray()
        # The error the body ended on, if it is malformed or too large.
        self.error: RequestError | None = None

    def feed(self, data: bytes) -> int | None:
        """Take the next bytes of the body; once its end has come, how many of `data`
        lie past it, else None. A malformed body ends where its error lies."""
        scratch = self.scratch
        scratch += data
        decoder = self.decoder
        try:
            while not decoder.done:
                skip = decoder.unframed(len(scratch))
                if skip:
                    del scratch[:skip]
                    decoder.take_unframed(skip)
                    continue
                before = len(scratch)
                decoder.read(scratch, 0)
                if len(scratch) == before and not decoder.done:
                    return None
        except RequestError as error:
            self.error = error
        return min(len(scratch), len(data))


def _readable_within(fd: int, seconds: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(seconds * 1000))
