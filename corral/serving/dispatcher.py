"""Accepts connections and hands each one that has bytes to read to the worker model.

One readiness set (epoll on Linux, poll elsewhere: `corral.serving.readiness`) holds the
listening sockets and every idle connection. Connections are registered one-shot: when
one becomes readable it is disarmed and given to the model, and whichever thread served
it re-arms it (`release`), so the loop and the model's threads share no lock and an idle
connection costs a file descriptor only.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import heapq
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.config import Timeouts
from corral.serving.connection import Connection, ServingState
from corral.serving.health import answer_health
from corral.serving.listeners import stop_new_connections
from corral.serving.readiness import make_readiness, make_wake_pipe
from corral.serving.self_call_guard import SelfCallGuard
from corral.serving.transport import PlainTransport

if TYPE_CHECKING:
    from corral.serving.sizing import SizingObserver
    from corral.workers import WorkerModel

error_log = logging.getLogger("corral.error")

# Signals a terminal or an operator sends to the whole process group; a forked child
# serving one connection leaves them to its parent.
_GROUP_SIGNALS = (
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
_ACCEPT_BATCH = 64
# A connection accepted among several worker processes holds a slot of its worker until
# its first request arrives, or for this long: a client connects to send a request at
# once, but a browser's preconnect (or an attacker) may send nothing for seconds, and a
# slot held for it would leave real requests waiting while the worker sits idle.
_FRESH_SECONDS = 0.02
_SWEEP_INTERVAL = 0.5
# Seconds of opening steps (TLS handshakes) per turn of the loop, at most.
_OPENING_BUDGET = 0.002
# A quick stop (INT, QUIT) still lets requests already running finish, for this long.
QUICK_STOP_SECONDS = 1.0
# At --connection-limit, idle connections to close are looked for this many at a time
# (and no more than one in a hundred of the limit): each look walks every connection, too
# costly to repeat for each connection accepted in a flood (nginx, at its limit, closes up
# to 32 idle connections at a time; here one is closed per connection accepted).
_IDLE_CLOSED_AT_ONCE = 16
# Connections taken from a listener's queue as it closes, at most (its --backlog, 2048 by
# default, is the most the kernel holds).
_BACKLOG_TAKEN_AT_MOST = 4096
# Seconds a closing listener that drops new connections waits for more handshakes to
# complete: a round trip to a balancer nearby, many times over.
_HANDSHAKES_SETTLE = 0.05


class RequestsCut(BaseException):
    """Raised into a request served on the loop's thread when a stop's time has run out;
    a BaseException, so that the application's `except Exception` does not keep it."""


class Dispatcher:
    """The event loop of one server process."""

    def __init__(
        self,
        listeners: list[tuple[socket.socket, ServingState]],
        model: WorkerModel,
        timeouts: Timeouts,
        poller: str = "auto",
        accept_only_when_free: bool = False,
        connection_limit: int = 0,
    ) -> None:
        self.model = model
        # One-shot registration keeps a connection from being handed out twice while a
        # thread or child serves it; served inline, it cannot be, and staying armed saves
        # a system call per request.
        self.rearm = not model.serves_inline
        # Served inline, a plain connection is watched edge-triggered, so that ready
        # connections come in the order their requests arrived (`EpollReadiness`); one
        # whose last read filled all it asked for is looked at again next turn
        # (`unread`), as the kernel will not report what it already holds.
        self.edge = model.serves_inline
        self.unread: list[Connection] = []
        self.keep_alive = timeouts.keep_alive
        self.client_timeout = timeouts.client
        self.header_timeout = timeouts.header
        self.min_body_rate = timeouts.min_body_rate
        self.graceful_timeout = timeouts.graceful
        self.drain_delay = timeouts.drain_delay
        # The path corral answers itself (`corral.serving.health`); None for none. Set by
        # `build_dispatcher`.
        self.health_path: str | None = None
        # True once the server stops for good: the health path answers 503.
        self.unready = False
        # When --drain-delay ends (monotonic seconds), while it runs; else 0.0.
        self.drain_until = 0.0
        # When TERM began --drain-delay (monotonic seconds), 0 without one.
        self.delay_began = 0.0
        self.listeners = {sock.fileno(): (sock, state) for sock, state in listeners}
        # Listeners share the process's one count of refusals, as assembly builds them.
        self.refusal_logs = list(
            {id(state.refusals): state.refusals for _, state in listeners}.values()
        )
        self.connections: dict[int, Connection] = {}
        self.watched: dict[int, Callable[[], None]] = {}
        self.stop_requested = False
        self.force_stop = False
        self.quick_stop = False
        self.stop_deadline = float("inf")
        # True while the model serves a request on the loop's own thread (one at a time).
        self.serving_inline = False
        # True when a timer may cut a request served on the loop's thread at the deadline.
        self.inline_timer = False
        # Among several worker processes, take a connection only with a slot free for it.
        self.accept_only_when_free = accept_only_when_free
        self.paused_for_slots = False
        self.waiting_for_slot = False
        # Connections accepted whose first request has not reached the model yet: a
        # client connects to send a request, so each one holds a slot until it does.
        # Without this, a burst of connections all lands in whichever worker woke
        # first, and keep-alive keeps them there.
        self.fresh = 0
        # (deadline, connection) for each fresh connection, oldest first.
        self.fresh_deadlines: collections.deque[tuple[float, Connection]] = collections.deque()
        self.accept_paused_until = 0.0
        # Most connections open at once (0: no limit), and whether accepting waits for
        # one to close (see `_room_for`).
        self.connection_limit = connection_limit
        self.paused_at_limit = False
        self.limit_logged = False
        # The idle connections to close, longest idle first, as connections are accepted.
        self.idle_to_close: list[Connection] = []
        # How much concurrency the application needs (`corral.serving.sizing`), when
        # measured here; set by `build_dispatcher`.
        self.sizing: SizingObserver | None = None
        # Called on the loop thread about twice a second (the worker's heartbeat).
        self.on_tick: Callable[[], None] | None = None
        # Called on the loop thread after `request_reopen` (USR1: log files rotated).
        self.on_reopen: Callable[[], None] | None = None
        self.reopen_requested = False
        # Connections released with bytes already inside their transport (TLS): no
        # readiness will report those, so the loop hands them to the model again.
        self.served_again: collections.deque[Connection] = collections.deque()
        # Connections whose opening steps are due, run within `_OPENING_BUDGET` a turn.
        self.opening_due: collections.deque[Connection] = collections.deque()
        # Connections another thread accepted (the self-call guard, reaching a call in
        # the backlog), with their listener's fd: this loop watches them as its own.
        self.adopted: collections.deque[tuple[socket.socket, Any, int]] = collections.deque()
        # The self-call guard's fix, when the command's words are not the caller's
        # (`corral.run_simple`); None for the command's.
        self.self_call_advice: str | None = None
        self.signals_prepared = False
        self.wake_read, self.wake_write = make_wake_pipe()
        self.readiness = model.make_readiness(self.wake_write) or make_readiness(
            poller, self.wake_write
        )
        self.readiness.watch(self.wake_read)
        for fd, (sock, _) in self.listeners.items():
            sock.setblocking(False)
            self.readiness.watch(fd)

    # Called from signal handlers and other threads.

    def request_stop(self, *_: object) -> None:
        """The server stops for good (TERM): the health path answers 503, and the drain
        starts after --drain-delay, during which every request is still served and new
        connections accepted, each response saying "Connection: close". The drain stops
        listening and finishes requests in flight for up to the graceful timeout. A
        second request, or a quick stop, during either stops at once."""
        if self.drain_delay <= 0 or self.stop_requested or self.drain_until:
            self.unready = True
            self._stop(self.graceful_timeout)
            return
        self.unready = True
        self._stop_keep_alive()
        self.delay_began = time.monotonic()
        self.drain_until = self.delay_began + self.drain_delay
        self._wake()

    def retire(self, *_: object) -> None:
        """Drain at once, without --drain-delay, while the server serves on in other
        processes (a worker replaced on HUP, by --max-requests, TTOU): the health path
        still answers 200, with "Connection: close". Does nothing once a stop has begun."""
        if not self.stop_asked:
            self._stop(self.graceful_timeout)

    @property
    def stop_asked(self) -> bool:
        """True once a stop, or --drain-delay before it, has begun."""
        return self.stop_requested or bool(self.drain_until)

    def request_quick_stop(self, *_: object) -> None:
        """Drain for at most `QUICK_STOP_SECONDS`; a second request stops at once."""
        self.quick_stop = True
        self._stop(QUICK_STOP_SECONDS)

    def _stop(self, limit: float) -> None:
        if self.stop_requested or self.drain_until:
            self.force_stop = True
        self.drain_until = 0.0
        self.stop_requested = True
        self._stop_keep_alive()
        deadline = time.monotonic() + limit
        if deadline < self.stop_deadline:
            self.stop_deadline = deadline
            if self.inline_timer:
                # The loop does not run while a request is served on its thread: a timer
                # cuts that request when the time is up (`_on_deadline`).
                signal.setitimer(signal.ITIMER_REAL, max(limit, 0.001))
        self._wake()
        if self.force_stop and self.inline_timer:
            self._cut_inline_request()

    def request_reopen(self, *_: object) -> None:
        """Have the loop call `on_reopen` (USR1). Not done in the signal handler: it may
        have interrupted this very thread inside a log write, holding the log's lock."""
        self.reopen_requested = True
        self._wake()

    def _cut_inline_request(self) -> None:
        """In a signal handler on the loop's thread: end the request served there now."""
        if self.serving_inline and threading.current_thread() is threading.main_thread():
            raise RequestsCut

    def _on_deadline(self, _signum: int, _frame: object) -> None:
        if self.stop_requested and time.monotonic() >= self.stop_deadline - 0.001:
            self._cut_inline_request()

    def requests_in_flight(self) -> list[str]:
        """'METHOD target (running N s)' for each request being served, oldest first;
        a connection served by another process counts without its request line."""
        now = time.monotonic()
        lines = []
        for connection in list(self.connections.values()):
            if not connection.busy:
                continue
            head = connection.request
            if head is None:
                lines.append((0.0, "a request served by a child process"))
            else:
                running = now - connection.request_started
                lines.append((-running, f"{head.method} {head.target} (running {running:.1f} s)"))
        return [line for _, line in sorted(lines)]

    def connections_now(self) -> list[Connection]:
        """This process's open connections, idle ones included; callable from any
        thread (a copy taken at once)."""
        return list(self.connections.values())

    def served_elsewhere(self) -> list[Any]:
        """Connections whose request another process serves (--process-per-request)."""
        return self.model.served_elsewhere()

    def requests_waiting(self) -> int:
        """Whole requests handed to the model and waiting for a thread, coroutine or
        process to serve them."""
        return self.model.requests_waiting()

    def slot_freed(self) -> None:
        """A model calls this when a request ends, from any thread."""
        if self.waiting_for_slot:
            self.waiting_for_slot = False
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_write, b"\0")

    def release(self, connection: Connection) -> None:
        """Watch a served connection again; whoever served it calls this once."""
        if connection.closed:
            return
        if connection.lingering_until:
            connection.busy = False
            self._watch_lingering(connection)
            return
        connection.idle_since = time.monotonic()
        if connection.outbox:
            # The client has not taken the whole response yet: this loop sends the rest
            # when it can, and only then reads the connection again.
            connection.busy = False
            try:
                self.readiness.arm_writable(connection.fd)
            except OSError:
                connection.close()
            return
        if connection.transport.pending():
            # Never with plain sockets: their unread bytes are in the kernel.
            self.served_again.append(connection)
            self._wake()
            return
        if self.edge and not connection.transport.drained:
            # Served inline: this is the loop's own thread.
            self.unread.append(connection)
        connection.busy = False
        if self.rearm:
            try:
                self.readiness.rearm(connection.fd)
            except OSError:
                connection.close()

    def _watch_lingering(self, connection: Connection) -> None:
        """Read a lingering connection (`Connection.linger`) when its client sends."""
        try:
            if self.rearm:
                self.readiness.rearm(connection.fd)
            else:
                self.readiness.resume(connection.fd)
        except OSError:
            connection.close()
            return
        if self.edge and not connection.transport.drained:
            self.unread.append(connection)

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop thread when `fd` becomes readable."""
        self.watched[fd] = callback
        self.readiness.watch(fd)

    def adopt(self, sock: socket.socket, peer: Any, listener_fd: int) -> None:
        """Serve a connection another thread accepted from the listener `listener_fd` as
        if this loop had; callable from any thread."""
        self.adopted.append((sock, peer, listener_fd))
        self._wake()

    def unwatch(self, fd: int) -> None:
        self.watched.pop(fd, None)
        self.readiness.forget(fd)

    # The loop.

    def run(self) -> None:
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            self.prepare_signals()
        self.model.start(self)
        guard = SelfCallGuard.start_for(self, self.self_call_advice)
        try:
            self._loop()
        except RequestsCut:
            # Raised into the request served on this thread when the stop's time ran out.
            self._log_cut()
            self.model.stop()
        finally:
            if guard is not None:
                guard.stop()
            if self.inline_timer:
                self.inline_timer = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            if in_main_thread:
                signal.set_wakeup_fd(-1)
            self._close_everything()

    def prepare_signals(self) -> None:
        """On the main thread: wake the loop when a signal arrives, and (serving on this
        thread) arm the timer that cuts a request still running at a stop's deadline.
        Which signal stops or reopens is the process layer's choice
        (`corral.process.signals`, the worker process); `run` calls this if no one did."""
        if self.signals_prepared:
            return
        self.signals_prepared = True
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        if self.model.serves_inline:
            self.inline_timer = True
            signal.signal(signal.SIGALRM, self._on_deadline)

    def _loop(self) -> None:
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        while not self.stop_requested:
            timeout = _SWEEP_INTERVAL
            if self.opening_due or self.unread:
                timeout = 0.0
            elif self.fresh_deadlines:
                timeout = max(0.0, min(timeout, self.fresh_deadlines[0][0] - time.monotonic()))
            self._poll_once(timeout)
            now = time.monotonic()
            if self.drain_until and now >= self.drain_until:
                # --drain-delay is over: the drain itself, not a second stop.
                self.drain_until = 0.0
                self._stop(self.graceful_timeout)
                break
            if self.fresh_deadlines:
                self._expire_fresh(now)
            if self.reopen_requested:
                self.reopen_requested = False
                if self.on_reopen is not None:
                    self.on_reopen()
            if now >= next_sweep:
                self._close_idle(now)
                for refusals in self.refusal_logs:
                    refusals.flush_due(now)
                if self.on_tick is not None:
                    self.on_tick()
                next_sweep = now + _SWEEP_INTERVAL
        self._drain()

    def _poll_once(self, timeout: float) -> None:
        try:
            ready = self.readiness.wait(timeout)
        except InterruptedError:
            return
        connections = self.connections
        for fd in ready:
            connection = connections.get(fd)
            if connection is not None:
                if connection.opening is None:
                    self.submit(connection)
                else:
                    self.opening_due.append(connection)
            elif fd in self.listeners:
                self._accept(fd)
            elif fd == self.wake_read:
                with contextlib.suppress(OSError):
                    os.read(self.wake_read, 4096)
                while self.served_again:
                    again = self.served_again.popleft()
                    if not again.closed:
                        self.submit(again)
                while self.adopted:
                    sock, peer, listener_fd = self.adopted.popleft()
                    if listener_fd in self.listeners:
                        self._add_connection(sock, peer, self.listeners[listener_fd][1])
                    else:
                        sock.close()
                if self.paused_for_slots:
                    self._check_slots()
                if self.paused_at_limit and len(self.connections) < self.connection_limit:
                    self.paused_at_limit = False
                    self._listen_again()
            else:
                callback = self.watched.get(fd)
                if callback is not None:
                    callback()
        if self.opening_due:
            self._open_due()
        if self.unread:
            unread = self.unread
            self.unread = []
            for connection in unread:
                if not connection.closed:
                    self.submit(connection)

    def _open_due(self) -> None:
        """Run due opening steps for at most `_OPENING_BUDGET` seconds; the rest wait for
        the next turn of the loop, which then does not wait for readiness.

        A TLS handshake step costs this thread up to a millisecond: a flood of new
        connections would otherwise hold a request on an established connection for as
        long as every handshake that became ready with it takes."""
        due = self.opening_due
        deadline = time.monotonic() + _OPENING_BUDGET
        while due:
            connection = due.popleft()
            if not connection.closed:
                self.submit(connection)
            if time.monotonic() >= deadline:
                break

    def submit_ready(self, fd: int) -> bool:
        """Submit the connection on `fd` now, for a readiness set that reports ready
        fds itself (gevent's loop); False if `fd` is no connection."""
        connection = self.connections.get(fd)
        if connection is None:
            return False
        if connection.opening is not None:
            # Opened by the dispatcher's own turn, within its budget (`_open_due`).
            self.opening_due.append(connection)
            self._wake()
            return True
        self.submit(connection)
        return True

    def submit(self, connection: Connection) -> None:
        """Hand a connection with bytes to read to the model. Called by the loop, or by a
        readiness set that delivers ready connections itself (gevent's)."""
        if connection.lingering_until:
            # Answered and ending: what the client still sends is dropped.
            if connection.transport.drain():
                connection.close()
            else:
                self._watch_lingering(connection)
            return
        if connection.outbox:
            self._write_out(connection)
            return
        if connection.opening is not None and not self._open(connection):
            return
        if not connection.collect():
            # No whole request yet: gathered here as it arrives, holding no thread.
            if connection.closed:
                return
            if self.rearm:
                try:
                    self.readiness.rearm(connection.fd)
                except OSError:
                    connection.close()
            elif self.edge and not connection.transport.drained:
                self.unread.append(connection)
            return
        head = connection.head
        # The one cost of the health path to every other request: this comparison.
        if head is not None and head.target == self.health_path and self._answer_health(connection):
            return
        connection.busy = True
        connection.submitted = time.monotonic()
        if connection.fresh:
            connection.fresh = False
            self.fresh -= 1
        if self.inline_timer:
            self.serving_inline = True
            self.model.submit(connection)
            self.serving_inline = False
        else:
            self.model.submit(connection)
        if self.accept_only_when_free:
            # Full now, or (served inline, or its fresh slot handed over) free.
            self._check_slots()

    def _answer_health(self, connection: Connection) -> bool:
        """Answer health requests at the head of `connection` here, pipelined ones too;
        True when nothing is left for the model (the connection is watched again, or
        closed), False when a request for the application follows, or the first one was
        not a health check after all."""
        answered = False
        while True:
            head = connection.head
            if head is None or head.target != self.health_path:
                break
            if not answer_health(connection, not self.unready):
                break
            answered = True
            if (
                connection.closed
                or connection.lingering_until
                or connection.outbox
                or not connection.has_request()
            ):
                break
        if not answered:
            return False
        if connection.closed:
            return True
        if connection.lingering_until:
            self._watch_lingering(connection)
            return True
        if not connection.outbox and connection.has_request():
            return False
        connection.idle_since = time.monotonic()
        try:
            if connection.outbox:
                self.readiness.arm_writable(connection.fd)
            elif self.rearm:
                self.readiness.rearm(connection.fd)
        except OSError:
            connection.close()
        return True

    def _stop_keep_alive(self) -> None:
        """From now on every response says "Connection: close" and ends its connection."""
        for _, state in list(self.listeners.values()):
            state.stopping = True

    def _write_out(self, connection: Connection) -> None:
        """Send what the client takes of a connection's outbox; once it is empty, close
        the connection if its last response said so, else serve or watch it again."""
        try:
            connection.push()
        except OSError as error:
            error_log.debug("%s: connection ended: %s", connection.peer_text(), error)
            connection.close()
            return
        try:
            if connection.outbox:
                self.readiness.arm_writable(connection.fd)
                return
            if connection.closing:
                connection.linger()
                if not connection.closed:
                    self._watch_lingering(connection)
                return
            connection.idle_since = time.monotonic()
            if not self.rearm:
                # Served inline, the connection is watched for reading at all times.
                self.readiness.resume(connection.fd)
            if connection.has_request():
                # Pipelined requests that arrived meanwhile.
                self.submit(connection)
            elif self.rearm:
                self.readiness.rearm(connection.fd)
        except OSError:
            connection.close()

    def _open(self, connection: Connection) -> bool:
        """Run the connection's opening steps (`ServingState.opening`) on this thread;
        True once all are done and the connection may be served."""
        steps = connection.opening
        assert steps is not None
        try:
            while steps:
                if not steps[0](connection):
                    if self.rearm:
                        self.readiness.rearm(connection.fd)
                    return False
                del steps[0]
        except (OSError, ValueError) as error:
            error_log.debug("%s: connection not opened: %s", connection.peer_text(), error)
            connection.close()
            return False
        connection.opening = None
        return True

    def _accept(self, fd: int) -> None:
        listener, state = self.listeners[fd]
        is_tcp = listener.family != socket.AF_UNIX
        batch = _ACCEPT_BATCH
        if self.accept_only_when_free:
            batch = min(batch, self._free_slots())
            if batch <= 0:
                self._check_slots()
                return
        if self.connection_limit:
            batch = self._room_for(batch)
            if batch <= 0:
                return
        for _ in range(batch):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment instead of spinning
                    # on a listener that stays readable.
                    error_log.error("cannot accept a connection: %s; pausing accepts", error)
                    self._pause_accepting()
                return
            if is_tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._add_connection(sock, peer, state):
                return

    def _add_connection(self, sock: socket.socket, peer: Any, state: ServingState) -> bool:
        """Watch a connection just accepted; False when --connection-limit leaves no room
        for another."""
        transport = PlainTransport(
            sock, peer, state.client_timeout, cooperative=self.model.cooperative_sockets
        )
        connection = Connection(transport, state)
        connection.on_close = self._forget
        if self.accept_only_when_free:
            connection.fresh = True
            self.fresh += 1
            self.fresh_deadlines.append((time.monotonic() + _FRESH_SECONDS, connection))
        self.connections[connection.fd] = connection
        self.readiness.watch(connection.fd, once=self.rearm, edge=self.edge and not state.opening)
        return not (len(self.connections) > self.connection_limit > 0) or (
            self._close_longest_idle()
        )

    def _expire_fresh(self, now: float) -> None:
        """Fresh connections silent past `_FRESH_SECONDS` give their slot back."""
        deadlines = self.fresh_deadlines
        expired = False
        while deadlines and deadlines[0][0] <= now:
            connection = deadlines.popleft()[1]
            if connection.fresh:
                connection.fresh = False
                self.fresh -= 1
                expired = True
        if expired and self.paused_for_slots:
            self._check_slots()

    def _room_for(self, wanted: int) -> int:
        """How many of `wanted` connections may be accepted under --connection-limit.

        At the limit, the connections idle the longest (waiting for a next request, or
        for a first one) make room, as in nginx, so that idle clients cannot keep new
        ones out: one is closed for each connection accepted (`_close_longest_idle`), so
        none is closed unless a client is there to take its place. A connection in a
        request, part way through sending one or still taking a response is left alone
        (--header-timeout and --client-timeout end those that stall). With none idle, the
        listeners pause until one closes.
        """
        room = self.connection_limit - len(self.connections)
        if room > 0:
            return min(room, wanted)
        if not self.limit_logged:
            self.limit_logged = True
            error_log.warning(
                "connection limit of %d reached: closing the longest-idle connections to "
                "make room, else accepting none until one closes (--connection-limit)",
                self.connection_limit,
            )
        closing = min(_IDLE_CLOSED_AT_ONCE, max(1, self.connection_limit // 100), wanted)
        self.idle_to_close = self._longest_idle(closing - room)
        room += len(self.idle_to_close)
        if room <= 0:
            self._pause_at_limit()
        return min(room, wanted)

    def _longest_idle(self, count: int) -> list[Connection]:
        """Up to `count` idle connections, the longest idle first."""
        idle = [
            (connection.idle_since, connection.fd, connection)
            for connection in list(self.connections.values())
            if not connection.busy and not connection.buffer and not connection.outbox
        ]
        heapq.heapify(idle)
        found: list[Connection] = []
        while idle and len(found) < count:
            connection = heapq.heappop(idle)[2]
            # Bytes waiting are a request arriving (or the client's close, which the
            # connection's own turn handles): closing would lose the request.
            if not connection.transport.has_bytes_waiting():
                found.append(connection)
        return found

    def _close_longest_idle(self) -> bool:
        """Close the next connection `_room_for` found idle, if one still is; False when
        none is left (accepting then pauses)."""
        while self.idle_to_close:
            connection = self.idle_to_close.pop(0)
            if connection.closed or connection.busy or connection.buffer or connection.outbox:
                continue
            connection.close()
            return True
        self._pause_at_limit()
        return False

    def _pause_at_limit(self) -> None:
        if not self.paused_at_limit:
            self.paused_at_limit = True
            for fd in self.listeners:
                self.readiness.pause(fd)

    def _listen_again(self) -> None:
        """Watch the listeners again, unless another reason to pause them still holds."""
        if not (self.paused_for_slots or self.accept_paused_until or self.paused_at_limit):
            for fd in self.listeners:
                self.readiness.resume(fd)

    def _pause_accepting(self) -> None:
        self.accept_paused_until = time.monotonic() + 0.5
        for fd in self.listeners:
            self.readiness.pause(fd)

    def _free_slots(self) -> int:
        return self.model.free_slots() - self.fresh

    def _check_slots(self) -> None:
        """Listen while the model has a free slot, and only then."""
        if self._free_slots() > 0:
            self.waiting_for_slot = False
            if self.paused_for_slots:
                self.paused_for_slots = False
                self._listen_again()
            return
        if not self.paused_for_slots:
            self.paused_for_slots = True
            for fd in self.listeners:
                self.readiness.pause(fd)
        self.waiting_for_slot = True
        # A request that ended before the flag was set did not wake the loop.
        if self._free_slots() > 0:
            self._check_slots()

    def _forget(self, connection: Connection) -> None:
        if self.connections.get(connection.fd) is connection:
            del self.connections[connection.fd]
        self.readiness.forget(connection.fd)
        if connection.fresh:
            connection.fresh = False
            self.fresh -= 1
            if self.paused_for_slots:
                self._check_slots()
        if self.paused_at_limit:
            # Closed on any thread: the loop resumes accepting.
            self._wake()

    def _close_idle(self, now: float) -> None:
        if self.accept_paused_until and now >= self.accept_paused_until:
            self.accept_paused_until = 0.0
            self._listen_again()
        if self.paused_at_limit:
            # A connection may have turned idle since: look again, if a client waits.
            self.paused_at_limit = False
            self._listen_again()
        for connection in list(self.connections.values()):
            if connection.busy:
                continue
            if connection.lingering_until:
                if now >= connection.lingering_until:
                    connection.close()
            elif connection.outbox:
                # A client that takes no byte of its response (--client-timeout).
                if now - connection.outbox_since > self.client_timeout:
                    error_log.debug("%s: client stopped reading", connection.peer_text())
                    connection.close()
            elif connection.opening is not None:
                # Its listener's opening timeout (the TLS handshake's), from accept.
                opening_timeout = connection.state.opening_timeout
                limit = self.client_timeout if opening_timeout is None else opening_timeout
                if now - connection.idle_since > limit:
                    connection.close()
            elif connection.buffer or connection.head is not None:
                # A request arriving: --header-timeout, --min-request-body-rate.
                connection.timed_out(now, self.header_timeout, self.min_body_rate)
            elif (
                now - connection.idle_since > self.keep_alive
                # A request that arrived since the last poll: closing would lose it, and
                # the client (a balancer reusing the connection) would see a reset.
                and not connection.transport.has_bytes_waiting()
            ):
                connection.close()

    def _drain(self) -> None:
        """Stop accepting and wait for requests in flight and for idle connections.

        An idle keep-alive connection is not closed early: a request arriving on it is
        answered with "Connection: close", and one that stays idle is closed at
        --keep-alive as in service, or at the graceful timeout. Closing a connection
        the client may be reusing that instant loses its request (RFC 9112 §9.6): a
        balancer whose idle timeout is shorter than --keep-alive (nginx's upstream
        keepalive_timeout) closes its idle connections first, so none is lost. The
        exception: after --drain-delay, the connections no request came on throughout
        the delay close with the listener, as their client has stopped choosing this
        server (a balancer that checks --health-path, HAProxy's `option httpchk`)."""
        for fd, (sock, state) in self.listeners.items():
            state.stopping = True
            self.readiness.forget(fd)
            if self.unready and not self.force_stop:
                # Stopping for good: this may be the last process listening. A worker
                # retiring leaves the queue to the workers that serve on.
                self._take_backlog(sock, state)
            sock.close()
        self.listeners.clear()
        while not self.force_stop:
            now = time.monotonic()
            if now >= self.stop_deadline:
                break
            if self.delay_began:
                self._close_idle_since(self.delay_began)
            self._close_idle(now)
            if not self.connections and self.model.idle():
                break
            self._poll_once(0.0 if self.unread else 0.05)
        self._log_cut()
        self.model.stop()

    def _close_idle_since(self, moment: float) -> None:
        """Close the connections no request has begun on since `moment` (monotonic
        seconds), accepted before it, with nothing arrived on them."""
        for connection in list(self.connections.values()):
            # The last request's start, not its end: a response the client has already
            # read may end here a moment later.
            last_used = connection.request_started or connection.idle_since
            if (
                not connection.busy
                and not connection.outbox
                and not connection.lingering_until
                and connection.opening is None
                and not connection.buffer
                and connection.head is None
                and last_used <= moment
                and not connection.transport.has_bytes_waiting()
            ):
                connection.close()

    def _take_backlog(self, sock: socket.socket, state: ServingState) -> None:
        """Accept the connections queued on a listener about to close: closing it resets
        them, and their clients (a balancer) may have sent a request already, which a
        reset loses; accepted, each is answered with "Connection: close". Once this
        process's listeners close (the last process holding them, under a master),
        a connection is refused, which a balancer retries elsewhere before sending."""
        is_tcp = sock.family != socket.AF_UNIX
        # New connections dropped, the handshakes already answered complete within a
        # round trip: they are taken until none has come for `_HANDSHAKES_SETTLE`.
        settle = _HANDSHAKES_SETTLE if stop_new_connections(sock) else 0.0
        taken = 0
        while taken < _BACKLOG_TAKEN_AT_MOST:
            try:
                accepted, peer = sock.accept()
            except BlockingIOError:
                if settle and select.select([sock], [], [], settle)[0]:
                    continue
                return
            except OSError:
                return
            taken += 1
            if is_tcp:
                accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._add_connection(accepted, peer, state)

    def _log_cut(self) -> None:
        cut = self.requests_in_flight()
        if cut:
            error_log.warning(
                "Stopped with %d request%s unfinished: %s",
                len(cut),
                "s" if len(cut) != 1 else "",
                "; ".join(cut),
            )

    def _close_everything(self) -> None:
        for connection in list(self.connections.values()):
            connection.close()
        while self.adopted:
            self.adopted.popleft()[0].close()
        for refusals in self.refusal_logs:
            refusals.flush()
        for sock, _ in self.listeners.values():
            sock.close()
        self.readiness.close()
        os.close(self.wake_read)
        os.close(self.wake_write)

    def close_in_child(self, keep: Connection) -> None:
        """In a forked child: let go of everything inherited except one connection."""
        signal.set_wakeup_fd(-1)
        # Ctrl-C and Ctrl-\ reach the whole process group: the parent decides.
        for signum in _GROUP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for connection in list(self.connections.values()):
            if connection is not keep:
                connection.on_close = None
                connection.transport.close()
        for sock, _ in self.listeners.values():
            sock.close()
        for fd in list(self.watched):
            with contextlib.suppress(OSError):
                os.close(fd)
        keep.on_close = None
        self.readiness.close()
        os.close(self.wake_read)
        os.close(self.wake_write)
