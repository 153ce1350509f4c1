"""gevent (`-k gevent`): each ready connection is served in a greenlet of its own, at most
`--worker-connections` at once, all in one thread.

The process is monkey-patched before the application is imported (`patch_process`), so
that the application's `time.sleep`, sockets and locks yield to other greenlets instead
of blocking the process. The dispatcher runs in the main greenlet and waits on gevent's
own event loop (`LoopReadiness`), so that it yields too.

Listening sockets may have been created before the patching (by the master, before it
forks workers). The dispatcher accepts only when a listener is readable, so the
listener's own `accept` never blocks; and the stdlib's `socket.accept` builds the
accepted socket from the `socket` module's `socket` class, which the patching replaced,
so every connection is served on a cooperative socket either way.
"""

from __future__ import annotations

import collections
import errno
import importlib.util
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from corral.config import ConfigError
from corral.workers import Host, Served, WorkerModel, serve_and_release

error_log = logging.getLogger("corral.error")

_MISSING_GEVENT = "-k gevent needs gevent: pip install 'corral[gevent]'"


class GeventMissing(ConfigError):
    """`-k gevent` was asked for where gevent is not installed."""


def check_gevent_installed() -> None:
    """Raise `GeventMissing` unless gevent can be found, without importing it: the
    master checks before it binds, so that a missing gevent is a usage error at once
    rather than workers failing to boot."""
    try:
        found = importlib.util.find_spec("gevent") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise GeventMissing(_MISSING_GEVENT)


def patch_process() -> None:
    """Monkey-patch the standard library for gevent; call before importing the app.

    Safe to call more than once. Raises `GeventMissing` (one line, naming the package to
    install) when gevent is not installed.
    """
    try:
        from gevent import monkey
    except ImportError as error:
        raise GeventMissing(_MISSING_GEVENT) from error
    monkey.patch_all()


class LoopReadiness:
    """The readiness set on gevent's event loop: one io watcher per fd, kept for as long
    as the fd is watched.

    gevent's patched `select.poll` builds and tears down a watcher for every registered
    fd on every call: measured, 830 µs per call with 1,000 idle connections, where a whole
    request costs about 35 µs. Here a connection costs a watcher start when it is armed
    and a stop when it is reported. `wait` switches to gevent's hub, so greenlets run while
    the dispatcher waits; the fds reported in one turn of the loop come back together.
    """

    def __init__(self) -> None:
        from gevent import get_hub
        from gevent.hub import Waiter

        self.hub = get_hub()
        self.loop = self.hub.loop
        self.waiter_type = Waiter
        self.watchers: dict[int, Any] = {}
        # Watchers for room to send, started once by `arm_writable`.
        self.writers: dict[int, Any] = {}
        self.once: set[int] = set()
        # One-shot fds reported and not yet rearmed. Their watchers keep running, and are
        # stopped only if the fd turns readable again before the rearm (a pipelined
        # request, a close): stopping and restarting every time costs libev a system
        # call per request.
        self.reported: set[int] = set()
        self.stopped: set[int] = set()
        self.ready: list[int] = []
        self.waiter: Any = None
        self.wake_scheduled = False
        # Set by the model: takes a ready one-shot fd (a connection) straight from the
        # loop, sparing a switch to the dispatcher and back for every request.
        self.deliver: Callable[[int], bool] | None = None
        # One-shot fds reported in this turn of the loop, delivered together at its end
        # in the order they were last armed (`_deliver_batch`).
        self.batch: list[int] = []
        self.armed_at: dict[int, int] = {}
        self.arming = itertools.count()

    def watch(self, fd: int, once: bool = False, edge: bool = False) -> None:
        # libev has no edge-triggered mode; `_deliver_batch` orders what it reports.
        watcher = self.loop.io(fd, 1)
        self.watchers[fd] = watcher
        if once:
            self.once.add(fd)
            self.armed_at[fd] = next(self.arming)
        watcher.start(self._readable, fd)

    def rearm(self, fd: int) -> None:
        watcher = self.watchers.get(fd)
        if watcher is None:
            raise OSError(errno.EBADF, "fd is not watched")
        self.reported.discard(fd)
        self.armed_at[fd] = next(self.arming)
        if fd in self.stopped:
            self.stopped.discard(fd)
            watcher.start(self._readable, fd)

    def arm_writable(self, fd: int) -> None:
        if fd not in self.watchers:
            raise OSError(errno.EBADF, "fd is not watched")
        writer = self.writers.get(fd)
        if writer is None:
            writer = self.writers[fd] = self.loop.io(fd, 2)
        writer.start(self._writable, fd)

    def pause(self, fd: int) -> None:
        self.watchers[fd].stop()

    def resume(self, fd: int) -> None:
        self.watchers[fd].start(self._readable, fd)

    def forget(self, fd: int) -> None:
        writer = self.writers.pop(fd, None)
        if writer is not None:
            writer.stop()
            writer.close()
        watcher = self.watchers.pop(fd, None)
        if watcher is None:
            return
        watcher.stop()
        watcher.close()
        self.once.discard(fd)
        self.reported.discard(fd)
        self.stopped.discard(fd)
        self.armed_at.pop(fd, None)
        if fd in self.batch:
            self.batch.remove(fd)
        if fd in self.ready:
            # Reported but not yet collected: the number may be reused before it is.
            self.ready.remove(fd)

    def wait(self, timeout: float) -> list[int]:
        if not self.ready:
            waiter = self.waiter = self.waiter_type(self.hub)
            timer = self.loop.timer(timeout)
            timer.start(waiter.switch, None)
            try:
                waiter.get()
            finally:
                timer.close()
                self.waiter = None
        ready = self.ready
        self.ready = []
        return ready

    def close(self) -> None:
        for watcher in [*self.watchers.values(), *self.writers.values()]:
            watcher.stop()
            watcher.close()
        self.watchers.clear()
        self.writers.clear()
        self.once.clear()
        self.reported.clear()
        self.stopped.clear()
        self.armed_at.clear()
        self.batch.clear()

    # On the hub.

    def _writable(self, fd: int) -> None:
        self.writers[fd].stop()
        if self.deliver is not None and self.deliver(fd):
            return
        self.ready.append(fd)
        if self.waiter is not None and not self.wake_scheduled:
            self.wake_scheduled = True
            self.loop.run_callback(self._wake_dispatcher)

    def _readable(self, fd: int) -> None:
        if fd in self.once:
            if fd in self.reported:
                self.watchers[fd].stop()
                self.stopped.add(fd)
                return
            self.reported.add(fd)
            if self.deliver is not None:
                if not self.batch:
                    self.loop.run_callback(self._deliver_batch)
                self.batch.append(fd)
                return
        self.ready.append(fd)
        if self.waiter is not None and not self.wake_scheduled:
            # Resume the dispatcher once the loop has run every watcher due in this turn,
            # not once per fd.
            self.wake_scheduled = True
            self.loop.run_callback(self._wake_dispatcher)

    def _deliver_batch(self) -> None:
        """Deliver the connections reported in this turn, those armed first first.

        libev's epoll backend is level-triggered: an fd it reported is checked again at
        the head of the kernel's ready list on the next wait, while a request that
        arrives on a connection served late in this turn joins the list's tail. In the
        order reported, such a request waits a whole turn, then for every other request
        of the next: 1.5% of requests took twice the median (58 connections, hello).
        Armed order is the order the clients had their responses, so, closely, the order
        their requests arrived."""
        batch = self.batch
        self.batch = []
        deliver = self.deliver
        assert deliver is not None
        if len(batch) > 1:
            batch.sort(key=self.armed_at.__getitem__)
        for fd in batch:
            if not deliver(fd):
                self.ready.append(fd)
                if self.waiter is not None and not self.wake_scheduled:
                    self.wake_scheduled = True
                    self.loop.run_callback(self._wake_dispatcher)

    def _wake_dispatcher(self) -> None:
        self.wake_scheduled = False
        waiter = self.waiter
        if waiter is not None:
            waiter.switch(None)


class Coroutines(WorkerModel):
    """At most `connections` greenlets serving at once; ready connections beyond that
    wait in order for one to finish."""

    # Requests run interleaved in one process, and threading.local is per greenlet once
    # patched: to the application, the same as threads (gunicorn's gevent worker says so
    # too).
    multithread = True
    cooperative_sockets = True

    def __init__(self, connections: int) -> None:
        super().__init__()
        self.size = connections
        self.in_flight = 0
        self.waiting: collections.deque[Served] = collections.deque()
        self.hub: Any = None
        # Greenlets that have served and wait in the hub for another connection.
        self.parked: list[Any] = []
        # The readiness set this model gave the dispatcher, which delivers ready
        # connections straight from gevent's loop.
        self.readiness: LoopReadiness | None = None
        # greenlet's class and getcurrent, set by `start`: an import statement in
        # `submit` would run importlib's `_handle_fromlist` on every request.
        self.greenlet: Any = None
        self.getcurrent: Callable[[], Any] | None = None

    def make_readiness(self, wake_fd: int) -> LoopReadiness:
        self.readiness = LoopReadiness()
        return self.readiness

    def start(self, dispatcher: Host) -> None:
        from gevent import get_hub
        from greenlet import getcurrent, greenlet

        super().start(dispatcher)
        self.hub = get_hub()
        self.greenlet = greenlet
        self.getcurrent = getcurrent
        if self.readiness is not None:
            self.readiness.deliver = dispatcher.submit_ready

    def submit(self, connection: Served) -> None:
        if self.in_flight >= self.size:
            self.waiting.append(connection)
            return
        self.in_flight += 1
        # A parked greenlet, else a bare one under the hub: gevent.spawn's Greenlet
        # (links, exception reporting) costs more than a small request's scheduling.
        serving = self.parked.pop() if self.parked else self.greenlet(self._serve, self.hub)
        assert self.getcurrent is not None
        if self.getcurrent() is self.hub:
            # Delivered by the loop itself: start serving now; the loop resumes when
            # the request first waits.
            serving.switch(connection)
        else:
            self.hub.loop.run_callback(serving.switch, connection)

    def _serve(self, connection: Served) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None and self.getcurrent is not None
        waiting = self.waiting
        hub = self.hub
        myself = self.getcurrent()
        thread = threading.get_ident()
        while True:
            try:
                serve_and_release(dispatcher, connection, thread)
            except BaseException:
                # sys.exit() or the like in the application: it ends that request
                # only. Left to the hub, it would stop the whole process.
                error_log.exception("unexpected exit serving a connection")
                connection.close()
            if waiting:
                connection = waiting.popleft()
                continue
            self.in_flight -= 1
            dispatcher.slot_freed()
            # Parked for the next connection rather than ended: a new greenlet costs a
            # fresh frame stack, mapped and unmapped by the interpreter (two system
            # calls and page faults per request, measured with strace).
            self.parked.append(myself)
            connection = hub.switch()

    def idle(self) -> bool:
        return self.in_flight == 0

    def requests_waiting(self) -> int:
        return len(self.waiting)

    def free_slots(self) -> int:
        return self.size - self.in_flight - len(self.waiting)

    def stop(self) -> None:
        # The dispatcher closes every connection it still has, these included.
        self.waiting.clear()

    def concurrency(self) -> int:
        return self.size

    def each(self) -> str:
        return f"{self.size} coroutine{'s' if self.size != 1 else ''} (gevent)"
