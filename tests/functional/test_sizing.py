"""The sizing advice logged while serving: many threads for an application that waits,
about one per core for one that computes."""

from __future__ import annotations

import re
import threading
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
