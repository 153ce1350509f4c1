"""One serving process's writer of its own slot in the shared table.

Nothing here runs per request. The connection adds each answered request to the
process's running counts, a plain list (`corral.serving.request_counts`), and records on
itself the request it serves, since when and on which thread. `SlotPublisher`, a thread
of the process, writes from those a few times a second: the requests in the app and
their records, the oldest one's start for --timeout (less its waits on a slow client),
the connections, the waiting requests and the counts. The serving loop writes the
process's state, that it is alive, and its memory, twice a second (`beat`), so that a
loop that stops turning shows as a beat that stops. Both write under the slot's version,
taking a lock between them; readers never block them.

Measured against a hello world served whole (25 µs a request on the benchmark machine):
a call per request into a writer, or a record written per request, cost 3 µs; the list
additions cost well under one.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from corral.process.slot_table import (
    BEAT,
    CAPACITY,
    CONNECTIONS,
    CUMULATIVE,
    ENTRIES,
    ENTRIES_OFFSET,
    ENTRY,
    IN_APP,
    OLDEST,
    PARENT,
    PID,
    READY,
    REQUESTS,
    RSS,
    SIZING_CPU_PPM,
    SIZING_SAMPLES,
    SIZING_THREADS,
    SLOT_SIZE,
    STATE,
    VERSION,
    WAITING,
    SlotTable,
)
from corral.serving.request_counts import (
    BUCKET_COUNT,
    BYTES_IN,
    BYTES_OUT,
    DURATION_SUM,
    FIRST_BUCKET,
    STATUS_CLASSES,
    new_counts,
)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Seconds between two writes of the requests in the app and the counts.
PUBLISH_INTERVAL = 0.25


def resident_bytes() -> int:
    """This process's resident memory in bytes (VmRSS). Without /proc (macOS, the BSDs),
    the peak instead, which only ever grows; macOS gives it in bytes, the others in KiB."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def start_real_thread(target: Callable[[], None], name: str) -> None:
    """Run `target` on a daemon thread of the operating system, even where gevent has
    patched threading (a greenlet would wait for the app's greenlets to yield)."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            monkey.get_original("_thread", "start_new_thread")(target, ())
            return
    threading.Thread(target=target, name=name, daemon=True).start()


def real_sleep() -> Callable[[float], None]:
    """`time.sleep` as it was before gevent patched it, for a real thread."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("time"):
            sleep: Callable[[float], None] = monkey.get_original("time", "sleep")
            return sleep
    return time.sleep


def _cumulative(counts: list[float]) -> list[Any]:
    """The slot's cumulative words from a process's running counts, copied at once (one
    slice, which no other thread interrupts) so that they agree with each other."""
    counts = counts[:]
    classes = counts[:STATUS_CLASSES]
    return [
        int(sum(classes)),
        *(int(value) for value in classes[1:6]),
        int(counts[BYTES_IN]),
        int(counts[BYTES_OUT]),
        float(counts[DURATION_SUM]),
        *(int(value) for value in counts[FIRST_BUCKET : FIRST_BUCKET + BUCKET_COUNT]),
    ]


class SlotWriter:
    """Writes slot `index` of `table` for this process. `counts` is the list the
    connections add to (`corral.serving.request_counts`)."""

    def __init__(self, table: SlotTable, index: int) -> None:
        self.table = table
        self.counts = new_counts()
        self.lock = threading.Lock()
        self.owner = os.getpid()
        # --process-per-request: the slots its request processes write, and the one
        # chosen for the process being forked (-1: none).
        self.request_process_slots: list[int] = []
        self.next_slot = -1
        # True in a request process, which has no thread to write its counts.
        self.in_request_process = False
        self._use(index)
        self._change(PID, self.owner)

    def _use(self, index: int) -> None:
        self.index = index
        if index < 0:
            self.memory = memoryview(bytearray(SLOT_SIZE))
        else:
            self.memory = self.table.slot_memory(index)
        self.words = self.memory.cast("q")
        self.floats = self.memory.cast("d")

    def _begin(self) -> None:
        # Odd while the slot changes; a process killed in the middle leaves it odd.
        version = self.words[VERSION]
        self.words[VERSION] = version + (1 if version % 2 == 0 else 2)

    def _end(self) -> None:
        self.words[VERSION] += 1

    def _change(self, word: int, value: int) -> None:
        with self.lock:
            self._begin()
            self.words[word] = value
            self._end()

    def set_capacity(self, requests: int) -> None:
        """How many requests this process's model serves at once."""
        self._change(CAPACITY, requests)

    def requests(self) -> int:
        """Requests answered so far, the app's and those corral refused itself."""
        return int(sum(self.counts[:STATUS_CLASSES]))

    def refused(self, status: int) -> None:
        """A request corral answered itself, without the app (a bad head, a body over the
        limit, a wait past --queue-timeout, a late head): counted, not timed."""
        self.counts[status // 100] += 1
        if self.in_request_process:
            self.write_counts()

    def limit(self, requests: int, reached: Callable[[], None]) -> Callable[[], None]:
        """What the connection calls after each request the app ran, calling `reached`
        once `requests` have been (--max-requests)."""
        served = itertools.count(1)

        def counted() -> None:
            # `next` on a count is one step no other thread interrupts.
            if next(served) == requests:
                reached()

        return counted

    def beat(self, state: int, rss: int) -> None:
        """On the serving loop: the process's state (READY or RETIRING), that it is
        alive, and its resident bytes."""
        with self.lock:
            self._begin()
            self.words[STATE] = state
            self.floats[BEAT] = time.monotonic()
            self.words[RSS] = rss
            self._end()

    def publish(
        self,
        requests: Iterable[tuple[float, float, bool, str, str, str]],
        connections: int,
        waiting: int,
    ) -> None:
        """Write the requests in the app, each (start, start less its waits on its
        client, waiting on its client now, method, thread name, path), the oldest first
        in the slot's records; the open connections; the requests waiting; the counts."""
        ordered = sorted(requests)
        oldest = min(
            (running for _, running, on_client, *_ in ordered if not on_client), default=0.0
        )
        cumulative = _cumulative(self.counts)
        memory = self.memory
        with self.lock:
            self._begin()
            words = self.words
            words[IN_APP] = len(ordered)
            self.floats[OLDEST] = oldest
            words[CONNECTIONS] = connections
            words[WAITING] = waiting
            CUMULATIVE.pack_into(memory, REQUESTS * 8, *cumulative)
            for number, (started, _, _, method, thread, path) in enumerate(ordered[:ENTRIES]):
                ENTRY.pack_into(
                    memory,
                    ENTRIES_OFFSET + number * ENTRY.size,
                    started,
                    method.encode("latin-1", "replace"),
                    thread.encode("utf-8", "replace"),
                    path.encode("utf-8", "replace"),
                )
            if len(ordered) < ENTRIES:
                # The list ends with a record whose start is 0.0.
                offset = ENTRIES_OFFSET + len(ordered) * ENTRY.size
                memory[offset : offset + 8] = bytes(8)
            self._end()

    def write_sizing(self, samples: int, cpu_fraction: float, threads: int) -> None:
        """The sizing sample so far: requests sampled, their CPU share, threads advised."""
        with self.lock:
            self._begin()
            words = self.words
            words[SIZING_SAMPLES] = samples
            words[SIZING_CPU_PPM] = round(cpu_fraction * 1e6)
            words[SIZING_THREADS] = threads
            self._end()

    def write_counts(self) -> None:
        """Write the counts alone (a request process, at each request's end)."""
        cumulative = _cumulative(self.counts)
        with self.lock:
            self._begin()
            CUMULATIVE.pack_into(self.memory, REQUESTS * 8, *cumulative)
            self._end()

    # --process-per-request.

    def write_request_processes_to(self, slots: list[int]) -> None:
        """Have each request process forked from this one write its counts to one of
        `slots` of the table, chosen before the fork among those whose last process has
        exited; the readers add them to this process's slot."""
        global _forking_writer
        self.request_process_slots = slots
        _forking_writer = self
        _watch_forks()

    def _choose_slot(self) -> None:
        self.next_slot = -1
        if os.getpid() != self.owner:
            # The application forking inside a request process: not ours to track.
            return
        for index in self.request_process_slots:
            words = self.table.slot_memory(index).cast("q")
            pid = words[PID]
            if not pid or not _alive(pid):
                # Marked with this process's pid until the child writes its own, so that
                # a fork right after this one takes another slot. The slot's last process
                # has exited and the next has not started: no one else writes it now.
                version = words[VERSION]
                words[VERSION] = version + (1 if version % 2 == 0 else 2)
                words[PID] = self.owner
                words[VERSION] += 1
                self.next_slot = index
                return

    def _become_request_process(self) -> None:
        """In the child just forked: write the counts to the slot chosen for it from now
        on, added to those of the processes that wrote it before."""
        index, self.next_slot = self.next_slot, -1
        parent = self.owner
        self.owner = os.getpid()
        self.request_process_slots = []
        self.in_request_process = True
        # The parent's threads may have held it at the fork.
        self.lock = threading.Lock()
        # No slot free (a process that died before it could write its own still holds
        # one): written to memory no one reads rather than to the parent's slot.
        self._use(index)
        earlier = CUMULATIVE.unpack_from(self.memory, REQUESTS * 8)
        counts = self.counts
        counts[:] = new_counts()
        # The earlier processes' counts, in this layout: 2xx into index 2, and so on.
        counts[BYTES_IN], counts[BYTES_OUT], counts[DURATION_SUM] = earlier[6:9]
        for status_class in range(1, 6):
            counts[status_class] = earlier[status_class]
        counts[0] = earlier[0] - sum(earlier[1:6])
        counts[FIRST_BUCKET : FIRST_BUCKET + BUCKET_COUNT] = earlier[9:]
        self._begin()
        words = self.words
        words[PID] = self.owner
        words[PARENT] = parent
        words[STATE] = READY
        for word in (IN_APP, WAITING, CONNECTIONS, RSS, CAPACITY):
            words[word] = 0
        self.memory[ENTRIES_OFFSET:SLOT_SIZE] = bytes(SLOT_SIZE - ENTRIES_OFFSET)
        self._end()


class SlotPublisher:
    """The thread that writes a process's slot from its connections a few times a second.

    `connections()` gives the process's connections and `elsewhere()` those whose request
    another process serves (--process-per-request), `waiting()` the requests waiting for
    a thread; all three are read from this thread while the process serves (a snapshot
    under the GIL, a stale value at worst).
    """

    def __init__(
        self,
        writer: SlotWriter,
        connections: Callable[[], Iterable[Any]],
        elsewhere: Callable[[], Iterable[Any]],
        waiting: Callable[[], int],
        sizing: Callable[[], Any] | None = None,
    ) -> None:
        self.writer = writer
        self.connections = connections
        self.elsewhere = elsewhere
        self.waiting = waiting
        # The process's sizing advice (`SizingObserver.advice`), if it measures one.
        self.sizing = sizing
        self.stopped = False

    def start(self) -> None:
        start_real_thread(self._run, "corral-slot")

    def stop(self) -> None:
        self.stopped = True

    def _run(self) -> None:
        sleep = real_sleep()
        while not self.stopped:
            self.publish()
            sleep(PUBLISH_INTERVAL)

    def publish(self) -> None:
        connections = list(self.connections())
        self.writer.publish(
            requests_in_app(connections, self.elsewhere()), len(connections), self.waiting()
        )
        advice = self.sizing() if self.sizing is not None else None
        if advice is not None:
            self.writer.write_sizing(advice.samples, advice.cpu_fraction, advice.threads)


def requests_in_app(
    connections: Iterable[Any], elsewhere: Iterable[Any] = ()
) -> list[tuple[float, float, bool, str, str, str]]:
    """(start, start less waits on the client, waiting on the client now, method, thread
    name, path) of each request in the app, from connections
    (`corral.serving.connection.Connection`) read while other threads change them."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    found = []
    for connection in connections:
        head = connection.request
        if head is None or not connection.busy:
            continue
        thread = connection.request_thread
        found.append(
            (
                connection.request_started,
                connection.request_started + connection.waited_on_client(),
                bool(connection.client_waiting_since),
                head.method,
                names.get(thread) or f"greenlet-{thread:x}",
                head.path,
            )
        )
    for connection in elsewhere:
        head = connection.head
        if head is not None:
            found.append((connection.submitted, 0.0, True, head.method, "process", head.path))
    return found


def requests_in_flight(connections: Iterable[Any]) -> dict[int, tuple[float, str]]:
    """Thread ident -> (start, request line) of each request in the app, for the dump of
    a worker's threads."""
    return {
        connection.request_thread: (
            connection.request_started,
            f"{connection.request.method} {connection.request.target} {connection.request.version}",
        )
        for connection in connections
        if connection.request is not None and connection.busy
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The writer whose request processes write slots of their own (one per process).
_forking_writer: SlotWriter | None = None
_forks_watched = False


def _before_fork() -> None:
    if _forking_writer is not None:
        _forking_writer._choose_slot()


def _after_fork_in_child() -> None:
    if _forking_writer is not None:
        _forking_writer._become_request_process()


def _watch_forks() -> None:
    global _forks_watched
    if not _forks_watched:
        _forks_watched = True
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
