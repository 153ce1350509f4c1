"""The live view of `corral top`, drawn with rich (`pip install 'corral[top]'`): the same
verdict, header and rows as the plain text (`screen.py`), with colour, redrawn in place on
the terminal's alternate screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.top.screen import (
    REQUEST_COLUMNS,
    REQUEST_NUMBERS,
    WORKER_COLUMNS,
    WORKER_NUMBERS,
    format_age,
    headline,
    is_slow,
    request_cells,
    verdict,
    worker_cells,
)
from corral.top.stats import Stats

SLOW_STYLE = "bold red"


def _verdict_style(stats: Stats) -> str:
    if stats.waiting:
        return "bold red"
    if stats.slots and stats.in_app >= stats.slots:
        return "bold yellow"
    return "bold green"


def _table(title: str, columns: tuple[str, ...], numbers: frozenset[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right" if name in numbers else "left", no_wrap=True)
    return table


def live_screen(
    stats: Stats, address: str, slow_seconds: float, interval: float = 1.0
) -> RenderableType:
    """One frame: the verdict, the header, the sizing advice when the server gives it (in
    yellow when the setting is more than twice off), a table of workers and one of requests
    in flight, oldest first, those in the app `slow_seconds` or longer in red."""
    parts: list[RenderableType] = [
        Text(verdict(stats), style=_verdict_style(stats)),
        Text(headline(stats, address), style="dim"),
    ]
    if stats.sizing is not None:
        style = "yellow" if stats.sizing.far_off else "dim"
        parts.append(Text(f"sizing: {stats.sizing.text}", style=style))
    workers = _table("workers", WORKER_COLUMNS, WORKER_NUMBERS)
    for worker in stats.workers:
        workers.add_row(*worker_cells(worker))
    parts += [Text(""), workers]
    requests = sorted(stats.in_flight, key=lambda request: -request.age_seconds)
    if requests:
        table = _table(
            f"requests in flight (red: {format_age(slow_seconds)} or more)",
            REQUEST_COLUMNS,
            REQUEST_NUMBERS,
        )
        for request in requests:
            slow = is_slow(request, slow_seconds)
            table.add_row(*request_cells(request), style=SLOW_STYLE if slow else None)
        parts.append(table)
        if stats.in_app > len(requests):
            parts.append(Text(f"... and {stats.in_app - len(requests)} more not listed"))
    else:
        parts.append(Text("no request in flight", style="dim"))
    parts.append(Text(f"\nevery {interval:g} s; Ctrl-C quits", style="dim"))
    return Group(*parts)


def watch(
    read: Callable[[], Stats],
    first: Stats,
    address: str,
    interval: float,
    slow_seconds: float,
    out: TextIO,
) -> None:
    """Show `first`, then what `read()` returns every `interval` seconds, on `out`'s
    terminal, until Ctrl-C (KeyboardInterrupt, left to the caller) or until `read` raises
    (`StatsFailure`), after the terminal's own screen is restored."""
    console = Console(file=out)
    frame = live_screen(first, address, slow_seconds, interval)
    with Live(frame, console=console, screen=True, auto_refresh=False) as live:
        deadline = time.monotonic()
        while True:
            deadline = max(deadline + interval, time.monotonic())
            time.sleep(max(0.0, deadline - time.monotonic()))
            live.update(live_screen(read(), address, slow_seconds, interval), refresh=True)
