"""A new thread for each ready connection (Werkzeug threaded=True), up to a ceiling.

The ceiling only guards the process against a flood; when it is reached, connections
wait for a thread to finish and the log says so once.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING

from corral.workers import WorkerModel, serve_and_release

if TYPE_CHECKING:
    from corral.connection import Connection

error_log = logging.getLogger("corral.error")


class ThreadPerRequest(WorkerModel):
    multithread = True

    def __init__(self, max_threads: int) -> None:
        super().__init__()
        self.max_threads = max_threads
        self.active = 0
        self.waiting: collections.deque[Connection] = collections.deque()
        self.lock = threading.Lock()
        self.ceiling_logged = False

    def submit(self, connection: Connection) -> None:
        with self.lock:
            if self.active >= self.max_threads:
                self.waiting.append(connection)
                if not self.ceiling_logged:
                    self.ceiling_logged = True
                    error_log.warning(
                        "thread ceiling of %d reached: new requests wait for a free thread "
                        "(raise --max-threads to allow more)",
                        self.max_threads,
                    )
                return
            self.active += 1
        threading.Thread(target=self._run, args=(connection,), daemon=True).start()

    def _run(self, connection: Connection) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        while True:
            serve_and_release(dispatcher, connection)
            with self.lock:
                if not self.waiting:
                    self.active -= 1
                    return
                connection = self.waiting.popleft()

    def idle(self) -> bool:
        return self.active == 0

    def concurrency(self) -> int:
        return self.max_threads

    def describe(self) -> str:
        return (
            f"1 process, a new thread per request (ceiling {self.max_threads}) = up to "
            f"{self.max_threads} requests at a time"
        )
