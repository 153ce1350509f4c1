"""A fixed pool of N threads (`--threads N`): at most N requests in the app at once."""

from __future__ import annotations

import queue
import threading

from corral.workers import Host, Served, WorkerModel, serve_and_release


class ThreadPool(WorkerModel):
    multithread = True

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
        return f"{self.size} thread{'s' if self.size != 1 else ''} (thread pool)"
