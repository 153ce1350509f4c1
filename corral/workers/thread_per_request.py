"""A thread for each request (Werkzeug threaded=True), no fixed pool, up to a ceiling.

Threads are started on demand. A thread that has served its request waits a moment for
the next ready connection before it ends, so a steady stream of requests does not pay
for starting a thread each time (measured: 12,600 against 66,000 requests/s for hello
world when every request started its own thread); a burst still gets as many threads as
it has requests, up to the ceiling. The ceiling only guards the process against a flood;
when it is reached, connections wait for a thread to finish and the log says so once.
"""

from __future__ import annotations

import logging
import queue
import threading

from corral.workers import Served, WorkerModel, serve_and_release

error_log = logging.getLogger("corral.error")

# How long a finished thread waits for more work before it ends.
_LINGER_SECONDS = 2.0


class ThreadPerRequest(WorkerModel):
    multithread = True
    ceiling_only = True

    def __init__(self, max_threads: int) -> None:
        super().__init__()
        self.max_threads = max_threads
        self.threads = 0
        self.lingering = 0
        # Each item says whether a lingering thread was already counted out for it.
        self.ready: queue.SimpleQueue[tuple[Served, bool]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.ceiling_logged = False

    def submit(self, connection: Served) -> None:
        with self.lock:
            if self.lingering:
                self.lingering -= 1
                self.ready.put((connection, True))
                return
            if self.threads >= self.max_threads:
                self.ready.put((connection, False))
                if not self.ceiling_logged:
                    self.ceiling_logged = True
                    error_log.warning(
                        "thread ceiling of %d reached: new requests wait for a free thread "
                        "(raise --max-threads to allow more)",
                        self.max_threads,
                    )
                return
            self.threads += 1
        threading.Thread(target=self._run, args=(connection,), daemon=True).start()

    def _run(self, connection: Served) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        ready = self.ready
        thread = threading.get_ident()
        while True:
            serve_and_release(dispatcher, connection, thread)
            with self.lock:
                self.lingering += 1
            dispatcher.slot_freed()
            try:
                connection, counted = ready.get(timeout=_LINGER_SECONDS)
            except queue.Empty:
                with self.lock:
                    # A connection put here just as the wait ended is still ours to serve.
                    try:
                        connection, counted = ready.get_nowait()
                    except queue.Empty:
                        self.lingering -= 1
                        self.threads -= 1
                        return
            if not counted:
                with self.lock:
                    self.lingering -= 1

    def idle(self) -> bool:
        with self.lock:
            return self.threads == self.lingering and self.ready.empty()

    def requests_waiting(self) -> int:
        # A connection handed to a lingering thread passes through the queue too, for
        # the moment it takes that thread to wake.
        return self.ready.qsize()

    def free_slots(self) -> int:
        with self.lock:
            return self.max_threads - (self.threads - self.lingering)

    def concurrency(self) -> int:
        return self.max_threads

    def each(self) -> str:
        return f"a new thread per request (ceiling {self.max_threads})"
