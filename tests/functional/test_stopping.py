"""TERM, INT and QUIT with a long request in flight, under every model: the signal is
logged as it arrives; TERM waits --graceful-timeout, INT and QUIT about a second, a
second signal not at all; then the server exits 0 and logs the requests it cut."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.server import ALL_MODELS, RunningServer


@contextmanager
def request_in_flight(server: RunningServer, name: str) -> Iterator[socket.socket]:
    """A 60 s request, yielded once the app has started it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET /slow?ms=60000&announce={name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert server.wait_for_log(f"app: started {name}", timeout=10), server.log
        yield sock


def stopped_after(server: RunningServer, started: float, limit: float) -> tuple[int, float]:
    code = server.process.wait(limit)
    return code, time.monotonic() - started


@pytest.mark.parametrize("model", list(ALL_MODELS))
def test_term_lets_a_request_run_for_the_graceful_timeout_then_cuts_it(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = start_server(options=[*ALL_MODELS[model], "--graceful-timeout", "2"])
    with request_in_flight(server, "term"):
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_for_log("Received TERM", timeout=1.0), server.log
        code, elapsed = stopped_after(server, started, 10)
    assert code == 0, server.log
    # 2 s of grace; a worker's master allows one more before it kills.
    assert 1.8 <= elapsed < 4.5, (elapsed, server.log)
    assert server.wait_for_log("unfinished"), server.log
    if model != "process-per-request":
        assert "GET /slow?ms=60000&announce=term" in server.log


@pytest.mark.parametrize("name", ["INT", "QUIT"])
@pytest.mark.parametrize("model", list(ALL_MODELS))
def test_int_and_quit_stop_within_about_a_second(
    start_server: Callable[..., RunningServer], model: str, name: str
) -> None:
    server = start_server(options=ALL_MODELS[model])
    with request_in_flight(server, name):
        started = time.monotonic()
        server.process.send_signal(signal.Signals["SIG" + name])
        assert server.wait_for_log(f"Received {name}", timeout=1.0), server.log
        code, elapsed = stopped_after(server, started, 10)
    assert code == 0, server.log
    assert elapsed < 3.0, (elapsed, server.log)
    assert server.wait_for_log("unfinished"), server.log


@pytest.mark.parametrize("model", list(ALL_MODELS))
def test_a_second_signal_stops_at_once(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = start_server(options=[*ALL_MODELS[model], "--graceful-timeout", "30"])
    with request_in_flight(server, "twice"):
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_for_log("Received TERM", timeout=1.0), server.log
        server.process.send_signal(signal.SIGINT)
        code, elapsed = stopped_after(server, started, 10)
    assert code == 0, server.log
    assert elapsed < 2.5, (elapsed, server.log)
    if "-w" not in ALL_MODELS[model]:
        assert server.wait_for_log("Received INT again: stopping at once"), server.log
