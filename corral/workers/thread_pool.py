"""A fixed pool of N threads (`--threads N`): at most N requests in the app at once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from corral.workers import Host, Served, WorkerModel, serve_and_release


class ThreadPool(WorkerModel):
    multithread = True
    fixed_threads = True

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.size = threads
        self.ready: queue.SimpleQueue[Served | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.in_flight = 0
        self.lock = threading.Lock()

    def start(self, dispatcher: Host) -> None:
        super().start(dispatcher)
        for number in range(self.size):
            thread = threading.Thread(target=self._work, name=f"corral-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def submit(self, connection: Served) -> None:
        with self.lock:
            self.in_flight += 1
        self.ready.put(connection)

    def _work(self) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        ready = self.ready
        while True:
            connection = ready.get()
            if connection is None:
                return
            serve_and_release(dispatcher, connection)
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

    def free_slots(self) -> int:
        return self.size - self.in_flight

    def stop(self) -> None:
        for _ in self.threads:
            self.ready.put(None)

    def concurrency(self) -> int:
        return self.size

    def each(self) -> str:
        return f"{self.size} thread{'s' if self.size != 1 else ''} (thread pool)"
