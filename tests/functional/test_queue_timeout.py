"""`--queue-timeout S`: a request that waited more than S seconds for a thread, coroutine
or process gets 503 with Retry-After at once, instead of running late."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.error_log import counted_in_error_log
from tests.server import RunningServer

CLIENTS = 50
SLOW = "/slow?ms=500"
QUEUE_TIMEOUT = 1.0
# Two requests at a time in each model. Worker processes accept a new connection only
# with a free slot, so new connections wait in the kernel's backlog, where no wait can be
# measured; there, the clients' connections are open and idle before they all send.
MODELS: dict[str, tuple[list[str], bool]] = {
    "thread-pool": (["--threads", "2"], False),
    "thread-per-request": (["--thread-per-request", "--max-threads", "2"], False),
    "process-per-request": (["--process-per-request", "2"], False),
    "gevent": (["-k", "gevent", "--worker-connections", "2"], False),
    "workers-thread": (["-w", "1", "--threads", "2"], True),
    "workers-gevent": (["-w", "1", "-k", "gevent", "--worker-connections", "2"], True),
}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float


def slow_request(connection: http.client.HTTPConnection, start: threading.Barrier) -> Answer:
    """GET /slow on `connection` once every client is ready; the whole answer, read."""
    start.wait()
    started = time.monotonic()
    try:
        connection.request("GET", SLOW)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return Answer(response.status, response.headers, body, time.monotonic() - started)


@pytest.mark.parametrize("model", list(MODELS))
def test_requests_that_waited_too_long_get_503_at_once(model: str) -> None:
    options, idle_first = MODELS[model]
    server = RunningServer(
        options=[*options, "--queue-timeout", str(QUEUE_TIMEOUT), "--keep-alive", "60"]
    )
    with server:
        connections = [
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(CLIENTS)
        ]
        if idle_first:
            for connection in connections:
                connection.request("GET", "/")
                assert connection.getresponse().read() == b"hello\n"
        start = threading.Barrier(CLIENTS)
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(lambda c: slow_request(c, start), connections))
        assert server.stop() == 0
    served = [answer for answer in answers if answer.status == 200]
    refused = [answer for answer in answers if answer.status == 503]
    # Every request was served or refused, each answer whole.
    assert len(served) + len(refused) == CLIENTS, [answer.status for answer in answers]
    for answer in served:
        assert "pid" in json.loads(answer.body)
    # Two at a time for 500 ms each: those that could start within the second.
    assert 2 <= len(served) <= 10, len(served)
    for answer in refused:
        assert answer.headers["Retry-After"] == "1"
        assert answer.headers["Connection"] == "close"
        assert answer.body == b"503 Service Unavailable\n"
        # Refused once the wait passed the limit and a thread came free (within one 500 ms
        # request), not after all the requests ahead of it (up to 12 s).
        assert QUEUE_TIMEOUT < answer.seconds < QUEUE_TIMEOUT + 1.5, answer.seconds
    counted, _ = counted_in_error_log(server.log)
    cause = f"waited more than --queue-timeout {QUEUE_TIMEOUT:g} s to be served"
    assert counted == {(503, cause): len(refused)}


def test_without_a_queue_timeout_every_request_waits_its_turn() -> None:
    with RunningServer(options=["--threads", "2"]) as server:
        start = threading.Barrier(8)
        connections = [
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(8)
        ]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda c: slow_request(c, start), connections))
    assert [answer.status for answer in answers] == [200] * 8


@pytest.mark.parametrize("options", [[], ["-w", "1"]], ids=["one-at-a-time", "workers-sync"])
def test_a_queue_timeout_one_request_at_a_time_is_said_to_have_no_effect(
    options: list[str],
) -> None:
    with RunningServer(options=[*options, "--queue-timeout", "1"]) as server:
        assert server.wait_for_log("--queue-timeout has no effect with one request at a time")
    with RunningServer(options=[*options, "--threads", "2", "--queue-timeout", "1"]) as server:
        assert server.wait_for_log("Listening at")
    assert "--queue-timeout has no effect" not in server.log
