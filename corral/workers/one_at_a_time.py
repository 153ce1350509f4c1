"""One request at a time, served on the dispatcher's own thread (Werkzeug threaded=False).

No hand-off to another thread: the cheapest model per request, and the slowest when a
request waits on I/O. A request that calls this same server waits for itself, as it would
in any single-threaded server, until the self-call guard answers the call 503
(`corral.serving.self_call_guard`).
"""

from __future__ import annotations

import threading

from corral.workers import Host, Served, WorkerModel, serve_and_release


class OneAtATime(WorkerModel):
    serves_inline = True
    fixed_threads = True

    def submit(self, connection: Served) -> None:
        assert self.dispatcher is not None
        # Inline, on the loop's thread.
        serve_and_release(self.dispatcher, connection, self.thread)

    def start(self, dispatcher: Host) -> None:
        super().start(dispatcher)
        self.thread = threading.get_ident()

    def concurrency(self) -> int:
        return 1

    def each(self) -> str:
        return "1 thread"
