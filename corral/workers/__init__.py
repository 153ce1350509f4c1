"""Concurrency models: each decides only who runs `Connection.serve()` and when."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Served(Protocol):
    """A connection as a model sees it (`corral.serving.connection.Connection` is one)."""

    closed: bool
    # Bytes received and not yet used: the start of a next request.
    buffer: bytearray
    # Set while the connection ends after its answer, read a while first.
    lingering_until: float
    # The ident of the thread (or greenlet) serving it.
    request_thread: int

    def serve(self) -> bool:
        """Serve every complete request that has arrived; False once closed or ending
        (then `closed`, or still read by the dispatcher a moment before it closes)."""
        ...

    def close(self) -> None: ...

    def linger_after_child(self) -> None:
        """Read the client a while before closing, as the request process that served
        the connection ended it."""
        ...

    def hand_back(self) -> tuple[bytes, bytes]:
        """In a process giving the connection back: (response bytes not sent yet, bytes
        received and not used)."""
        ...

    def restore(self, received: bytes, unsent: bytes = b"") -> None:
        """Take back a connection another process served: the bytes it received but did
        not use (a next request's start), and response bytes it has not sent yet."""

    def forward_refusals(self, fd: int) -> None:
        """In a child serving this connection: write refused requests to `fd` for the
        parent to count (process per request)."""

    def take_refusals(self, data: bytes) -> None:
        """Count the refused requests a child serving this connection wrote."""

    @property
    def stays_in_process(self) -> bool:
        """True when a forked process serving the connection must keep it to its end
        (its TLS session lives in that process's memory)."""
        ...

    def serve_to_end(self, idle_seconds: float) -> None:
        """Serve requests until the client closes or is idle `idle_seconds`; then close."""


class Host(Protocol):
    """What a model may ask of the dispatcher that hands it connections
    (`corral.serving.dispatcher.Dispatcher` is one). Connections are typed `Any` here:
    the host passes its own kind and takes it back."""

    def release(self, connection: Any) -> None:
        """Watch a served connection again; whoever served it calls this once."""

    def slot_freed(self) -> None:
        """A request ended; callable from any thread."""

    def submit_ready(self, fd: int) -> bool:
        """Submit the connection on `fd` at once (for a loop that reports readiness
        itself); False if `fd` is no connection."""
        ...

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` on the host's thread when `fd` becomes readable."""

    def unwatch(self, fd: int) -> None: ...

    def close_in_child(self, keep: Any) -> None:
        """In a forked child: let go of everything inherited except `keep`."""


class WorkerModel:
    """Base of the models; `submit` is called on the dispatcher's thread."""

    multithread = False
    multiprocess = False
    # True when `submit` serves the connection before it returns, on the dispatcher's
    # thread: the dispatcher then never needs to disarm a connection while it is served.
    serves_inline = False
    # True when `concurrency()` is a ceiling, reached only when that many requests come.
    ceiling_only = False
    # True when connection sockets keep a timeout, for a library (gevent) that waits on
    # them cooperatively; otherwise they are non-blocking and Connection waits itself.
    cooperative_sockets = False
    # True when requests run on a fixed number of this process's threads (one at a
    # time, the thread pool): requests that call this same server can hold every one of
    # them, which the self-call guard watches for (`corral.serving.self_call_guard`).
    fixed_threads = False

    def __init__(self) -> None:
        self.dispatcher: Host | None = None

    def start(self, dispatcher: Host) -> None:
        self.dispatcher = dispatcher

    def submit(self, connection: Served) -> None:
        raise NotImplementedError

    def idle(self) -> bool:
        """True when no request is being served."""
        return True

    def requests_waiting(self) -> int:
        """How many connections with a whole request wait for a thread, coroutine or
        process (requests a model serves inline wait in the kernel, uncounted)."""
        return 0

    def served_elsewhere(self) -> list[Served]:
        """Connections whose request a process of the model's own serves now."""
        return []

    def free_slots(self) -> int:
        """How many more requests could start now; a worker among several accepts a new
        connection only while this is above 0, so that no request waits behind a busy
        worker while another sits idle."""
        return 1

    def withdraw_waiting(self, chosen: Callable[[Any], bool]) -> list[Any]:
        """Take the connections waiting for a slot that `chosen` picks out of the model,
        as a slot would take them: they are the caller's to serve or close, no longer
        counted in flight (the caller then calls `Host.slot_freed`). Any thread may call
        it. A model that keeps no connections waiting returns []."""
        return []

    def make_readiness(self, wake_fd: int) -> Any:
        """A readiness set of the model's own (gevent's loop), or None for the default."""
        return None

    def stop(self) -> None:
        """Called once the dispatcher has drained or given up waiting."""

    def concurrency(self) -> int:
        """How many requests can be inside the application at once."""
        raise NotImplementedError

    def each(self) -> str:
        """What serves requests in one process, e.g. '8 threads (thread pool)'."""
        raise NotImplementedError

    def describe(self, workers: int = 0) -> str:
        """The start-up line's account, e.g. '1 process × 8 threads (thread pool) = 8
        requests at a time'; for `workers` worker processes when given."""
        if workers:
            processes = f"{workers} worker process{'es' if workers != 1 else ''}"
        else:
            processes = "1 process"
        total = max(workers, 1) * self.concurrency()
        upto = "up to " if self.ceiling_only else ""
        requests = f"{total} request{'s' if total != 1 else ''}"
        return f"{processes} × {self.each()} = {upto}{requests} at a time"


def serve_and_release(dispatcher: Host, connection: Served, thread: int) -> None:
    """Serve a ready connection on `thread` (the serving thread's or greenlet's
    `threading.get_ident()`, which the slot table shows), and hand it back to the
    dispatcher if it stays open, or if it ends but reads its client a while first
    (`Connection.linger`)."""
    connection.request_thread = thread
    if serve_safely(connection) or not connection.closed:
        dispatcher.release(connection)


def serve_safely(connection: Served) -> bool:
    """Serve a ready connection; True if it stays open."""
    try:
        return connection.serve()
    except Exception:
        # Connection.serve answers every request error itself; anything here is our bug.
        import logging

        logging.getLogger("corral.error").exception("unexpected error serving a connection")
        connection.close()
        return False


@dataclass(frozen=True)
class ModelEntry:
    """Where a model's class lives (imported only when chosen: gevent's imports gevent)
    and the settings, by name, passed to its constructor in order."""

    module: str
    class_name: str
    settings: tuple[str, ...]


# Every concurrency model one process can run, by the name the start-up line and the
# tests use.
MODELS: dict[str, ModelEntry] = {
    "one-at-a-time": ModelEntry("corral.workers.one_at_a_time", "OneAtATime", ()),
    "thread-pool": ModelEntry(
        "corral.workers.thread_pool", "ThreadPool", ("threads", "max_threads")
    ),
    "thread-per-request": ModelEntry(
        "corral.workers.thread_per_request", "ThreadPerRequest", ("max_threads",)
    ),
    "process-per-request": ModelEntry(
        "corral.workers.process_per_request",
        "ProcessPerRequest",
        ("process_per_request", "keep_alive"),
    ),
    "gevent": ModelEntry("corral.workers.coroutines", "Coroutines", ("worker_connections",)),
}


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def model_name(worker_class: str, thread_per_request: bool, process_per_request: int) -> str:
    """The model the settings choose (they were checked to choose at most one)."""
    if worker_class == "gevent":
        return "gevent"
    if process_per_request:
        return "process-per-request"
    if thread_per_request:
        return "thread-per-request"
    if worker_class == "thread":
        return "thread-pool"
    return "one-at-a-time"


def make_model(name: str, settings: Callable[[str], Any]) -> WorkerModel:
    """The model `name`, built with the values `settings(setting_name)` gives."""
    entry = MODELS[name]
    model_class = getattr(importlib.import_module(entry.module), entry.class_name)
    model: WorkerModel = model_class(*(settings(setting) for setting in entry.settings))
    return model
