"""A pool of N threads (`--threads N`): at most N requests in the app at once.

`--threads auto` starts with one thread per core and grows on demand, up to
--max-threads: a request that would wait for a thread starts one more while the process
leaves the CPU free (its requests wait on I/O, not on the CPU), as granian's blocking
pool and Python's ThreadPoolExecutor grow. A thread beyond the floor ends after
`IDLE_SECONDS` without a request. The floor starts at one thread per core and follows
the sizing advice (`corral.serving.sizing`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from corral.workers import Host, Served, WorkerModel, cpu_cores, serve_and_release

error_log = logging.getLogger("corral.error")

# --threads auto: seconds a thread beyond the floor waits for a request before it ends.
IDLE_SECONDS = 2.0
# --threads auto: a request waiting for a thread starts another while the process's CPU
# time over the last `_CPU_WINDOW` seconds is under this share of one core (the GIL runs
# one thread of Python at a time: past it, another thread only waits for the others).
CPU_ROOM = 0.8
_CPU_WINDOW = 0.05
# Seconds between two log lines about the pool's size.
_LOG_INTERVAL = 1.0


class ThreadPool(WorkerModel):
    multithread = True
    fixed_threads = True

    def __init__(self, threads: int, max_threads: int = 1000) -> None:
        super().__init__()
        # 0: --threads auto.
        self.auto = threads == 0
        self.max_threads = max_threads
        self.size = min(cpu_cores(), max_threads) if self.auto else threads
        # --threads auto: the threads kept however idle.
        self.floor = self.size
        self.ready: queue.SimpleQueue[Served | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.started = 0
        self.in_flight = 0
        self.lock = threading.Lock()
        # --threads auto: (monotonic, process CPU) seconds when the CPU share was last
        # measured, and whether it left room then.
        self.cpu_mark = (time.monotonic(), time.process_time())
        self.cpu_room = True
        self.logged_size = self.size
        self.next_log = 0.0

    def start(self, dispatcher: Host) -> None:
        super().start(dispatcher)
        with self.lock:
            self._add_threads(self.size)

    def _add_threads(self, count: int) -> None:
        """Start `count` threads; the caller holds the lock."""
        for _ in range(count):
            name = f"corral-{self.started}"
            self.started += 1
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def resize(self, size: int) -> None:
        """Keep at least `size` threads from now on (--threads auto, the sizing advice):
        threads are started up to it at once; those beyond it end once idle for
        `IDLE_SECONDS`."""
        size = max(1, min(size, self.max_threads))
        with self.lock:
            self.floor = size
            change = size - self.size
            if change > 0:
                self.size = size
                self._add_threads(change)
        if change > 0 and self.dispatcher is not None:
            self.dispatcher.slot_freed()

    def _has_cpu_room(self) -> bool:
        """True when the process used under `CPU_ROOM` of a core lately (measured at
        most every `_CPU_WINDOW` seconds; a clock read otherwise)."""
        now = time.monotonic()
        since, cpu_then = self.cpu_mark
        if now - since >= _CPU_WINDOW:
            cpu = time.process_time()
            self.cpu_room = (cpu - cpu_then) < CPU_ROOM * (now - since)
            self.cpu_mark = (now, cpu)
        return self.cpu_room

    def submit(self, connection: Served) -> None:
        with self.lock:
            self.in_flight += 1
            grow = (
                self.auto
                and self.in_flight > self.size
                and self.size < self.max_threads
                and self._has_cpu_room()
            )
            if grow:
                # A thread for the request that would wait.
                self.size += 1
                self._add_threads(1)
        if grow:
            self._log_size("requests waited for a thread while the CPU was free")
        self.ready.put(connection)

    def _log_size(self, why: str) -> None:
        """Log the pool's size when it has changed: at once if it has doubled, halved or
        reached either bound, otherwise once a second at most."""
        size, logged = self.size, self.logged_size
        now = time.monotonic()
        if size == logged:
            return
        if not (
            now >= self.next_log
            or size >= 2 * logged
            or 2 * size <= logged
            or size in (self.floor, self.max_threads)
        ):
            return
        self.next_log = now + _LOG_INTERVAL
        error_log.info("Threads: %d -> %d (--threads auto): %s", self.logged_size, self.size, why)
        self.logged_size = self.size

    def _work(self) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        ready = self.ready
        thread = threading.get_ident()
        timeout = IDLE_SECONDS if self.auto else None
        while True:
            try:
                connection = ready.get(timeout=timeout)
            except queue.Empty:
                with self.lock:
                    if self.size <= self.floor or not ready.empty():
                        continue
                    self.size -= 1
                    self.threads.remove(threading.current_thread())
                self._log_size(f"threads idle for {IDLE_SECONDS:g} s")
                return
            if connection is None:
                with self.lock:
                    self.threads.remove(threading.current_thread())
                return
            serve_and_release(dispatcher, connection, thread)
            with self.lock:
                self.in_flight -= 1
            dispatcher.slot_freed()

    def withdraw_waiting(self, chosen: Callable[[Any], bool]) -> list[Any]:
        # Taken from the queue as a thread takes them, the others put back in their order
        # (after any queued meanwhile). The guard calls this when every thread is held;
        # one freed meanwhile takes its next connection from the queue as always.
        taken: list[Any] = []
        kept: list[Served | None] = []
        for _ in range(self.ready.qsize()):
            try:
                connection = self.ready.get_nowait()
            except queue.Empty:
                break
            if connection is not None and chosen(connection):
                taken.append(connection)
            else:
                kept.append(connection)
        for connection in kept:
            self.ready.put(connection)
        if taken:
            with self.lock:
                self.in_flight -= len(taken)
        return taken

    def idle(self) -> bool:
        return self.in_flight == 0

    def requests_waiting(self) -> int:
        return self.ready.qsize()

    def free_slots(self) -> int:
        if self.auto and self.size < self.max_threads and self._has_cpu_room():
            # A request taken now starts a thread if none is free.
            return self.max_threads - self.in_flight
        return self.size - self.in_flight

    def stop(self) -> None:
        with self.lock:
            count = len(self.threads)
        for _ in range(count):
            self.ready.put(None)

    def concurrency(self) -> int:
        return self.size

    def each(self) -> str:
        threads = f"{self.size} thread{'s' if self.size != 1 else ''}"
        if self.auto:
            return f"{threads} (thread pool, auto: grows to {self.max_threads} on demand)"
        return f"{threads} (thread pool)"
