"""The sizing advice logged while serving: many threads for an application that waits,
about one per core for one that computes."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable

from tests.server import RunningServer, fetch, wait_until

ADVICE = re.compile(r"Sizing: requests wait (\d+)% .* about (\d+) thread")


def _keep_asking(
    port: int, path: str, clients: int, stop: threading.Event
) -> list[threading.Thread]:
    def ask() -> None:
        while not stop.is_set():
            status, _ = fetch(port, path)
            assert status == 200

    threads = [threading.Thread(target=ask) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def _advice(
    start_server: Callable[..., RunningServer], options: list[str], path: str
) -> tuple[int, int]:
    server = start_server(options=options)
    stop = threading.Event()
    threads = _keep_asking(server.port, path, 4, stop)
    try:
        assert wait_until(lambda: ADVICE.search(server.log) is not None, 30), server.log
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    match = ADVICE.search(server.log)
    assert match is not None
    return int(match.group(1)), int(match.group(2))


def test_an_application_that_sleeps_is_advised_many_threads(
    start_server: Callable[..., RunningServer],
) -> None:
    waiting, threads = _advice(start_server, ["--threads", "4"], "/slow?ms=50")
    assert waiting >= 90
    assert threads >= 16


def test_an_application_that_computes_is_advised_about_one_thread_per_core(
    start_server: Callable[..., RunningServer],
) -> None:
    _, threads = _advice(start_server, ["--threads", "16"], "/cpu?ms=5")
    # A busy machine's other processes take the CPU from requests too, which the wall
    # time counts as waiting: the direction is what is checked, not the exact figure.
    assert threads <= 3


SIZE = re.compile(r"Threads: (\d+) -> (\d+) \(--threads auto\)")


def _largest_size(log: str) -> int:
    return max((int(match.group(2)) for match in SIZE.finditer(log)), default=0)


def _one_round(port: int, path: str, clients: int) -> float:
    """Seconds for `clients` requests of `path` sent at once, all answered 200."""
    started = threading.Barrier(clients + 1)
    results: list[int] = []

    def ask() -> None:
        started.wait()
        results.append(fetch(port, path)[0])

    askers = [threading.Thread(target=ask) for _ in range(clients)]
    for asker in askers:
        asker.start()
    started.wait()
    began = time.monotonic()
    for asker in askers:
        asker.join(10)
    assert results == [200] * clients
    return time.monotonic() - began


def test_threads_auto_grows_the_pool_for_an_application_that_waits(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--threads", "auto", "--max-threads", "64"])
    assert "(thread pool, auto: grows to 64 on demand)" in server.log
    stop = threading.Event()
    threads = _keep_asking(server.port, "/slow?ms=50", 16, stop)
    try:
        assert wait_until(lambda: _largest_size(server.log) >= 16, 30), server.log
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    # The pool serves that many at once now: 16 requests of 300 ms take one round; the
    # two threads it started with would take eight.
    assert _one_round(server.port, "/slow?ms=300", 16) < 1.2


def test_threads_auto_serves_fast_requests_beside_slow_ones_at_once(
    start_server: Callable[..., RunningServer],
) -> None:
    """The mixed load a fixed pool starves: requests sleeping a second hold more threads
    than it starts with (one per core), and the fast requests sent meanwhile are answered
    at once, on threads started for them, then those threads end when idle."""
    cores = len(os.sched_getaffinity(0))
    sleeping = cores + 4
    server = start_server(options=["--threads", "auto", "--max-threads", "64"])
    stop = threading.Event()
    slow: list[int] = []

    def sleep_once() -> None:
        slow.append(fetch(server.port, "/slow?ms=1000&announce=slow")[0])

    sleepers = [threading.Thread(target=sleep_once) for _ in range(sleeping)]
    for sleeper in sleepers:
        sleeper.start()
    try:
        assert wait_until(lambda: server.log.count("app: started slow") == sleeping, 10), server.log
        # All still sleep: each fast request is answered well before any ends.
        assert _one_round(server.port, "/", 8) < 0.5, server.log
    finally:
        stop.set()
        for sleeper in sleepers:
            sleeper.join(10)
    assert slow == [200] * sleeping
    assert _largest_size(server.log) > cores, server.log
    # Idle, the threads started on demand end: back to one per core.
    assert wait_until(
        lambda: bool(re.search(rf"Threads: \d+ -> {cores} \(--threads auto\)", server.log)), 10
    ), server.log


def test_workers_auto_is_one_per_core(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(options=["-w", "auto"])
    cores = len(os.sched_getaffinity(0))
    assert wait_until(lambda: server.log.count("Booted worker") == cores), server.log


def test_the_stats_document_carries_the_advice_from_every_worker(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["-w", "2", "--threads", "4", "--stats", "127.0.0.1:0"])
    stats_at = re.compile(r"Stats at (http://127\.0\.0\.1:\d+)")
    assert wait_until(lambda: stats_at.search(server.log) is not None), server.log
    match = stats_at.search(server.log)
    assert match is not None
    url = match.group(1) + "/"
    stop = threading.Event()
    threads = _keep_asking(server.port, "/slow?ms=50", 8, stop)

    def advice() -> dict[str, object] | None:
        with urllib.request.urlopen(url, timeout=5) as response:
            sizing: dict[str, object] | None = json.load(response).get("sizing")
        return sizing

    try:
        assert wait_until(lambda: (advice() or {}).get("samples", 0) >= 20, 30)  # type: ignore[operator]
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    sizing = advice()
    assert sizing is not None
    assert sizing["advised_threads_per_worker"] >= 16  # type: ignore[operator]
    assert sizing["far_off"] is True
    assert "requests wait" in str(sizing["text"])
