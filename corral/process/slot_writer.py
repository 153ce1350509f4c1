"""One serving process's writer of its own slot in the shared table.

`SlotWriter` is a request observer (`started` / `finished`, see
`corral.serving.request_observer`) and is told of the requests corral refuses itself
(`refused`) and of waits on a slow client (`client_wait`); the serving loop has it write
the process's state twice a second (`beat`). It also keeps, in this process's memory,
each request in flight by thread for --timeout's dump and oldest start, and the count
that --max-requests checks.

Writes go to shared memory under the slot's version counter (odd while a change is being
made), with a lock between this process's threads: a few word updates per request, and
one packed record per request in flight (measured in bench/, "--stats").
"""

from __future__ import annotations

import bisect
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from corral.process.slot_table import (
    BEAT,
    BUCKETS,
    BYTES_IN,
    BYTES_OUT,
    CAPACITY,
    CONNECTIONS,
    DURATION_BOUNDS,
    DURATION_SUM,
    ENTRIES,
    ENTRIES_OFFSET,
    ENTRY,
    ENTRY_WORDS,
    IN_APP,
    OLDEST,
    PARENT,
    PID,
    READY,
    REQUESTS,
    RSS,
    SLOT_SIZE,
    STATE,
    STATUS,
    VERSION,
    WAITING,
    SlotTable,
)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Thread names remembered by thread (or greenlet) id; forgotten all at once past this
# many, as greenlets come and go.
_NAMES_KEPT = 4096
_ENTRY_SIZE = ENTRY.size
_pack_entry = ENTRY.pack_into
_monotonic = time.monotonic
_get_ident = threading.get_ident


class RequestLine(Protocol):
    """What the writer reads of a request head (`corral.http.parser.RequestHead`)."""

    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def version(self) -> str: ...


class Answer(Protocol):
    """What the writer reads of an answered request
    (`corral.serving.request_observer.RequestRecord`)."""

    @property
    def status_code(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def head_bytes(self) -> int: ...


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


class SlotWriter:
    """Writes slot `index` of `table` for this process; after `limit` requests
    (--max-requests, 0 for none), `on_limit` is called once, on the thread that finished
    the last one."""

    def __init__(
        self,
        table: SlotTable,
        index: int,
        limit: int = 0,
        on_limit: Callable[[], None] | None = None,
    ) -> None:
        self.table = table
        self.limit = limit
        self.on_limit = on_limit
        self.lock = threading.Lock()
        # thread ident -> (monotonic start, head), every request in flight, for the dump
        # and `oldest_start`; the request line is only formatted for the dump.
        self.in_flight: dict[int, tuple[float, RequestLine]] = {}
        # thread ident -> when its request began waiting on its client.
        self.waiting: dict[int, float] = {}
        # thread ident -> its record among the slot's ENTRIES.
        self.entries: dict[int, int] = {}
        self.free_entries = list(range(ENTRIES - 1, -1, -1))
        self.thread_names: dict[int, bytes] = {}
        self.served = 0
        # --process-per-request: the slots request processes forked from here write, and
        # the one chosen for the process being forked (-1: none).
        self.owner = os.getpid()
        self.request_process_slots: list[int] = []
        self.next_slot = -1
        self._use(index)
        self._change(PID, self.owner)

    def _use(self, index: int) -> None:
        self.index = index
        self.memory = self.table.slot_memory(index)
        self.words = self.memory.cast("q")
        self.floats = self.memory.cast("d")

    def _change(self, word: int, value: int) -> None:
        words = self.words
        with self.lock:
            words[VERSION] += 1
            words[word] = value
            words[VERSION] += 1

    def set_capacity(self, requests: int) -> None:
        """How many requests this process's model serves at once."""
        self._change(CAPACITY, requests)

    # The request observer, on the threads that serve.

    def started(self, head: RequestLine, environ: dict[str, Any]) -> int:
        now = _monotonic()
        ident = _get_ident()
        name = self.thread_names.get(ident)
        if name is None:
            name = self._name_thread(ident)
        method = head.method.encode("latin-1", "replace")
        path = head.path.encode("utf-8", "replace")
        words = self.words
        with self.lock:
            self.in_flight[ident] = (now, head)
            words[VERSION] += 1
            words[IN_APP] += 1
            free = self.free_entries
            if free:
                entry = free.pop()
                self.entries[ident] = entry
                _pack_entry(
                    self.memory, ENTRIES_OFFSET + entry * _ENTRY_SIZE, now, method, name, path
                )
            words[VERSION] += 1
        return ident

    def _name_thread(self, ident: int) -> bytes:
        names = self.thread_names
        if len(names) >= _NAMES_KEPT:
            names.clear()
        name = threading.current_thread().name.encode("utf-8", "replace")
        names[ident] = name
        return name

    def finished(self, token: int, record: Answer, seconds: float) -> None:
        status_class = record.status_code // 100
        bucket = bisect.bisect_left(DURATION_BOUNDS, seconds)
        words = self.words
        with self.lock:
            self.in_flight.pop(token, None)
            self.waiting.pop(token, None)
            entry = self.entries.pop(token, -1)
            words[VERSION] += 1
            words[IN_APP] -= 1
            words[REQUESTS] += 1
            if 1 <= status_class <= 5:
                words[STATUS + status_class - 1] += 1
            words[BYTES_IN] += record.received
            words[BYTES_OUT] += record.head_bytes + record.sent
            self.floats[DURATION_SUM] += seconds
            words[BUCKETS + bucket] += 1
            if entry >= 0:
                self.floats[(ENTRIES_OFFSET // 8) + entry * ENTRY_WORDS] = 0.0
                self.free_entries.append(entry)
            words[VERSION] += 1
            self.served += 1
            served = self.served
        if served == self.limit and self.on_limit is not None:
            self.on_limit()

    def refused(self, status: int) -> None:
        """A request corral answered itself, without the app (a bad head, a body over the
        limit, a wait past --queue-timeout, a late head): counted, not timed."""
        status_class = status // 100
        words = self.words
        with self.lock:
            words[VERSION] += 1
            words[REQUESTS] += 1
            if 1 <= status_class <= 5:
                words[STATUS + status_class - 1] += 1
            words[VERSION] += 1

    def client_wait(self, waiting: bool) -> None:
        """The calling thread's request begins (True) or ends (False) waiting on its
        client: a slow reader. --timeout times the application, not the client, so the
        wait does not count (`oldest_start` skips the request while it waits, and its
        start moves later by the wait)."""
        ident = _get_ident()
        with self.lock:
            if waiting:
                self.waiting[ident] = _monotonic()
                return
            since = self.waiting.pop(ident, None)
            entry = self.in_flight.get(ident)
            if since is not None and entry is not None:
                self.in_flight[ident] = (entry[0] + _monotonic() - since, entry[1])

    # The serving loop's thread.

    def oldest_start(self) -> float:
        """When the longest-running request in flight began, not counting its waits on
        its client; 0.0 when none is, or when each one in flight waits on its client."""
        with self.lock:
            waiting = self.waiting
            return min(
                (started for ident, (started, _) in self.in_flight.items() if ident not in waiting),
                default=0.0,
            )

    def beat(self, state: int, connections: int, waiting: int, rss: int) -> None:
        """Write the process's state (`corral.process.slot_table` READY or RETIRING), that
        it is alive, since when its oldest request has run, its open connections, its
        requests waiting for a thread, and its resident bytes."""
        oldest = self.oldest_start()
        words = self.words
        floats = self.floats
        with self.lock:
            words[VERSION] += 1
            words[STATE] = state
            floats[BEAT] = _monotonic()
            floats[OLDEST] = oldest
            words[CONNECTIONS] = connections
            words[WAITING] = waiting
            words[RSS] = rss
            words[VERSION] += 1

    def requests_in_flight(self) -> dict[int, tuple[float, str]]:
        """Thread ident -> (start, request line), for the dump of a worker's threads."""
        return {
            ident: (started, f"{head.method} {head.target} {head.version}")
            for ident, (started, head) in list(self.in_flight.items())
        }

    # --process-per-request.

    def write_request_processes_to(self, slots: list[int]) -> None:
        """Have each request process forked from this one write one of `slots` of the
        table, chosen before the fork among those whose last process has exited; the
        readers add them to this process's slot."""
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
        """In the child just forked: write the slot chosen for it from now on; its
        counts add to those of the processes that wrote it before."""
        index, self.next_slot = self.next_slot, -1
        parent = self.owner
        self.owner = os.getpid()
        self.request_process_slots = []
        self.lock = threading.Lock()
        self.in_flight.clear()
        self.waiting.clear()
        self.entries.clear()
        self.free_entries = list(range(ENTRIES - 1, -1, -1))
        if index < 0:
            # No slot free (a process that died before it could write its own still
            # holds one): write to memory no one reads rather than to the parent's slot.
            self.index = -1
            self.memory = memoryview(bytearray(SLOT_SIZE))
            self.words = self.memory.cast("q")
            self.floats = self.memory.cast("d")
            return
        self._use(index)
        words = self.words
        version = words[VERSION]
        # Odd now, whether or not the last process was killed in the middle of a change.
        words[VERSION] = version + (1 if version % 2 == 0 else 2)
        words[PID] = self.owner
        words[PARENT] = parent
        words[STATE] = READY
        for word in (IN_APP, WAITING, CONNECTIONS, RSS, CAPACITY):
            words[word] = 0
        self.memory[ENTRIES_OFFSET:SLOT_SIZE] = bytes(SLOT_SIZE - ENTRIES_OFFSET)
        words[VERSION] += 1


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
