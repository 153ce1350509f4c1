"""The shared slot table: what each serving process says of itself, read by the master's
--timeout and by the stats listener (`--stats`, `corral top`).

The master maps the table before it forks, so every worker inherits it: one slot per
worker, which only that worker writes once it runs (the master writes a slot only before
the worker's fork, to claim it, and after the worker has been reaped, to free it). A
single process has one slot of its own, and with --process-per-request one more for each
request process it may run at once. No lock is shared between processes: each slot has
a version counter that its writer makes odd before a change and even after it, and a
reader copies the slot and reads again when the version was odd or moved meanwhile
(a seqlock), so readers never block writers.

Layout. A slot is `SLOT_SIZE` bytes: `SLOT_WORDS` 8-byte words (int64, or float64 where
named below), then `ENTRIES` records of the requests in flight, oldest first (`ENTRY`:
start as `time.monotonic()`, method, thread name, path; a start of 0.0 ends the list).
The worker writes them a few times a second from what its connections hold and from its
running counts (`corral.process.slot_writer`), and its state twice a second from its
serving loop. The words from `REQUESTS` to `CUMULATIVE_END` only ever grow while the
worker lives; when the
master frees a slot it adds them to the table's own "retired" block first, so that the
totals read as counters across worker restarts. The table's header (`HEADER_SIZE` bytes,
a mapping of its own) holds what the master says of the whole: its pid, start time, the
workers it keeps, each one's concurrency, the restarts, the retired block and the
start-up line's account of the concurrency. Slots live in regions of `per_region` slots;
when every slot is taken (more workers after TTIN or during HUP's overlap than the table
was made for), the master maps another region before forking the next worker.

Timestamps are `time.monotonic()`, one clock for every process on the machine, except
the header's start, which is wall-clock time.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from corral.serving.request_counts import BUCKET_COUNT

# A slot's states.
FREE, BOOTING, READY, RETIRING = 0, 1, 2, 3
STATE_NAMES = {BOOTING: "booting", READY: "ready", RETIRING: "retiring"}

# A slot's words. Floats: BEAT, OLDEST, DURATION_SUM.
VERSION = 0
PID = 1
STATE = 2
# Which of the master's N workers this is (0 to N-1), and how many workers held that
# place before it.
POSITION = 3
RESTARTS = 4
# Requests the worker's model can serve at once.
CAPACITY = 5
# For a request process (--process-per-request): the pid of the process that forked it,
# whose slot it adds to; 0 for a worker or a single process.
PARENT = 6
# Requests in the app (all of them; at most ENTRIES are recorded).
IN_APP = 7
WAITING = 8
CONNECTIONS = 9
RSS = 10
# When the worker last wrote its state (about twice a second), and since when its oldest
# request in flight has run, not counting waits on a slow client (0.0: none).
BEAT = 11
OLDEST = 12
# Cumulative from here to CUMULATIVE_END: requests answered (the app's and those corral
# refused itself), by status class 1xx to 5xx, bytes, and the app's durations.
REQUESTS = 13
STATUS = 14
BYTES_IN = STATUS + 5
BYTES_OUT = BYTES_IN + 1
DURATION_SUM = BYTES_OUT + 1
BUCKETS = DURATION_SUM + 1
CUMULATIVE_END = BUCKETS + BUCKET_COUNT
# The sizing sample (`corral.serving.sizing`): requests sampled, their CPU share in
# millionths, and the threads per worker advised.
SIZING_SAMPLES = CUMULATIVE_END
SIZING_CPU_PPM = SIZING_SAMPLES + 1
SIZING_THREADS = SIZING_SAMPLES + 2
SLOT_WORDS = 48

# The cumulative words, packed in one write.
CUMULATIVE = struct.Struct(f"=6q2qd{BUCKET_COUNT}q")

# One request in flight: start, method, thread name, path (no query string: it may hold
# secrets the stats listener should not show). Longer names are cut.
ENTRY = struct.Struct("=d12s28s112s")
ENTRIES = 64
ENTRIES_OFFSET = SLOT_WORDS * 8
ENTRY_WORDS = ENTRY.size // 8
SLOT_SIZE = ENTRIES_OFFSET + ENTRIES * ENTRY.size

# The header's words. Float: HEADER_STARTED.
HEADER_VERSION = 0
HEADER_PID = 1
HEADER_STARTED = 2
HEADER_WORKERS = 3
HEADER_SLOTS_PER_WORKER = 4
HEADER_RESTARTS = 5
# 1 once the master stops for good (TERM with no new master after it): a worker told to
# stop then runs --drain-delay; told to stop otherwise, it is retired, the others serving on.
HEADER_STOPPING = 6
HEADER_RETIRED = 8
_MODEL_OFFSET = 512
_MODEL = struct.Struct("=H254s")
HEADER_SIZE = 1024

_CUMULATIVE_WORDS = CUMULATIVE_END - REQUESTS
_FLOAT_WORDS = frozenset({BEAT, OLDEST, DURATION_SUM})
# A reader gives up on a consistent copy after this many tries, pausing between the
# later ones: a writer descheduled in the middle of a change finishes it within a time
# slice, while one killed there leaves its version odd until the master frees the slot.
_READ_TRIES = 40
_PAUSED_AFTER = 5
_PAUSE = 0.0005

assert SLOT_SIZE % 8 == 0 and ENTRY.size % 8 == 0 and CUMULATIVE_END <= SLOT_WORDS


@dataclass(frozen=True)
class InFlight:
    """One request in flight as a slot records it; `started` is `time.monotonic()`."""

    started: float
    method: str
    thread: str
    path: str


@dataclass(frozen=True)
class Counts:
    """Cumulative counts: requests answered, by status class ("2xx": n, classes with none
    left out), bytes received and sent, and the app's durations (`buckets[i]` requests took
    at most `DURATION_BOUNDS[i]` seconds and more than the bound before; the last bucket
    holds the slower ones)."""

    requests: int
    by_status_class: dict[str, int]
    bytes_in: int
    bytes_out: int
    duration_sum: float
    buckets: tuple[int, ...]

    @property
    def timed(self) -> int:
        """How many requests ran the app and were timed (the histogram's count)."""
        return sum(self.buckets)


@dataclass(frozen=True)
class SlotRecord:
    """One slot as read, consistent in itself."""

    index: int
    pid: int
    state: int
    position: int
    restarts: int
    capacity: int
    parent: int
    in_app: int
    waiting: int
    connections: int
    rss_bytes: int
    beat: float
    oldest: float
    counts: Counts
    in_flight: tuple[InFlight, ...]
    # The sizing sample: requests sampled, their CPU share (0 to 1), threads advised.
    sizing_samples: int = 0
    cpu_fraction: float = 0.0
    advised_threads: int = 0


@dataclass(frozen=True)
class TableSnapshot:
    """The whole table as read at one moment: the header's fields, the counts of the
    workers that have exited (`retired`), and every slot in use."""

    pid: int
    started: float
    workers: int
    slots_per_worker: int
    restarts: int
    model: str
    retired: Counts
    slots: tuple[SlotRecord, ...]


def _counts(words: memoryview[int], floats: memoryview[float], start: int) -> Counts:
    """The cumulative block whose REQUESTS word is at `start`."""
    status = start - REQUESTS + STATUS
    by_class = {
        f"{number + 1}xx": words[status + number] for number in range(5) if words[status + number]
    }
    first_bucket = start - REQUESTS + BUCKETS
    return Counts(
        words[start],
        by_class,
        words[start - REQUESTS + BYTES_IN],
        words[start - REQUESTS + BYTES_OUT],
        floats[start - REQUESTS + DURATION_SUM],
        tuple(words[first_bucket : first_bucket + BUCKET_COUNT]),
    )


def _text(field: bytes) -> str:
    return field.rstrip(b"\0").decode("utf-8", "replace")


class SlotTable:
    """The table: its header and its regions of slots, in memory shared with every
    process forked after it was made (`mmap` with no file is shared on fork).

    Slot numbers run across regions: slot `n` is in region `n // per_region`.
    """

    def __init__(self, per_region: int) -> None:
        if per_region < 1:
            raise ValueError("a slot table needs at least one slot")
        self.per_region = per_region
        self.header = mmap.mmap(-1, HEADER_SIZE)
        self.header_words = memoryview(self.header).cast("q")
        self.header_floats = memoryview(self.header).cast("d")
        self.regions: list[mmap.mmap] = []
        self.add_region()

    def add_region(self) -> None:
        """Map `per_region` more slots (before forking the processes that use them)."""
        self.regions.append(mmap.mmap(-1, self.per_region * SLOT_SIZE))

    @property
    def size(self) -> int:
        """Slots in all regions."""
        return len(self.regions) * self.per_region

    def slot_memory(self, index: int) -> memoryview:
        """The `SLOT_SIZE` bytes of slot `index`, to write it (`corral.process.slot_writer`)."""
        region, number = divmod(index, self.per_region)
        offset = number * SLOT_SIZE
        return memoryview(self.regions[region])[offset : offset + SLOT_SIZE]

    # Written by the master (or a single process), never by a worker.

    def describe(
        self, pid: int, workers: int, slots_per_worker: int, model: str, started: float = 0.0
    ) -> None:
        """Say what serves: the master's (or single process's) pid, the workers it keeps
        (0 for a single process), the requests each can serve at once, and the start-up
        line's account; `started` (wall-clock seconds) once, at start."""
        words = self.header_words
        words[HEADER_VERSION] += 1
        words[HEADER_PID] = pid
        if started:
            self.header_floats[HEADER_STARTED] = started
        words[HEADER_WORKERS] = workers
        words[HEADER_SLOTS_PER_WORKER] = slots_per_worker
        text = model.encode()[: _MODEL.size - 2]
        _MODEL.pack_into(self.header, _MODEL_OFFSET, len(text), text)
        words[HEADER_VERSION] += 1

    def count_restart(self) -> None:
        """One worker more started in place of one that exited or was replaced."""
        words = self.header_words
        words[HEADER_VERSION] += 1
        words[HEADER_RESTARTS] += 1
        words[HEADER_VERSION] += 1

    def mark_stopping(self) -> None:
        """The server stops for good: said before the master tells its workers to stop,
        so that each one reads it when told (`stopping`)."""
        self.header_words[HEADER_STOPPING] = 1

    @property
    def stopping(self) -> bool:
        """True once the master said it stops for good (`mark_stopping`); read by a
        worker, a single word, so safe in a signal handler."""
        return bool(self.header_words[HEADER_STOPPING])

    def claim(self, position: int = 0, restarts: int = 0) -> int:
        """Take a free slot for a process about to be forked; its number. Maps another
        region when every slot is taken."""
        index = next(self._free_slots(), -1)
        if index < 0:
            index = self.size
            self.add_region()
        memory = self.slot_memory(index)
        words = memory.cast("q")
        version = words[VERSION]
        words[VERSION] = version + (1 if version % 2 == 0 else 2)
        memory[8:] = bytes(SLOT_SIZE - 8)
        words[STATE] = BOOTING
        words[POSITION] = position
        words[RESTARTS] = restarts
        memory.cast("d")[BEAT] = time.monotonic()
        words[VERSION] += 1
        return index

    def _free_slots(self) -> Iterator[int]:
        for index in range(self.size):
            if self.slot_memory(index).cast("q")[STATE] == FREE:
                yield index

    def release(self, index: int) -> None:
        """Free the slot of a process that has exited, its counts added to the retired
        ones first; readers see both changes at once or neither."""
        memory = self.slot_memory(index)
        words = memory.cast("q")
        floats = memory.cast("d")
        header = self.header_words
        header[HEADER_VERSION] += 1
        for offset in range(_CUMULATIVE_WORDS):
            word = REQUESTS + offset
            if word in _FLOAT_WORDS:
                self.header_floats[HEADER_RETIRED + offset] += floats[word]
            else:
                header[HEADER_RETIRED + offset] += words[word]
        # The process may have been killed in the middle of a change: even again.
        version = words[VERSION]
        words[VERSION] = version + (1 if version % 2 == 0 else 2)
        memory[8:] = bytes(SLOT_SIZE - 8)
        words[VERSION] += 1
        header[HEADER_VERSION] += 1

    def heartbeat(self, index: int) -> tuple[int, float, float]:
        """(state, last beat, start of the oldest request in flight or 0.0) of a slot, for
        --timeout. Each word is read whole; a stale one delays a decision by one check."""
        memory = self.slot_memory(index)
        words = memory.cast("q")
        floats = memory.cast("d")
        return words[STATE], floats[BEAT], floats[OLDEST]

    # Read by anyone.

    def read_slot(self, index: int) -> SlotRecord | None:
        """A consistent copy of slot `index`; None when it is free."""
        memory = self.slot_memory(index)
        live = memory.cast("q")
        copy = bytes(memory)
        for attempt in range(_READ_TRIES):
            if attempt > _PAUSED_AFTER:
                time.sleep(_PAUSE)
            before = live[VERSION]
            if before % 2:
                continue
            copy = bytes(memory)
            if live[VERSION] == before:
                break
        words = memoryview(copy).cast("q")
        floats = memoryview(copy).cast("d")
        if words[STATE] == FREE:
            return None
        in_flight = []
        for number in range(ENTRIES):
            started, method, thread, path = ENTRY.unpack_from(
                copy, ENTRIES_OFFSET + number * ENTRY.size
            )
            if not started:
                break
            in_flight.append(InFlight(started, _text(method), _text(thread), _text(path)))
        return SlotRecord(
            index=index,
            pid=words[PID],
            state=words[STATE],
            position=words[POSITION],
            restarts=words[RESTARTS],
            capacity=words[CAPACITY],
            parent=words[PARENT],
            in_app=words[IN_APP],
            waiting=words[WAITING],
            connections=words[CONNECTIONS],
            rss_bytes=words[RSS],
            beat=floats[BEAT],
            oldest=floats[OLDEST],
            counts=_counts(words, floats, REQUESTS),
            in_flight=tuple(in_flight),
            sizing_samples=words[SIZING_SAMPLES],
            cpu_fraction=words[SIZING_CPU_PPM] / 1e6,
            advised_threads=words[SIZING_THREADS],
        )

    def snapshot(self) -> TableSnapshot:
        """The header and every slot in use, read again if the master freed or claimed a
        slot meanwhile (so that a worker's counts are never both retired and live)."""
        header = self.header_words
        copy = bytes(self.header)
        slots: tuple[SlotRecord, ...] = ()
        for attempt in range(_READ_TRIES):
            if attempt > _PAUSED_AFTER:
                time.sleep(_PAUSE)
            before = header[HEADER_VERSION]
            if before % 2:
                continue
            copy = bytes(self.header)
            slots = tuple(
                record
                for record in (self.read_slot(index) for index in range(self.size))
                if record is not None
            )
            if header[HEADER_VERSION] == before:
                break
        words = memoryview(copy).cast("q")
        floats = memoryview(copy).cast("d")
        length, model = _MODEL.unpack_from(copy, _MODEL_OFFSET)
        return TableSnapshot(
            pid=words[HEADER_PID],
            started=floats[HEADER_STARTED],
            workers=words[HEADER_WORKERS],
            slots_per_worker=words[HEADER_SLOTS_PER_WORKER],
            restarts=words[HEADER_RESTARTS],
            model=model[:length].decode("utf-8", "replace"),
            retired=_counts(words, floats, HEADER_RETIRED),
            slots=slots,
        )
