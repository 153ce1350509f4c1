"""A fixed pool of N threads (`--threads N`): at most N requests in the app at once."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

from corral.workers import WorkerModel, serve_safely

# A thread that has just served a request takes the next ready connection itself, and
# holds its finished responses until the queue is empty (`Connection.send_last`): each
# send wakes a waiting client, and sending them together wakes it once. Held no longer
# than this after the first held request started, and only while this thread's requests
# take less than `_HOLD_WHEN_FASTER` on average: a slow request's response, or one that
# would wait for a slow request, goes out at once.
_HOLD_SECONDS = 0.001
_HOLD_WHEN_FASTER = 0.0005

if TYPE_CHECKING:
    from corral.connection import Connection
    from corral.dispatcher import Dispatcher


class ThreadPool(WorkerModel):
    multithread = True

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.size = threads
        self.ready: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.in_flight = 0
        self.lock = threading.Lock()

    def start(self, dispatcher: Dispatcher) -> None:
        super().start(dispatcher)
        for number in range(self.size):
            thread = threading.Thread(target=self._work, name=f"corral-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def submit(self, connection: Connection) -> None:
        with self.lock:
            self.in_flight += 1
        self.ready.put(connection)

    def _work(self) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        ready = self.ready
        held: list[Connection] = []

        def hold(connection: Connection) -> None:
            # A connection can hold, send (before reading a body) and hold again.
            if not held or held[-1] is not connection:
                held.append(connection)

        hold_started = 0.0
        average = 0.0
        while True:
            if held:
                try:
                    connection = ready.get_nowait()
                except queue.Empty:
                    self._send_held(held)
                    connection = ready.get()
            else:
                connection = ready.get()
            if connection is None:
                self._send_held(held)
                return
            started = time.monotonic()
            connection.on_hold = hold if average < _HOLD_WHEN_FASTER else None
            if not held:
                hold_started = started
            keep = serve_safely(connection)
            connection.on_hold = None
            now = time.monotonic()
            average += (now - started - average) / 8
            if held and held[-1] is connection:
                # Released and counted out once its response is out: released sooner,
                # a pipelined next request could be answered by another thread first.
                if now - hold_started > _HOLD_SECONDS:
                    self._send_held(held)
                continue
            if keep:
                dispatcher.release(connection)
            self._done(dispatcher)
            if held and now - hold_started > _HOLD_SECONDS:
                self._send_held(held)

    def _send_held(self, held: list[Connection]) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        for connection in held:
            connection.flush()
            dispatcher.release(connection)
            self._done(dispatcher)
        held.clear()

    def _done(self, dispatcher: Dispatcher) -> None:
        with self.lock:
            self.in_flight -= 1
        dispatcher.slot_freed()

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
