"""One serving process's writer of its own slot in the shared table.

The connection tells `SlotWriter` of each request as it enters the app and as it leaves
(`enter` / `leave`), and of the requests corral refuses itself (`refused`) and of waits on
a slow client (`client_wait`); the serving loop has it write the process's state twice a
second (`beat`). It also keeps, in this process's memory, each request in flight by
thread for --timeout's dump and oldest start, and the count that --max-requests checks.

The per-request path takes no lock (measured in bench/, the "--stats" rows): a request
takes a free record of the slot (a list pop, atomic under the GIL), which only its
thread writes until it gives it back, under the record's own version; its counts go to
counters kept with that record in this process's memory, which `beat` adds up and
writes, under the slot's version, twice a second. Requests beyond the slot's records,
and refusals, are counted under a lock: the rare paths.
"""

from __future__ import annotations

import bisect
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

from corral.process.slot_table import (
    BEAT,
    BUCKET_COUNT,
    BUCKETS,
    CAPACITY,
    CONNECTIONS,
    CUMULATIVE,
    DURATION_BOUNDS,
    DURATION_SUM,
    ENTRIES,
    ENTRIES_OFFSET,
    ENTRY,
    OLDEST,
    PARENT,
    PID,
    READY,
    REQUESTS,
    RSS,
    SLOT_SIZE,
    STATE,
    STATUS,
    UNRECORDED,
    VERSION,
    WAITING,
    SlotTable,
)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Thread names remembered by thread (or greenlet) id; forgotten all at once past this
# many, as greenlets come and go.
_NAMES_KEPT = 4096
# Where each count sits in a record's counters (the slot's cumulative words, in order).
_REQUESTS = 0
_STATUS = STATUS - REQUESTS - 1
_BYTES_IN = _STATUS + 6
_BYTES_OUT = _BYTES_IN + 1
_DURATION_SUM = DURATION_SUM - REQUESTS
_BUCKETS = BUCKETS - REQUESTS
_COUNTERS = _BUCKETS + BUCKET_COUNT
_pack_entry = ENTRY.pack_into
_get_ident = threading.get_ident
_bucket_of = bisect.bisect_left


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


def _new_counters() -> list[float]:
    return [0] * _COUNTERS


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
        # thread ident -> (monotonic start, head), every request in flight, for the dump
        # and `oldest_start`; the request line is only formatted for the dump.
        self.in_flight: dict[int, tuple[float, RequestLine]] = {}
        # thread ident -> when its request began waiting on its client.
        self.waiting: dict[int, float] = {}
        self.thread_names: dict[int, bytes] = {}
        self.served = itertools.count(1)
        self.served_count = 0
        # The rare paths: requests beyond the records, refusals, the slot's own words.
        self.lock = threading.Lock()
        self.unrecorded = 0
        # For --process-per-request: write the counts at each request's end (a request
        # process has no loop to write them twice a second).
        self.counts_at_each_end = False
        self.owner = os.getpid()
        self.request_process_slots: list[int] = []
        self.next_slot = -1
        self._use(index)
        self._change(PID, self.owner)

    def _use(self, index: int) -> None:
        self.index = index
        self.memory = (
            self.table.slot_memory(index) if index >= 0 else memoryview(bytearray(SLOT_SIZE))
        )
        self.words = self.memory.cast("q")
        self.floats = self.memory.cast("d")
        self.version = self.words[VERSION]
        self.free_records = list(range(ENTRIES - 1, -1, -1))
        # Each record's version, its first word, its start's word, and its counters.
        self.record_versions = [0] * ENTRIES
        self.record_words = [
            (ENTRIES_OFFSET + number * ENTRY.size) // 8 for number in range(ENTRIES)
        ]
        self.record_counters = [_new_counters() for _ in range(ENTRIES)]
        # Counts of requests past the records, and of refusals, under the lock.
        self.other_counters = _new_counters()

    def _change(self, word: int, value: int) -> None:
        with self.lock:
            words = self.words
            self.version += 1
            words[VERSION] = self.version
            words[word] = value
            self.version += 1
            words[VERSION] = self.version

    def set_capacity(self, requests: int) -> None:
        """How many requests this process's model serves at once."""
        self._change(CAPACITY, requests)

    # The threads that serve.

    def enter(self, head: RequestLine, started: float) -> int:
        """A request enters the app at `started` (`time.monotonic()`); the token for
        `leave`, on the same thread."""
        ident = _get_ident()
        self.in_flight[ident] = (started, head)
        try:
            record = self.free_records.pop()
        except IndexError:
            with self.lock:
                self.unrecorded += 1
                self.words[UNRECORDED] = self.unrecorded
            return -1
        name = self.thread_names.get(ident)
        if name is None:
            name = self._name_thread(ident)
        word = self.record_words[record]
        version = self.record_versions[record] + 1
        words = self.words
        words[word] = version
        _pack_entry(
            self.memory,
            word * 8,
            version,
            started,
            head.method.encode("latin-1", "replace"),
            name,
            head.path.encode("utf-8", "replace"),
        )
        words[word] = self.record_versions[record] = version + 1
        return record

    def _name_thread(self, ident: int) -> bytes:
        names = self.thread_names
        if len(names) >= _NAMES_KEPT:
            names.clear()
        name = threading.current_thread().name.encode("utf-8", "replace")
        names[ident] = name
        return name

    def leave(self, token: int, status: int, received: int, sent: int, seconds: float) -> None:
        """The request `enter` returned `token` for is answered: its status, the bytes it
        took on the wire and those of its response, the seconds it took."""
        ident = _get_ident()
        self.in_flight.pop(ident, None)
        if self.waiting:
            self.waiting.pop(ident, None)
        status_class = status // 100
        bucket = _bucket_of(DURATION_BOUNDS, seconds)
        if token >= 0:
            # A free record is one whose start is 0.0: one word, written whole.
            self.floats[self.record_words[token] + 1] = 0.0
            counters = self.record_counters[token]
            counters[_REQUESTS] += 1
            if 1 <= status_class <= 5:
                counters[_STATUS + status_class] += 1
            counters[_BYTES_IN] += received
            counters[_BYTES_OUT] += sent
            counters[_DURATION_SUM] += seconds
            counters[_BUCKETS + bucket] += 1
            # Given back last: from here another request may take the record.
            self.free_records.append(token)
        else:
            with self.lock:
                self.unrecorded -= 1
                self.words[UNRECORDED] = self.unrecorded
                counters = self.other_counters
                counters[_REQUESTS] += 1
                if 1 <= status_class <= 5:
                    counters[_STATUS + status_class] += 1
                counters[_BYTES_IN] += received
                counters[_BYTES_OUT] += sent
                counters[_DURATION_SUM] += seconds
                counters[_BUCKETS + bucket] += 1
        if self.counts_at_each_end:
            self.write_counts()
        served = next(self.served)
        self.served_count = served
        if served == self.limit and self.on_limit is not None:
            self.on_limit()

    def refused(self, status: int) -> None:
        """A request corral answered itself, without the app (a bad head, a body over the
        limit, a wait past --queue-timeout, a late head): counted, not timed."""
        status_class = status // 100
        with self.lock:
            counters = self.other_counters
            counters[_REQUESTS] += 1
            if 1 <= status_class <= 5:
                counters[_STATUS + status_class] += 1
        if self.counts_at_each_end:
            self.write_counts()

    def client_wait(self, waiting: bool) -> None:
        """The calling thread's request begins (True) or ends (False) waiting on its
        client: a slow reader. --timeout times the application, not the client, so the
        wait does not count (`oldest_start` skips the request while it waits, and its
        start moves later by the wait)."""
        ident = _get_ident()
        if waiting:
            self.waiting[ident] = time.monotonic()
            return
        since = self.waiting.pop(ident, None)
        entry = self.in_flight.get(ident)
        if since is not None and entry is not None:
            self.in_flight[ident] = (entry[0] + time.monotonic() - since, entry[1])

    # The serving loop's thread.

    @property
    def served_requests(self) -> int:
        """Requests this process has answered through the app."""
        return self.served_count

    def oldest_start(self) -> float:
        """When the longest-running request in flight began, not counting its waits on
        its client; 0.0 when none is, or when each one in flight waits on its client."""
        try:
            waiting = self.waiting
            return min(
                (started for ident, (started, _) in self.in_flight.items() if ident not in waiting),
                default=0.0,
            )
        except RuntimeError:
            # Another thread changed the dict mid-iteration; the next beat asks again.
            return 0.0

    def write_counts(self) -> None:
        """Add up the counters and write them to the slot (the serving loop does twice a
        second; a request process at each request's end)."""
        with self.lock:
            self._write_counts()

    def _write_counts(self) -> None:
        totals = [
            sum(column) for column in zip(*self.record_counters, self.other_counters, strict=True)
        ]
        totals[_DURATION_SUM] = float(totals[_DURATION_SUM])
        self.version += 1
        self.words[VERSION] = self.version
        CUMULATIVE.pack_into(self.memory, REQUESTS * 8, *totals)
        self.version += 1
        self.words[VERSION] = self.version

    def beat(self, state: int, connections: int, waiting: int, rss: int) -> None:
        """Write the process's state (`corral.process.slot_table` READY or RETIRING), that
        it is alive, since when its oldest request has run, its open connections, its
        requests waiting for a thread, its resident bytes, and its counts."""
        oldest = self.oldest_start()
        words = self.words
        floats = self.floats
        with self.lock:
            self.version += 1
            words[VERSION] = self.version
            words[STATE] = state
            floats[BEAT] = time.monotonic()
            floats[OLDEST] = oldest
            words[CONNECTIONS] = connections
            words[WAITING] = waiting
            words[RSS] = rss
            self.version += 1
            words[VERSION] = self.version
            self._write_counts()

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
        """In the child just forked: write the slot chosen for it from now on, its
        counts added to those of the processes that wrote it before."""
        index, self.next_slot = self.next_slot, -1
        parent = self.owner
        self.owner = os.getpid()
        self.request_process_slots = []
        self.lock = threading.Lock()
        self.in_flight.clear()
        self.waiting.clear()
        self.counts_at_each_end = True
        # No slot free (a process that died before it could write its own still holds
        # one): written to memory no one reads rather than to the parent's slot.
        self._use(index)
        words = self.words
        # Odd now, whether or not the last process was killed in the middle of a change.
        self.version = words[VERSION] + (1 if words[VERSION] % 2 == 0 else 2)
        words[VERSION] = self.version
        previous = CUMULATIVE.unpack_from(self.memory, REQUESTS * 8)
        self.other_counters = list(previous)
        words[PID] = self.owner
        words[PARENT] = parent
        words[STATE] = READY
        for word in (UNRECORDED, WAITING, CONNECTIONS, RSS, CAPACITY):
            words[word] = 0
        self.memory[ENTRIES_OFFSET:SLOT_SIZE] = bytes(SLOT_SIZE - ENTRIES_OFFSET)
        self.version += 1
        words[VERSION] = self.version


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
