"""A request that calls its own server with no thread free for the call: the call is
answered 503 within a second and the error log names both requests and the fix, instead
of both waiting forever; with a thread free, or a thread busy with anything else, the
call and every other request are served as usual."""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.dev_server import DevServer
from tests.server import RunningServer
from tests.tls import https_connection, write_certificate

APP = "tests.apps.self_call:app"
# "GET /call" waiting on "GET /inner", the call the guard answers.
_DEADLOCK = re.compile(
    r'self-call deadlock: "GET /call(?:\?\S*)?" \(thread (\S+)\) is waiting on a request to '
    r'this server \("GET /inner" from 127\.0\.0\.1:\d+\) and no thread is free to serve it; '
    r"answered 503\. (.*)$",
    re.MULTILINE,
)
# The app's own timing of its call; the guard answers after about 0.4 s.
_ANSWERED_WITHIN = 1.5


def _get_json(port: int, target: str) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        result: dict[str, Any] = json.loads(response.read())
        return result
    finally:
        connection.close()


def _get_status(port: int, target: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Gate:
    """Where the app's `gate=PORT` requests wait: once `wait_for` returns they are inside
    the application, and they go on when `open` is called."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(15)
        self.port = self.listener.getsockname()[1]
        self.waiting: list[socket.socket] = []

    def wait_for(self, count: int) -> None:
        while len(self.waiting) < count:
            self.waiting.append(self.listener.accept()[0])

    def open(self) -> None:
        for sock in self.waiting:
            sock.sendall(b".")

    def close(self) -> None:
        for sock in self.waiting:
            sock.close()
        self.listener.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.close()


@pytest.fixture
def after_gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.close()


@pytest.fixture
def clients() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as pool:
        yield pool


def _deadlocks(log: str) -> list[tuple[str, str]]:
    """(thread, advice) of each self-call deadlock line."""
    return _DEADLOCK.findall(log)


@pytest.mark.parametrize(
    ("options", "advice"),
    [
        (["--threads", "1"], "Run with --threads 2 or more (or --thread-per-request)."),
        (["-w", "1", "-k", "sync"], "Run with -k thread --threads 2 or more."),
    ],
    ids=["one-at-a-time", "sync-worker"],
)
def test_a_call_with_no_thread_free_is_answered_503_and_the_fix_logged(
    start_server: Callable[..., RunningServer], options: list[str], advice: str
) -> None:
    server = start_server(APP, options)
    result = _get_json(server.port, "/call")
    assert result["status"] == 503, result
    assert result["retry_after"] == "1"
    assert result["seconds"] < _ANSWERED_WITHIN, result
    assert server.wait_for_log("self-call deadlock")
    assert _deadlocks(server.log) == [("MainThread", advice)], server.log
    # Told once, in its own line: not counted again among the refusals.
    assert "refused" not in server.log


def test_run_simple_without_threads_answers_the_call_503() -> None:
    with DevServer("self_call", threaded=False) as server:
        response, body = server.request("/call")
        assert response.status == 200
        result = json.loads(body)
        assert result["status"] == 503, result
        assert result["seconds"] < _ANSWERED_WITHIN, result
        lines = server.wait_for_stderr("self-call deadlock")
        assert _deadlocks("".join(lines)) == [
            ("MainThread", "Call run_simple with threaded=True.")
        ], lines


def test_with_a_thread_free_the_call_is_served(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(APP, ["--threads", "2"])
    result = _get_json(server.port, "/call")
    assert result["status"] == 200, result
    assert "self-call deadlock" not in server.log


@pytest.mark.parametrize(
    "options",
    [["--threads", "2"], ["-w", "1", "--threads", "2"]],
    ids=["gathered-in-the-pool", "in-the-backlog"],
)
def test_every_thread_of_a_pool_calling_the_server_has_its_call_answered(
    start_server: Callable[..., RunningServer],
    gate: Gate,
    after_gate: Gate,
    clients: ThreadPoolExecutor,
    options: list[str],
) -> None:
    server = start_server(APP, options)
    target = f"/call?gate={gate.port}&after={after_gate.port}"
    calls = [clients.submit(_get_json, server.port, target) for _ in range(2)]
    # Both threads hold a request before either calls, and until both calls are
    # answered: neither is free for a call.
    gate.wait_for(2)
    gate.open()
    after_gate.wait_for(2)
    after_gate.open()
    for call in calls:
        result = call.result(15)
        assert result["status"] == 503, result
        assert result["seconds"] < _ANSWERED_WITHIN, result
    # The guard logs each call once it has answered it: the second line may follow the
    # answers a moment later.
    assert server.wait_for_log_count("self-call deadlock", 2, 5), server.log
    assert server.wait_for_log("Run with --threads above 2", 5)
    deadlocks = _deadlocks(server.log)
    assert len(deadlocks) == 2, server.log
    assert {thread for thread, _ in deadlocks} == {"corral-0", "corral-1"}


def test_a_thread_asleep_is_no_call(
    start_server: Callable[..., RunningServer], gate: Gate, clients: ThreadPoolExecutor
) -> None:
    server = start_server(APP, ["--threads", "1"])
    slow = clients.submit(_get_status, server.port, f"/slow?ms=1500&gate={gate.port}")
    gate.wait_for(1)
    # From this host, waiting while the only thread sleeps: it waits, then is served.
    waiting = clients.submit(_get_status, server.port, "/hello")
    gate.open()
    assert slow.result(15) == (200, b"slow")
    assert waiting.result(15) == (200, b"hello")
    assert "self-call deadlock" not in server.log


def test_a_thread_waiting_on_another_server_is_no_call(
    start_server: Callable[..., RunningServer], gate: Gate, clients: ThreadPoolExecutor
) -> None:
    other = start_server(APP, ["--threads", "4"])
    server = start_server(APP, ["--threads", "1"])
    url = f"http://127.0.0.1:{other.port}/slow?ms=1500"
    outer = clients.submit(_get_json, server.port, f"/call?gate={gate.port}&url={url}")
    gate.wait_for(1)
    # The only thread waits on a socket to a server of this host, not to this one: a
    # request from this host waits for it, and is not taken for its call.
    waiting = clients.submit(_get_status, server.port, "/hello")
    gate.open()
    assert outer.result(15)["status"] == 200
    assert waiting.result(15) == (200, b"hello")
    assert "self-call deadlock" not in server.log


def test_a_call_waits_for_a_pool_thread_busy_with_something_else(
    start_server: Callable[..., RunningServer], gate: Gate, clients: ThreadPoolExecutor
) -> None:
    server = start_server(APP, ["--threads", "2"])
    slow = clients.submit(_get_status, server.port, f"/slow?ms=1500&gate={gate.port}")
    outer = clients.submit(_get_json, server.port, f"/call?gate={gate.port}")
    gate.wait_for(2)
    gate.open()
    # One thread calls, the other sleeps: the call is served once the sleep ends.
    result = outer.result(15)
    assert result["status"] == 200, result
    assert slow.result(15) == (200, b"slow")
    assert "self-call deadlock" not in server.log


def test_a_request_ahead_of_the_call_in_the_backlog_is_served_in_turn(
    start_server: Callable[..., RunningServer], gate: Gate, clients: ThreadPoolExecutor
) -> None:
    server = start_server(APP, ["--threads", "1"])
    outer: Future[dict[str, Any]] = clients.submit(
        _get_json, server.port, f"/call?gate={gate.port}"
    )
    gate.wait_for(1)
    # Connected and sent while the only thread is inside the application: it waits in
    # the backlog ahead of the call, and the guard accepts it on the way to the call.
    ahead = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        ahead.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        gate.open()
        assert outer.result(15)["status"] == 503
        answer = b""
        while chunk := ahead.recv(4096):
            answer += chunk
    finally:
        ahead.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.endswith(b"hello")
    # Logged by the guard once it has answered the call, which may be after the request
    # ahead of it was served.
    assert server.wait_for_log("self-call deadlock")
    assert len(_deadlocks(server.log)) == 1, server.log


def test_a_call_over_tls_is_answered_503(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    certificate = write_certificate(trustme.CA(), tmp_path)
    server = start_server(
        APP,
        ["--threads", "1", *certificate.options()],
        env={"SSL_CERT_FILE": str(certificate.ca)},
    )
    connection = https_connection(server.port, certificate.ca, timeout=30)
    try:
        connection.request("GET", "/call")
        response = connection.getresponse()
        result = json.loads(response.read())
    finally:
        connection.close()
    assert result["status"] == 503, result
    assert result["seconds"] < _ANSWERED_WITHIN, result
    assert server.wait_for_log("self-call deadlock")
    assert len(_deadlocks(server.log)) == 1, server.log
