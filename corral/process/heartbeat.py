"""A few bytes of memory shared by the master and one worker: the worker's pulse.

The master maps it before forking; the worker writes, the master reads. Timestamps are
`time.monotonic()`, one clock for every process on the machine. No lock: each field has
one writer, and a torn read only delays a decision by one check.
"""

from __future__ import annotations

import mmap
import struct
import time

BOOTING, READY, RETIRING = 0, 1, 2

# state, last beat, start of the oldest request in flight (0: none), requests served
_LAYOUT = struct.Struct("=Bddq")


class Heartbeat:
    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, _LAYOUT.size)
        self._write(BOOTING, time.monotonic(), 0.0, 0)

    def _write(self, state: int, beat: float, busy_since: float, served: int) -> None:
        _LAYOUT.pack_into(self.memory, 0, state, beat, busy_since, served)

    def read(self) -> tuple[int, float, float, int]:
        """(state, last beat, oldest request's start or 0, requests served)."""
        state, beat, busy_since, served = _LAYOUT.unpack_from(self.memory, 0)
        return state, beat, busy_since, served

    # Written by the worker.

    def beat(self, state: int, busy_since: float, served: int) -> None:
        self._write(state, time.monotonic(), busy_since, served)

    def close(self) -> None:
        self.memory.close()
