"""One worker process under the master: boot, serve with one model, report, retire.

Runs in the child the master forks. It drops privileges, patches for gevent, imports the
application (unless the master preloaded it), then serves with the dispatcher until the
master or its own limits (--max-requests, --max-worker-memory) end it. It writes its slot
of the master's table (`corral.process.slot_writer`): each request as it starts and ends,
and twice a second that it is alive, since when its oldest request in flight has run, its
connections, its waiting requests and its memory.

On SIGABRT (the master's --timeout) it writes the traceback of every thread, with the
request each one serves, to the error log before it exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from corral.app_loading import AppLoadError, load_app
from corral.config import ConfigError
from corral.process.exit_codes import WORKER_BOOT_ERROR
from corral.process.master import call_hook, unblock_signals_to_workers
from corral.process.reloader import report_load_failure, watch_app_sources
from corral.process.setup import (
    die_with_parent,
    drop_privileges,
    freeze_heap,
    prepare_process,
    reopen_logs,
    set_process_title,
)
from corral.process.slot_table import READY, RETIRING
from corral.process.slot_writer import (
    SlotPublisher,
    SlotWriter,
    requests_in_flight,
    resident_bytes,
)
from corral.serving.assembly import (
    build_dispatcher,
    make_server_tls,
    make_worker_model,
    reopen_access_logs,
)
from corral.serving.request_observer import RequestHooks, RequestObserver

if TYPE_CHECKING:
    from corral.process.master import Master, Worker
    from corral.serving.dispatcher import Dispatcher

error_log = logging.getLogger("corral.error")

_MIB = 1024 * 1024


class WorkerBoot:
    """What every worker starts from: the app's name, or the app the master preloaded."""

    def __init__(self, spec: str | None, app: Any = None) -> None:
        self.spec = spec
        self.app = app

    def __call__(self, master: Master, worker: Worker) -> int:
        return WorkerRun(self, master, worker).run()


class WorkerRun:
    def __init__(self, boot: WorkerBoot, master: Master, worker: Worker) -> None:
        self.boot = boot
        self.master = master
        self.worker = worker
        self.config = master.cfg
        self.retiring = False
        self.slot: SlotWriter | None = None
        self.publisher: SlotPublisher | None = None
        self.dispatcher: Dispatcher | None = None
        self.stop_asked = 0
        self.terminated = False
        self.logs_moved = False

    def _hook(self, name: str, *arguments: Any) -> None:
        call_hook(self.config, name, *arguments)

    def run(self) -> int:
        config = self.config
        self._defer_signals_while_booting()
        self.slot = SlotWriter(self.master.slots, self.worker.slot)
        set_process_title(config, "worker", self.boot.spec)
        self._hook("post_fork", self.master, self.worker)
        try:
            drop_privileges(config)
            prepare_process(config)
        except Exception as error:
            error_log.error("Worker %d cannot start: %s", os.getpid(), error)
            return WORKER_BOOT_ERROR
        # Booting, the worker answers no signal: it is killed outright if the master
        # dies (an app whose import hangs would hold the sockets for ever); serving, it
        # drains as on TERM. Set as the user it runs as (a change of user clears it);
        # the master may have died before this very call.
        die_with_parent(signal.SIGKILL)
        if os.getppid() != self.worker.ppid:
            return WORKER_BOOT_ERROR
        try:
            # After the patching (gevent's ssl), as the user the worker runs as; a new
            # worker after HUP reads the files again.
            tls = make_server_tls(config)
        except ConfigError as error:
            self.master.report_boot_failure(str(error), "")
            return WORKER_BOOT_ERROR
        app = self.boot.app
        if app is None:
            assert self.boot.spec is not None
            try:
                app = load_app(self.boot.spec)
            except AppLoadError as error:
                self.master.report_boot_failure(str(error), error.traceback_text)
                report_load_failure(error)
                return WORKER_BOOT_ERROR
            except BaseException:
                error_log.exception("Worker %d cannot load the app", os.getpid())
                return WORKER_BOOT_ERROR
        model = make_worker_model(config)
        self.slot.set_capacity(model.concurrency())
        observers: list[RequestObserver] = []
        hooks = RequestHooks.from_config(config, self.worker)
        if hooks is not None:
            observers.append(hooks)
        self.memory_limit = self._memory_limit()
        dispatcher = build_dispatcher(
            app,
            config,
            self.master.listeners,
            model,
            observers,
            multiprocess=True,
            tls=tls,
            refused=self.slot.refused,
            counts=self.slot.counts,
            counted=(
                self.slot.limit(self.worker.max_requests, self._served_enough)
                if self.worker.max_requests
                else None
            ),
        )
        self.dispatcher = dispatcher
        dispatcher.on_tick = self._tick
        signal.signal(signal.SIGTERM, self._terminate)
        die_with_parent(signal.SIGTERM)
        signal.signal(signal.SIGINT, self._quick_stop)
        signal.signal(signal.SIGQUIT, self._quick_stop)
        dispatcher.on_reopen = self._reopen_logs
        signal.signal(signal.SIGUSR1, dispatcher.request_reopen)
        if self.logs_moved:
            self._reopen_logs()
        self._hook("post_worker_init", self.worker)
        if self.stop_asked:
            # Asked to stop while it booted: nothing is in flight, so stopping now is
            # the graceful stop, and the master sees an ordinary exit.
            name = signal.Signals(self.stop_asked).name.removeprefix("SIG")
            error_log.info("Worker %d stopping: %s arrived while it booted", os.getpid(), name)
            if self.stop_asked != signal.SIGTERM:
                self._hook("worker_int", self.worker)
            self.worker.alive = False
            self._hook("worker_exit", self.master, self.worker)
            return 0
        watch_app_sources()
        freeze_heap()
        self._tick()
        self.publisher = SlotPublisher(
            self.slot,
            dispatcher.connections_now,
            dispatcher.served_elsewhere,
            dispatcher.requests_waiting,
            None if dispatcher.sizing is None else dispatcher.sizing.advice,
        )
        self.publisher.start()
        try:
            dispatcher.run()
        finally:
            # The last counts, before the master adds them up.
            self.publisher.stop()
            self.publisher.publish()
            self.worker.alive = False
            self._hook("worker_exit", self.master, self.worker)
        return 0

    def _defer_signals_while_booting(self) -> None:
        """Remember TERM, INT, QUIT and USR1 until the worker can act on them; the master
        kept them blocked since the fork."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(signum, self._remember_signal)
        signal.signal(signal.SIGABRT, self._abort)
        for ignored in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2):
            signal.signal(ignored, signal.SIG_IGN)
        unblock_signals_to_workers()

    def _remember_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGUSR1:
            self.logs_moved = True
        elif self.stop_asked in (0, signal.SIGTERM):
            # A quick stop asked for after TERM wins, as it does once the worker serves.
            self.stop_asked = signum

    # Heartbeat and limits, on the loop thread.

    def _tick(self) -> None:
        slot = self.slot
        assert slot is not None
        resident = resident_bytes()
        if not self.retiring:
            if self.memory_limit and slot.requests() and resident / _MIB > self.memory_limit:
                self._retire(
                    f"{resident / _MIB:.0f} MiB resident (--max-worker-memory {self.memory_limit})"
                )
            if os.getppid() != self.worker.ppid:
                error_log.error("Worker %d: the master is gone; stopping", os.getpid())
                self._retire("the master is gone")
        self._beat(resident)

    def _beat(self, resident: int) -> None:
        assert self.slot is not None
        self.slot.beat(RETIRING if self.retiring else READY, resident)

    def _served_enough(self) -> None:
        """Called by the slot writer, on the thread that finished the last request."""
        limit = self.worker.max_requests
        self._retire(f"served {limit} requests (--max-requests {limit})")

    def _memory_limit(self) -> int:
        limit = int(self.config.max_worker_memory)
        if limit:
            resident = resident_bytes() / _MIB
            if resident >= limit:
                # Retiring now would start a replacement just as large, forever.
                error_log.error(
                    "--max-worker-memory %d is below a freshly started worker's %.0f MiB; ignored",
                    limit,
                    resident,
                )
                return 0
        return limit

    def _retire(self, reason: str) -> None:
        if self.retiring:
            return
        assert self.dispatcher is not None
        self.retiring = True
        # Draining first: once the line is logged, every response says "Connection: close".
        self.dispatcher.retire()
        error_log.info("Worker %d retiring: %s", os.getpid(), reason)
        self._beat(resident_bytes())

    # Signal handlers.

    def _terminate(self, *_: object) -> None:
        """TERM: from a master that stops for good, the server's stop, --drain-delay
        first; from one replacing this worker (HUP, TTOU, a failed reload) or from an
        operator, a retirement, the other workers serving on. A second one stops at once."""
        dispatcher = self.dispatcher
        assert dispatcher is not None
        first, self.terminated = not self.terminated, True
        if first and self.retiring:
            # Already draining by itself (--max-requests, --max-worker-memory): the
            # master's TERM is no second stop, and lets that drain finish.
            if self.master.slots.stopping:
                dispatcher.unready = True
            return
        if self.master.slots.stopping or dispatcher.stop_asked:
            dispatcher.request_stop()
        else:
            dispatcher.retire()

    def _quick_stop(self, *_: object) -> None:
        assert self.dispatcher is not None
        self._hook("worker_int", self.worker)
        self.dispatcher.request_quick_stop()

    def _reopen_logs(self) -> None:
        assert self.dispatcher is not None
        dispatcher = self.dispatcher
        reopen_logs(self.config, lambda: reopen_access_logs(dispatcher))

    def _abort(self, _signum: int, frame: Any) -> None:
        dispatcher = self.dispatcher
        in_flight = requests_in_flight(dispatcher.connections_now()) if dispatcher else {}
        now = time.monotonic()
        names = {thread.ident: thread.name for thread in threading.enumerate()}

        def doing(ident: int) -> str:
            request = in_flight.get(ident)
            if request is None:
                return ""
            return f', serving "{request[1]}" for {now - request[0]:.1f} s'

        stacks: list[tuple[str, Any]] = []
        for ident, thread_frame in sys._current_frames().items():
            if ident == threading.get_ident():
                thread_frame = frame
            stacks.append((f"Thread {names.get(ident, ident)}{doing(ident)}", thread_frame))
        for greenlet_id, greenlet_frame in _greenlet_frames():
            stacks.append((f"Greenlet {greenlet_id}{doing(greenlet_id)}", greenlet_frame))
        lines = [f"Worker {os.getpid()} aborted by --timeout; its threads and greenlets:"]
        lines.extend(group_stacks(stacks))
        error_log.critical("\n".join(lines))
        self._hook("worker_abort", self.worker)
        logging.shutdown()
        os._exit(1)


def group_stacks(stacks: list[tuple[str, Any]], shown: int = 3) -> list[str]:
    """Lines for a dump of `(description, frame)` pairs, identical stacks told once:
    "812 greenlets with this stack (Greenlet 1, serving ...; ...):" then the stack. A
    worker of 1,000 greenlets waiting in the same place writes one stack, not 1,000."""
    groups: dict[str, list[str]] = {}
    for description, frame in stacks:
        text = "".join(traceback.format_stack(frame)).rstrip()
        groups.setdefault(text, []).append(description)
    lines = []
    for text, descriptions in sorted(groups.items(), key=lambda item: -len(item[1])):
        if len(descriptions) == 1:
            lines.append(f"{descriptions[0]}:")
        else:
            named = "; ".join(descriptions[:shown])
            more = f"; and {len(descriptions) - shown} more" if len(descriptions) > shown else ""
            lines.append(f"{len(descriptions)} with this stack ({named}{more}):")
        lines.append(text)
    return lines


def _greenlet_frames() -> list[tuple[int, Any]]:
    """(id, frame) of each greenlet suspended in this process, when gevent is in use:
    their stacks are not threads' frames."""
    if "gevent" not in sys.modules:
        return []
    import gc

    from greenlet import greenlet

    return [
        (id(item), item.gr_frame)
        for item in gc.get_objects()
        if isinstance(item, greenlet) and item.gr_frame is not None
    ]
