"""`-k gevent`: many slow requests at once in one process, capped by --worker-connections."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from tests.server import ROOT, RunningServer, wait_until

PROBE_APP = "tests.apps.gevent_probe:app"


async def _fetch_raw(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def _fetch_all(port: int, path: str, count: int) -> list[bytes | BaseException]:
    fetches = [_fetch_raw(port, path) for _ in range(count)]
    # Every fetch runs to its end, failed or not: none is left cancelled mid-connect.
    return await asyncio.wait_for(asyncio.gather(*fetches, return_exceptions=True), timeout=20)


def _time_concurrent_requests(port: int, path: str, count: int) -> float:
    """Send `count` requests at once from one asyncio loop, so the client's own threads
    are never what limits them; the seconds until the last answer."""
    started = time.monotonic()
    answers = asyncio.run(_fetch_all(port, path, count))
    elapsed = time.monotonic() - started
    failed = [repr(answer) for answer in answers if isinstance(answer, BaseException)]
    assert failed == [], f"{len(failed)} of {count} failed, first: {failed[:3]}"
    wrong = [
        answer[:40]
        for answer in answers
        if isinstance(answer, bytes) and not answer.startswith(b"HTTP/1.1 200 ")
    ]
    assert wrong == [], wrong[:3]
    return elapsed


def _get_json(port: int, path: str) -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        result: dict[str, object] = json.loads(response.read())
        return result
    finally:
        connection.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_thousand_slow_requests_at_once(
    start_server: Callable[..., RunningServer], workers: int
) -> None:
    server = start_server(options=["-k", "gevent", "-w", str(workers)])
    assert wait_until(lambda: server.log.count("Booted worker") >= workers, 15), server.log
    elapsed = _time_concurrent_requests(server.port, "/slow?ms=100", 1000)
    # One after another they would take 100 s; ten at a time, 10 s.
    assert elapsed < 1.5, f"1000 requests of 100 ms took {elapsed:.2f} s"


def test_worker_connections_caps_requests_in_flight(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["-k", "gevent", "--worker-connections", "10"])
    elapsed = _time_concurrent_requests(server.port, "/slow?ms=200", 20)
    # 20 requests, 10 at a time, 200 ms each: two rounds.
    assert 0.4 <= elapsed < 0.9, f"took {elapsed:.2f} s"


def test_startup_line_states_the_concurrency(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(options=["-k", "gevent"])
    assert (
        "Concurrency: 1 process × 1000 coroutines (gevent) = 1000 requests at a time" in server.log
    )
    capped = start_server(options=["-k", "gevent", "--worker-connections", "10"])
    assert "Concurrency: 1 process × 10 coroutines (gevent) = 10 requests at a time" in capped.log


def test_application_is_imported_after_patching(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(app=PROBE_APP, options=["-k", "gevent"])
    assert _get_json(server.port, "/") == {
        "sleep_patched": True,
        "socket_patched": True,
        "multithread": True,
        "multiprocess": False,
    }


def test_without_gevent_the_application_is_left_unpatched(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(app=PROBE_APP, options=["--threads", "2"])
    result = _get_json(server.port, "/")
    assert result["sleep_patched"] is False
    assert result["socket_patched"] is False


def test_workers_serve_cooperatively_on_listeners_made_before_patching(
    start_server: Callable[..., RunningServer],
) -> None:
    """The master opens the listening sockets before any worker patches; the sockets a
    worker accepts from them must still yield while they wait."""
    server = start_server(options=["-k", "gevent", "--workers", "1"])
    assert _get_json(server.port, "/slow?ms=1")  # the worker has booted
    elapsed = _time_concurrent_requests(server.port, "/slow?ms=200", 100)
    assert elapsed < 1.0, f"100 requests of 200 ms took {elapsed:.2f} s"
    probe = start_server(app=PROBE_APP, options=["-k", "gevent", "--workers", "2"])
    result = _get_json(probe.port, "/")
    assert result["sleep_patched"] is True
    assert result["multiprocess"] is True


# corral started in a process where gevent cannot be imported: None in sys.modules is
# Python's own way to block an import, and the workers it forks inherit it.
_WITHOUT_GEVENT = (
    "import sys; sys.modules['gevent'] = None; "
    "from corral.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("workers", [[], ["-w", "2"]], ids=["one-process", "workers"])
def test_without_gevent_installed_it_says_how_before_binding(workers: list[str]) -> None:
    options = [*workers, "-k", "gevent", "-b", "127.0.0.1:0", "tests.apps.behaviours:app"]
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_GEVENT, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "corral: error: -k gevent needs gevent: pip install 'corral[gevent]'\n"
    assert result.stdout == ""
