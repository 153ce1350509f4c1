"""A pool of N threads (`--threads N`): at most N requests in the app at once.

`--threads auto` starts with one thread per core and resizes the pool to what the sizing
advice (`corral.serving.sizing`) measures the application needs, up to --max-threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from corral.workers import Host, Served, WorkerModel, cpu_cores, serve_and_release


class ThreadPool(WorkerModel):
    multithread = True
    fixed_threads = True

    def __init__(self, threads: int, max_threads: int = 1000) -> None:
        super().__init__()
        # 0: --threads auto.
        self.auto = threads == 0
        self.max_threads = max_threads
        self.size = min(cpu_cores(), max_threads) if self.auto else threads
        self.ready: queue.SimpleQueue[Served | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.started = 0
        self.in_flight = 0
        self.lock = threading.Lock()

    def start(self, dispatcher: Host) -> None:
        super().start(dispatcher)
        self._add_threads(self.size)

    def _add_threads(self, count: int) -> None:
        for _ in range(count):
            name = f"corral-{self.started}"
            self.started += 1
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def resize(self, size: int) -> None:
        """Serve with `size` threads from now on (--threads auto); threads beyond it end
        once they have finished their request."""
        size = max(1, min(size, self.max_threads))
        with self.lock:
            change = size - self.size
            self.size = size
        if change > 0:
            self._add_threads(change)
        for _ in range(-change):
            self.ready.put(None)
        if change > 0 and self.dispatcher is not None:
            self.dispatcher.slot_freed()

    def submit(self, connection: Served) -> None:
        with self.lock:
            self.in_flight += 1
        self.ready.put(connection)

    def _work(self) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        ready = self.ready
        thread = threading.get_ident()
        while True:
            connection = ready.get()
            if connection is None:
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
        return self.size - self.in_flight

    def stop(self) -> None:
        for _ in self.threads:
            self.ready.put(None)

    def concurrency(self) -> int:
        return self.size

    def each(self) -> str:
        threads = f"{self.size} thread{'s' if self.size != 1 else ''}"
        if self.auto:
            return f"{threads} (thread pool, auto: 1 to {self.max_threads})"
        return f"{threads} (thread pool)"
