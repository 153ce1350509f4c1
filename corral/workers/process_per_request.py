"""A forked child for each ready connection (Werkzeug processes=N), at most N at once.

The child serves the requests that have arrived and exits; its exit code tells the
parent whether the connection stays open, and the parent watches it again, so an idle
keep-alive connection holds no process. Bytes of a next request that had only partly
arrived, and response bytes the client has not taken yet, go back to the parent through
the child's exit pipe: the child never waits for a slow client, the parent does.

A TLS connection cannot go back: its session (keys, record counters) lives in the memory
of the child that used it, and the parent's copy is stale from the child's first record
on. Its child keeps it to its end, gathering and serving request after request and
waiting for the client itself, until the client closes or stays idle for --keep-alive,
as Werkzeug's forking server keeps every connection.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import struct

from corral.workers import Served, WorkerModel

error_log = logging.getLogger("corral.error")

_KEEP_OPEN = 0
_CLOSED = 1
# Answered and ending, the client maybe still sending: the parent lingers on it
# (`Connection.linger`).
_LINGER = 2
# What a child hands back through its exit pipe: the length of the response bytes not
# sent yet, those bytes, then the bytes received and not used.
_HANDED_BACK = struct.Struct("=Q")


class ProcessPerRequest(WorkerModel):
    multiprocess = True

    def __init__(self, processes: int, keep_alive: float = 5.0) -> None:
        super().__init__()
        self.max_processes = processes
        # How long a child keeping a connection to its end waits for the next request.
        self.keep_alive = keep_alive
        self.children: dict[int, tuple[int, Served]] = {}
        self.waiting: collections.deque[Served] = collections.deque()

    def submit(self, connection: Served) -> None:
        if len(self.children) >= self.max_processes:
            self.waiting.append(connection)
            return
        self._fork(connection)

    def _fork(self, connection: Served) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        exit_read, exit_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(exit_read)
            code = _CLOSED
            try:
                dispatcher.close_in_child(keep=connection)
                # Refusals are counted by the parent, which outlives this child.
                connection.forward_refusals(exit_write)
                if connection.stays_in_process:
                    connection.serve_to_end(self.keep_alive)
                elif connection.serve():
                    # Response bytes the client has not taken, and the start of a next
                    # request: the parent sends the one and gathers the other, so a
                    # slow client holds no process.
                    unsent, received = connection.hand_back()
                    if not connection.closed:
                        code = _KEEP_OPEN
                        _write_all(exit_write, _HANDED_BACK.pack(len(unsent)) + unsent + received)
                if connection.lingering_until:
                    code = _LINGER
            except BaseException:
                error_log.exception("unexpected error in request process")
            finally:
                os._exit(code)
        os.close(exit_write)
        self.children[exit_read] = (pid, connection)
        dispatcher.watch(exit_read, lambda: self._child_exited(exit_read))

    def _child_exited(self, exit_read: int) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        dispatcher.unwatch(exit_read)
        # Readable means the child has exited or is writing (the start of a next request,
        # or the requests it refused) and then exits: read to the end either way.
        pending = _read_all(exit_read)
        os.close(exit_read)
        pid, connection = self.children.pop(exit_read)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == _LINGER:
            if pending:
                connection.take_refusals(pending)
            connection.linger_after_child()
            dispatcher.release(connection)
        elif code == _KEEP_OPEN and len(pending) >= _HANDED_BACK.size:
            (unsent_length,) = _HANDED_BACK.unpack_from(pending)
            start = _HANDED_BACK.size
            connection.restore(
                pending[start + unsent_length :], pending[start : start + unsent_length]
            )
            dispatcher.release(connection)
        else:
            if pending:
                connection.take_refusals(pending)
            connection.close()
        if self.waiting:
            self._fork(self.waiting.popleft())

    def idle(self) -> bool:
        return not self.children

    def requests_waiting(self) -> int:
        return len(self.waiting)

    def served_elsewhere(self) -> list[Served]:
        return [connection for _, connection in list(self.children.values())]

    def stop(self) -> None:
        for pid, connection in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            connection.close()
        self.children.clear()

    def concurrency(self) -> int:
        return self.max_processes

    def describe(self, workers: int = 0) -> str:
        # Forks of its own, never inside worker processes (config refuses the pair).
        requests = f"{self.max_processes} request{'s' if self.max_processes != 1 else ''}"
        return (
            f"a new process per request, at most {self.max_processes} at once = "
            f"{requests} at a time"
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
