"""Requests corral answers itself without running the app, told as counts in the error log.

A malformed head, a body over `--limit-request-body` or a wait past `--queue-timeout` is
answered by `connection.py` with a short response; the error log hears of it here. The
first refusal of each kind in a period is logged in full (peer, cause, status), so that one
misbehaving client can still be traced; the others are counted, and one line at the end of
the period sums up all of them. A request-smuggling scan or a flood of oversized requests
then writes a few lines every ten seconds rather than one per request, which would bury
everything else and cost the disk as much as the scan costs the network. The access log,
when enabled, still gets one line per refused request: it records requests, not events.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable

from corral.http.errors import RequestError

error_log = logging.getLogger("corral.error")

# Seconds from the first refusal of a period to its summary line.
SUMMARY_SECONDS = 10.0

# (status, reason, cause): "400", "Bad Request", "malformed header field".
Kind = tuple[int, str, str]


# Here rather than beside the loop that raises it (`connection.py`): that module is
# compiled by mypyc, which loses the class attributes of an exception class deriving from
# an uncompiled one (`status` and `reason` then read as RequestError's).
class WaitedTooLong(RequestError):
    """A request waited longer than --queue-timeout for a thread, coroutine or process to
    serve it. Not the client's fault: the server is overloaded, and a balancer in front
    can send the request elsewhere sooner than it would be served here."""

    status = 503
    reason = "Service Unavailable"

    def __init__(self, limit: float) -> None:
        super().__init__(f"waited more than --queue-timeout {limit:g} s to be served")
        # RFC 9110 section 10.2.3: when to ask again. The queue was at least this long.
        self.headers = (("Retry-After", str(max(1, math.ceil(limit)))),)


class RefusalLog:
    """One process's refused requests, counted by kind.

    `record` may be called from any thread. The dispatcher calls `flush_due` about twice a
    second, so that a period's summary is not held back once refusals stop, and `flush`
    as it exits, so that no count is lost. Refusals of a 5xx kind (the server's own
    condition, not the client's fault) are logged as warnings, the others as info.
    """

    def __init__(
        self, interval: float = SUMMARY_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.lock = threading.Lock()
        # When the period's first refusal came; None while nothing is counted.
        self.started: float | None = None
        self.counts: dict[Kind, int] = {}
        # Refusals in the period that were not logged in full.
        self.counted_only = 0
        # In a child serving one connection for a parent (process per request): the pipe
        # that carries each refusal to the parent, which counts it.
        self.forward_fd: int | None = None

    def record(self, status: int, reason: str, cause: str, peer: str) -> None:
        """Count one refused request; log it in full if its kind is new in this period.

        `cause` names the kind and should not vary between requests (no sizes or times
        that differ each time), or every refusal would be logged as the first of its kind.
        """
        if self.forward_fd is not None:
            line = "\t".join((str(status), reason, cause, peer)) + "\n"
            with contextlib.suppress(OSError):
                # The parent is gone or the pipe is full: the count is lost, not the answer.
                os.write(self.forward_fd, line.encode("utf-8", "replace"))
            return
        now = self.clock()
        kind = (status, reason, cause)
        with self.lock:
            if self.started is None:
                self.started = now
            seen = self.counts.get(kind, 0)
            self.counts[kind] = seen + 1
            if seen:
                self.counted_only += 1
        if not seen:
            error_log.log(
                _level(status), "%s: refused: %s; answered %d %s", peer, cause, status, reason
            )
        self.flush_due(now)

    def flush_due(self, now: float | None = None) -> None:
        """Log the period's summary if the period is over."""
        started = self.started
        if started is not None and (self.clock() if now is None else now) - started >= (
            self.interval
        ):
            self.flush()

    def flush(self) -> None:
        """End the period now: one line with every refusal counted in it, unless each
        of them was already logged in full."""
        with self.lock:
            started, counts, counted_only = self.started, self.counts, self.counted_only
            self.started = None
            self.counts = {}
            self.counted_only = 0
        if started is None or not counted_only:
            return
        seconds = self.clock() - started
        total = sum(counts.values())
        by_count = sorted(counts.items(), key=lambda item: -item[1])
        error_log.log(
            max(_level(status) for status, _, _ in counts),
            "refused %s request%s in the last %s s: %s",
            f"{total:,}",
            "" if total == 1 else "s",
            f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}",
            ", ".join(
                f"{count:,} × {status} {reason} ({cause})"
                for (status, reason, cause), count in by_count
            ),
        )

    def forward_to(self, fd: int) -> None:
        """From now on, write each refusal to `fd` instead of counting it here: in a child
        process whose parent counts them (`take_forwarded`)."""
        self.forward_fd = fd

    def take_forwarded(self, data: bytes) -> None:
        """Count the refusals a child wrote (see `forward_to`); malformed lines are skipped."""
        for line in data.decode("utf-8", "replace").splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0].isdigit():
                self.record(int(parts[0]), parts[1], parts[2], parts[3])


def _level(status: int) -> int:
    return logging.WARNING if status >= 500 else logging.INFO
