"""The self-call guard: a request that calls its own server when no thread is left to serve
the call gets the call answered 503 within a second, instead of both waiting forever.

A handler that fetches a URL of its own server (an API calling itself, the habit of
`app.run()` without threads) needs a second thread: with one request at a time the
thread that would serve the call is the one waiting for its answer, and with a pool
every thread can be waiting so. Nothing then moves until the client gives up, or the
master kills the worker after --timeout.

It is told from what corral knows, never from headers. When every thread the model has
serves a request (the dispatcher's connections say so: a connection handed to the model,
with its request set and the thread serving it named) and none has moved (same innermost
frame, same instruction) for `_STUCK_SECONDS`, each one's innermost frame is
asked what it waits on: a thread *waits on this server* when that frame holds a
connected socket whose remote end is one of this server's listening addresses (as a
local, or as the `_sock` or `sock` of its `self`: `socket.SocketIO` under urllib,
http.client and requests, `http.client.HTTPConnection`; an `ssl.SSLSocket` is itself
`self`). A thread asleep, computing in C, or waiting on a database or another server
holds no such socket and will free its slot by itself: while any serving thread does
not wait on this server, the guard does nothing. When every one does, the calls they
wait on are found by address, exactly (the waiting socket's own address is the call's
peer): gathered and waiting in the model's queue (one process with --threads N), or
still in the listener's backlog while the dispatcher is not accepting (its thread is
the one inside the application, or a worker process without a free slot stopped
accepting). The guard takes each one, answers `503 Service Unavailable` with
`Retry-After: 1` and `Connection: close`, and logs one line at WARNING naming both
requests and the fix. Other connections it accepts on the way to them are handed to the
dispatcher (`Dispatcher.adopt`) and served in turn.

The guard is one thread per serving process, started only for models whose threads can
all be held (`WorkerModel.fixed_threads`: one at a time, the thread pool). It looks
every `_LOOK_INTERVAL` seconds, from its own thread: a look reads the pool's count of
free threads, or with one at a time walks the loop thread's stack, and reads the
application's locals only of a thread that has not moved; nothing is added to a
request's path. gevent's greenlets yield while they wait, so
a call is served by another of --worker-connections (1000 by default); thread per
request starts a thread for it (up to --max-threads); a process per request waits in a
child that this process cannot inspect. The guard does not watch those.

With several worker processes a worker sees only its own threads: a call it finds still
in the shared backlog after `_STUCK_SECONDS` is one that no worker was free to accept in
that time, which it answers. Unix-socket listeners are not watched: a call's peer there
has no address to match.
"""

from __future__ import annotations

import logging
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, cast

from corral.http.errors import RequestError
from corral.serving.connection import Connection, ServingState
from corral.serving.transport import PlainTransport
from corral.workers import WorkerModel, serve_safely

error_log = logging.getLogger("corral.error")

# Seconds between two looks at the serving threads.
_LOOK_INTERVAL = 0.2
# Seconds a thread must wait, unmoved, on a call to this server before its call is
# answered: two looks apart at least, so that a call served in time is never answered.
_STUCK_SECONDS = 0.3
# Seconds the guard waits for the head of a call it accepted from the backlog: sent
# with the connection, it has long arrived unless the caller is stuck sending a body.
_GATHER_SECONDS = 0.5
# Connections accepted from one listener in one look, at most, to reach the calls.
_ACCEPTED_AT_MOST = 64
_INET = (socket.AF_INET, socket.AF_INET6)
# The advice of a process started by `corral.run_simple` (see `Dispatcher.self_call_advice`).
RUN_SIMPLE_ADVICE = "Call run_simple with threaded=True."

# (host, port): an address without IPv6's flow and scope, an IPv4-mapped one as IPv4.
Address = tuple[str, int]


class SelfCallDeadlock(RequestError):
    """A call to this server that no thread is free to serve while its caller holds one:
    the server's condition, answered at once with a hint to ask again."""

    status = 503
    reason = "Service Unavailable"
    headers = (("Retry-After", "1"),)
    # The guard logs each one in full, with both requests and the fix.
    logged_in_full = True


class GuardedServer(Protocol):
    """What the guard reads of the dispatcher (`corral.serving.dispatcher.Dispatcher`)."""

    model: WorkerModel
    listeners: dict[int, tuple[socket.socket, ServingState]]
    stop_requested: bool
    paused_for_slots: bool
    accept_only_when_free: bool

    def adopt(self, sock: socket.socket, peer: Any, listener_fd: int) -> None: ...

    def connections_now(self) -> list[Connection]: ...

    def release(self, connection: Any) -> None: ...

    def slot_freed(self) -> None: ...


# Where a thread is: id() of its innermost frame and the instruction there. No reference
# is kept, so that the guard holds none of the application's objects (sockets) alive.
_Place = tuple[int, int]


@dataclass(frozen=True)
class _Wait:
    """A serving thread that waits on a call to this server."""

    thread: int
    # The call's socket: its own address (the call's peer here) and this server's.
    caller: Address
    server: Address
    # '"GET /outer"', the request the thread serves.
    request_line: str


def advice_for(model: WorkerModel, worker_processes: bool) -> str:
    """The fix, in the command's words, for a model whose threads all wait on calls."""
    threads = model.concurrency()
    if model.serves_inline:
        if worker_processes:
            return "Run with -k thread --threads 2 or more."
        return "Run with --threads 2 or more (or --thread-per-request)."
    more = f"Run with --threads above {threads}: more threads than requests calling this server"
    return more + (" at once." if worker_processes else " at once (or --thread-per-request).")


class SelfCallGuard:
    """The watching thread for one dispatcher; `start` on the dispatcher's thread."""

    def __init__(self, server: GuardedServer, advice: str | None = None) -> None:
        self.server = server
        self.advice = advice or advice_for(server.model, server.accept_only_when_free)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        # Each listening address, for telling whether a socket is connected to this server.
        self.addresses: list[Address] = []
        # The callers whose call was looked for in the backlog and is not there.
        self.searched: set[Address] = set()
        # Whether an IP address is one of this host's, as found by binding to it.
        self.local_hosts: dict[str, bool] = {}

    @classmethod
    def start_for(cls, server: GuardedServer, advice: str | None = None) -> SelfCallGuard | None:
        """A started guard, when `server`'s model can have every thread held; else None."""
        if not server.model.fixed_threads:
            return None
        guard = cls(server, advice)
        guard.start()
        return guard

    def start(self) -> None:
        for sock, _ in self.server.listeners.values():
            if sock.family in _INET:
                self.addresses.append(_address(sock.getsockname()))
        if not self.addresses:
            return
        self.thread = threading.Thread(
            target=self._watch, name="corral-self-call-guard", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(_LOOK_INTERVAL + _GATHER_SECONDS + 1.0)

    def _watch(self) -> None:
        seen: dict[int, tuple[float, _Place]] = {}
        while not self.stopped.wait(_LOOK_INTERVAL):
            try:
                seen = self._look(seen)
            except Exception:
                # Our own bug: told once; requests are served as before, unwatched.
                error_log.exception("the self-call guard failed and stops watching")
                return

    def _look(self, seen: dict[int, tuple[float, _Place]]) -> dict[int, tuple[float, _Place]]:
        """One look at the threads serving requests: where each one is, by thread, with
        since when it has been there (`seen` is the previous look's answer).

        Once every thread the model has serves a request and none has moved for
        `_STUCK_SECONDS`, each one's innermost frame is asked for the call to this server
        it waits on; when every one waits on such a call, the calls are answered.
        """
        server = self.server
        model = server.model
        if server.stop_requested or (not model.serves_inline and model.free_slots() > 0):
            return {}
        frames = sys._current_frames()
        try:
            serving = self._serving(frames)
            if len(serving) < model.concurrency():
                return {}
            now = time.monotonic()
            places: dict[int, tuple[float, _Place]] = {}
            for ident, (innermost, _) in serving.items():
                place = (id(innermost), innermost.f_lasti)
                before = seen.get(ident)
                places[ident] = (
                    before if before is not None and before[1] == place else (now, place)
                )
            if any(now - since < _STUCK_SECONDS for since, _ in places.values()):
                return places
            waits = []
            for ident, (innermost, request_line) in serving.items():
                call = self._call_waited_on(innermost)
                if call is None:
                    # Asleep, computing in C, or waiting on a database or another server:
                    # its thread comes free by itself.
                    return places
                waits.append(_Wait(ident, call[0], call[1], request_line))
            answered = self._answer_calls(waits)
            return {ident: place for ident, place in places.items() if ident not in answered}
        finally:
            # This thread's own frame is among them and holds `frames`: a cycle.
            del frames

    def _serving(self, frames: dict[int, FrameType]) -> dict[int, tuple[FrameType, str]]:
        """(innermost frame, request line quoted) of each thread serving a request.

        Read from the connections, not from the threads' stacks: the request loop may be
        compiled (`corral.compiled`), and compiled code has no frames to find."""
        guard = threading.get_ident()
        serving = {}
        for connection in self.server.connections_now():
            # Read while the serving thread changes them: a request that has just ended
            # may still count, and is told apart by its thread moving on.
            head = connection.request
            thread = connection.request_thread
            if head is None or not connection.busy or thread == guard:
                continue
            innermost = frames.get(thread)
            if innermost is not None:
                serving[thread] = (innermost, f'"{head.method} {head.target}"')
        return serving

    def _call_waited_on(self, frame: FrameType) -> tuple[Address, Address] | None:
        """(its own address, this server's) of a socket connected to this server that
        `frame` holds, None if it holds none."""
        for sock in _sockets_held(frame):
            if sock.family not in _INET:
                continue
            try:
                server = _address(sock.getpeername())
                caller = _address(sock.getsockname())
            except OSError:
                # Not connected (yet, or any more), or closed meanwhile.
                continue
            if self._is_this_server(server):
                return caller, server
        return None

    def _is_this_server(self, address: Address) -> bool:
        host, port = address
        for listening_host, listening_port in self.addresses:
            if port != listening_port:
                continue
            if listening_host == host:
                return True
            if listening_host in ("0.0.0.0", "::") and self._is_local(host):
                return True
        return False

    def _is_local(self, host: str) -> bool:
        """True when `host` is an address of this host: only then can a socket bind to it."""
        known = self.local_hosts.get(host)
        if known is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.bind((host, 0))
                known = True
            except OSError:
                known = False
            self.local_hosts[host] = known
        return known

    # Answering.

    def _answer_calls(self, waits: list[_Wait]) -> set[int]:
        """Answer the calls `waits` wait on, wherever they wait; the threads answered."""
        server = self.server
        wanted = {(wait.caller, wait.server[1]): wait for wait in waits}
        answered: set[int] = set()

        def is_wanted(connection: Connection) -> bool:
            return (_address(connection.peer), _port(connection)) in wanted

        withdrawn = server.model.withdraw_waiting(is_wanted)
        for connection in withdrawn:
            wait = wanted.pop((_address(connection.peer), _port(connection)))
            call = self._refuse(connection)
            if serve_safely(connection):
                server.release(connection)
            self._log(wait, call, connection, "answered 503")
            answered.add(wait.thread)
        if withdrawn:
            server.slot_freed()
        # A call looked for in the backlog until it ran empty is not there: another
        # worker process took it, and serves it. It is not looked for again, so that this
        # worker does not take other clients' connections from the workers each look.
        self.searched &= {wait.caller for wait in waits}
        for key in [key for key in wanted if key[0] in self.searched]:
            del wanted[key]
        if wanted and (server.model.serves_inline or server.paused_for_slots):
            # The dispatcher is not accepting: its thread is the one inside the
            # application, or the worker stopped accepting with no slot free.
            answered |= self._answer_from_backlog(wanted)
        return answered

    def _answer_from_backlog(self, wanted: dict[tuple[Address, int], _Wait]) -> set[int]:
        answered: set[int] = set()
        ports = {port for _, port in wanted}
        for fd, (listener, state) in list(self.server.listeners.items()):
            if listener.family not in _INET:
                continue
            try:
                port = _address(listener.getsockname())[1]
            except OSError:
                continue
            if port not in ports:
                continue
            for _ in range(_ACCEPTED_AT_MOST):
                if not wanted:
                    return answered
                try:
                    sock, peer = listener.accept()
                except BlockingIOError:
                    self.searched.update(
                        caller for caller, wanted_port in wanted if wanted_port == port
                    )
                    break
                except OSError:
                    # Closed by a stop meanwhile.
                    break
                wait = wanted.pop((_address(peer), port), None)
                if wait is None:
                    # Another client's connection: the dispatcher serves it in turn.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.server.adopt(sock, peer, fd)
                    continue
                self._answer_accepted(sock, peer, state, wait)
                answered.add(wait.thread)
        return answered

    def _answer_accepted(
        self, sock: socket.socket, peer: Any, state: ServingState, wait: _Wait
    ) -> None:
        """Answer a call taken from the backlog: this thread owns it from accept to close."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(PlainTransport(sock, peer, state.client_timeout), state)
        if not _gather(connection, time.monotonic() + _GATHER_SECONDS):
            connection.close()
            self._log(wait, "a request whose head did not arrive", connection, "closed it")
            return
        call = self._refuse(connection)
        if connection.serve():
            # The answer did not fit in the socket's buffer: the rest, then the close.
            connection.send_outbox()
        connection.close()
        self._log(wait, call, connection, "answered 503")

    def _refuse(self, connection: Connection) -> str:
        """Have `connection`'s next `serve()` answer 503 (connection.py writes every answer
        corral makes itself, and its access log line); its request line, quoted."""
        head = connection.head
        connection.refused = SelfCallDeadlock("a call to this server with no thread free")
        return f'"{head.method} {head.target}"' if head is not None else "a request"

    def _log(self, wait: _Wait, call: str, connection: Connection, done: str) -> None:
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        error_log.warning(
            "self-call deadlock: %s (thread %s) is waiting on a request to this server "
            "(%s from %s) and no thread is free to serve it; %s. %s",
            wait.request_line,
            names.get(wait.thread, wait.thread),
            call,
            connection.peer_text(),
            done,
            self.advice,
        )


def _sockets_held(frame: FrameType) -> Iterator[socket.socket]:
    """The sockets among `frame`'s locals, and the `_sock` or `sock` of its `self`.

    Only types and instance dictionaries are read: no property or `__getattr__` of the
    application's objects runs on this thread."""
    local_values = frame.f_locals
    for value in local_values.values():
        if issubclass(type(value), socket.socket):
            yield value
    owner = local_values.get("self")
    if owner is None:
        return
    try:
        attributes = object.__getattribute__(owner, "__dict__")
    except Exception:
        # No instance dictionary (slots), or a descriptor of the application's that failed.
        return
    if isinstance(attributes, dict):
        for name in ("_sock", "sock"):
            inner = attributes.get(name)
            # The type, not isinstance(): a proxy object answers __class__ with code.
            if issubclass(type(inner), socket.socket):
                yield cast(socket.socket, inner)


def _gather(connection: Connection, deadline: float) -> bool:
    """Run the opening steps (PROXY header, TLS handshake) and read the request head,
    waiting up to `deadline`; True once a head is in hand."""
    while True:
        steps = connection.opening
        try:
            while steps:
                if not steps[0](connection):
                    break
                del steps[0]
        except (OSError, ValueError):
            return False
        if not steps:
            connection.opening = None
            if connection.collect() or connection.head is not None:
                # The head is enough to answer; a body still arriving is drained on close.
                return True
        if connection.closed:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if not connection.transport.pending():
            poller = select.poll()
            poller.register(connection.fd, select.POLLIN)
            poller.poll(remaining * 1000)


def _address(address: Any) -> Address:
    host, port = address[:2]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(port)


def _port(connection: Connection) -> int:
    port = connection.state.listener.port
    return int(port) if port else 0
