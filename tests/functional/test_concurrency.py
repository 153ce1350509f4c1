"""How many requests each concurrency model runs at once, measured with real clients."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server import MODELS, RunningServer, open_idle_connections

CLIENTS = 32
SLEEP_MS = 200


def _fetch_slow(port: int) -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", f"/slow?ms={SLEEP_MS}")
        response = connection.getresponse()
        assert response.status == 200
        result: dict[str, object] = json.loads(response.read())
        return result
    finally:
        connection.close()


def _run_clients(port: int) -> tuple[float, list[dict[str, object]]]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        started = time.monotonic()
        results = list(pool.map(_fetch_slow, [port] * CLIENTS))
        return time.monotonic() - started, results


def _most_at_once(results: list[dict[str, object]]) -> int:
    """The most requests whose spans in the app (the machine's monotonic clock) overlap."""
    events = sorted(
        [(float(str(result["began"])), 1) for result in results]
        + [(float(str(result["ended"])), -1) for result in results]
    )
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_thread_pool_of_32_serves_32_slow_requests_at_once(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--threads", "32"])
    elapsed, results = _run_clients(server.port)
    assert elapsed < 0.8, f"32 requests of {SLEEP_MS} ms took {elapsed:.2f} s"
    assert len({result["thread"] for result in results}) > 16


def test_one_at_a_time_serves_requests_one_after_another(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--threads", "1"])
    elapsed, results = _run_clients(server.port)
    assert elapsed >= CLIENTS * SLEEP_MS / 1000, f"took only {elapsed:.2f} s"
    assert len({result["thread"] for result in results}) == 1


def test_process_per_request_runs_at_most_n_at_once(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--process-per-request", "4"])
    _, results = _run_clients(server.port)
    # 32 requests, 4 at a time: never more, and 4 at some moment.
    assert _most_at_once(results) == 4
    assert len({result["pid"] for result in results}) == CLIENTS


def test_thread_per_request_runs_all_at_once(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--thread-per-request"])
    elapsed, _ = _run_clients(server.port)
    assert elapsed < 0.8, f"took {elapsed:.2f} s"


def test_thread_per_request_ceiling_queues_and_is_logged(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--thread-per-request", "--max-threads", "8"])
    elapsed, _ = _run_clients(server.port)
    # 32 requests, at most 8 at once: 4 rounds of 200 ms.
    assert 0.8 <= elapsed < 1.6, f"took {elapsed:.2f} s"
    assert server.wait_for_log("thread ceiling of 8 reached")


_WITH_WORKER_PROCESSES = {
    "sync-workers": ["-w", "2"],
    "thread-workers": ["-w", "2", "--threads", "4"],
}


@pytest.mark.parametrize(
    "options",
    [*MODELS.values(), *_WITH_WORKER_PROCESSES.values()],
    ids=[*MODELS, *_WITH_WORKER_PROCESSES],
)
def test_idle_keep_alive_connections_hold_no_worker(
    start_server: Callable[..., RunningServer], options: list[str]
) -> None:
    server = start_server(options=[*options, "--keep-alive", "30"])
    idle = open_idle_connections(server.port, 500)
    try:
        # Every one of the 500 connections is now open, idle and kept alive.
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        elapsed = time.monotonic() - started
        connection.close()
        assert elapsed < 0.1, f"a new client waited {elapsed * 1000:.0f} ms"
    finally:
        for sock in idle:
            sock.close()


def test_startup_line_states_the_concurrency(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(options=["--threads", "8"])
    assert "1 process × 8 threads (thread pool) = 8 requests at a time" in server.log
    other = start_server(options=["--threads", "1"])
    assert "1 process × 1 thread = 1 request at a time" in other.log


def test_demo_app_shows_four_threads_at_work(start_server: Callable[..., RunningServer]) -> None:
    """The README's first command: eight 300 ms requests, four at a time, on four threads."""
    server = start_server(app="corral.demo:app", options=["--threads", "4"])

    def fetch(_: int) -> dict[str, object]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/slow?ms=300")
        response = connection.getresponse()
        assert response.status == 200
        result: dict[str, object] = json.loads(response.read())
        connection.close()
        return result

    with ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        results = list(pool.map(fetch, range(8)))
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 1.2, f"took {elapsed:.2f} s"
    assert len({result["thread"] for result in results}) == 4
    assert all(result["multithread"] is True for result in results)
