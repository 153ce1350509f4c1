"""The poll(2) fallback used where epoll is missing, driven through real servers here."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server import MODELS, RunningServer, open_idle_connections


def _get(port: int, connection: http.client.HTTPConnection | None = None) -> bytes:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/slow?ms=200")
    response = connection.getresponse()
    assert response.status == 200
    body = response.read()
    if own:
        connection.close()
    return body


@pytest.mark.parametrize("model_name", list(MODELS))
def test_every_model_serves_keep_alive_and_idle_clients_with_poll(
    start_server: Callable[..., RunningServer], model_name: str
) -> None:
    server = start_server(options=[*MODELS[model_name], "--poller", "poll"])
    # Three requests on one keep-alive connection: re-arming after each one works.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(3):
        _get(server.port, connection)
    connection.close()
    # Idle keep-alive connections hold nothing: a new client is served at once.
    idle = open_idle_connections(server.port, 100)
    try:
        started = time.monotonic()
        _get(server.port)
        assert time.monotonic() - started < 0.5
    finally:
        for sock in idle:
            sock.close()


def test_thread_pool_runs_requests_at_once_with_poll(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--threads", "8", "--poller", "poll"])
    with ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        list(pool.map(_get, [server.port] * 8))
        elapsed = time.monotonic() - started
    assert elapsed < 0.6, f"8 requests of 200 ms on 8 threads took {elapsed:.2f} s"
