"""What `corral top` shows, as text: the verdict, the header, one row per worker and one per
request in flight. The live view (`live.py`) lays out the same cells with rich;
`plain_screen` lays them out as aligned plain text for scripts and pipes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from corral.top.stats import RequestInFlight, Stats, WorkerStats

WORKER_COLUMNS = ("WORKER", "STATE", "BUSY", "WAITING", "SERVED", "P50", "P99", "RSS", "RESTARTS")
# The path comes last: it is the one long cell, and plain text stays aligned before it.
REQUEST_COLUMNS = ("AGE", "WORKER", "THREAD", "METHOD", "PATH")
# Columns aligned on the right: the numbers.
WORKER_NUMBERS = frozenset({"WORKER", "BUSY", "WAITING", "SERVED", "P50", "P99", "RSS", "RESTARTS"})
REQUEST_NUMBERS = frozenset({"AGE", "WORKER"})
# Marks a request older than --slow in plain text, where there is no colour.
SLOW_MARK = "!"


def format_age(seconds: float) -> str:
    """A request's age in tenths of a second, cut down, not rounded: "4.2 s" for 4.29, so
    that "2.0 s" is shown only once 2 s have passed, and marked slow with `--slow 2`."""
    # The few billionths make up for the binary error of a product such as 0.3 * 10.
    return f"{math.floor(seconds * 10 + 1e-9) / 10:.1f} s"


def format_duration(seconds: float | None) -> str:
    """A latency: "850 us", "2.0 ms", "48 ms", "1.25 s"; "-" for None (no request yet)."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 0.01:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def format_bytes(count: int) -> str:
    """A size in binary units: "512 B", "980 KiB", "29.6 MiB", "1.2 GiB"."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1000 or unit == "GiB":
            break
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def format_uptime(seconds: float) -> str:
    """Time up, to the largest unit and the next: "45 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def oldest(stats: Stats) -> RequestInFlight | None:
    """The request that has been in the app longest, None when none is listed."""
    return max(stats.in_flight, key=lambda request: request.age_seconds, default=None)


def verdict(stats: Stats) -> str:
    """One line: "3 of 4 slots busy; 12 waiting; oldest 4.2 s on GET /report"."""
    line = f"{stats.in_app} of {_count(stats.slots, 'slot')} busy; {stats.waiting} waiting"
    request = oldest(stats)
    if request is not None:
        line += f"; oldest {format_age(request.age_seconds)} on {request.method} {request.path}"
    return line


def headline(stats: Stats, address: str) -> str:
    """Two lines on the server: its concurrency model as its start-up line gives it; then
    where, which pid, how long up, the requests answered by status class, open connections
    and restarts."""
    classes = ", ".join(f"{count} {name}" for name, count in sorted(stats.by_status_class.items()))
    answered = _count(stats.requests, "request") + (f" ({classes})" if classes else "")
    restarts = f"; {_count(stats.restarts, 'restart')}" if stats.restarts else ""
    return (
        f"{stats.model}\n"
        f"{address}: pid {stats.pid}, up {format_uptime(stats.uptime_seconds)}; {answered}; "
        f"{_count(stats.connections, 'connection')} open{restarts}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def worker_cells(worker: WorkerStats) -> tuple[str, ...]:
    """A worker's cells under `WORKER_COLUMNS`."""
    return (
        str(worker.pid),
        worker.state,
        f"{worker.in_app}/{worker.slots}",
        str(worker.waiting),
        str(worker.served),
        format_duration(worker.p50_seconds),
        format_duration(worker.p99_seconds),
        format_bytes(worker.rss_bytes),
        str(worker.restarts),
    )


def request_cells(request: RequestInFlight) -> tuple[str, ...]:
    """A request's cells under `REQUEST_COLUMNS`."""
    return (
        format_age(request.age_seconds),
        str(request.worker),
        request.thread,
        request.method,
        request.path,
    )


def is_slow(request: RequestInFlight, slow_seconds: float) -> bool:
    """True when the request has been in the app `slow_seconds` or longer."""
    return request.age_seconds >= slow_seconds


def _table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], numbers: frozenset[str]
) -> list[str]:
    widths = [max(len(row[number]) for row in [columns, *rows]) for number in range(len(columns))]
    lines = []
    for row in [columns, *rows]:
        cells = [
            cell.rjust(width) if name in numbers else cell.ljust(width)
            for name, cell, width in zip(columns, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def plain_screen(stats: Stats, address: str, slow_seconds: float) -> str:
    """The whole screen as plain text, lines ending in newlines: verdict, header, sizing
    advice (when the server gives it), workers, requests in flight oldest first, those
    older than `slow_seconds` marked with `SLOW_MARK` in a first column."""
    lines = [verdict(stats), *headline(stats, address).splitlines()]
    if stats.sizing is not None:
        lines.append(f"sizing: {stats.sizing.text}")
    lines.append("")
    lines += _table(WORKER_COLUMNS, [worker_cells(w) for w in stats.workers], WORKER_NUMBERS)
    lines.append("")
    requests = sorted(stats.in_flight, key=lambda request: -request.age_seconds)
    if requests:
        rows = [
            (SLOW_MARK if is_slow(request, slow_seconds) else "", *request_cells(request))
            for request in requests
        ]
        lines += _table(("", *REQUEST_COLUMNS), rows, REQUEST_NUMBERS)
        if stats.in_app > len(requests):
            lines.append(f"... and {stats.in_app - len(requests)} more not listed")
    else:
        lines.append("no request in flight")
    return "\n".join(lines) + "\n"
