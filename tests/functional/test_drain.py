"""--health-path and --drain-delay, as an orchestrator or a balancer meets them: the health
path answered by corral itself, 503 from the moment TERM arrives while every request is
still served for the delay, then the graceful drain; HUP without the delay; and every
response of a draining server saying "Connection: close"."""

from __future__ import annotations

import http.client
import select
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

from tests.server import MODELS, RunningServer, fetch, wait_until
from tests.wire import read_until_closed

HEALTH = ["--health-path", "/healthz"]
# The models a slow request does not hold the loop's thread in; one at a time runs the
# application on that very thread (see `test_one_at_a_time_answers_between_requests`).
LOOP_FREE_MODELS = [name for name in MODELS if name != "one-at-a-time"]


def get(port: int, path: str, method: str = "GET", close: bool = False) -> http.client.HTTPResponse:
    """One request on a fresh connection; the response, read whole."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"Connection": "close"} if close else {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def health_status(port: int) -> int:
    return get(port, "/healthz").status


def started(server: RunningServer) -> RunningServer:
    """`server` once it serves: under a master, its workers have booted (a worker told
    to stop while it boots stops at once, with nothing in flight to drain)."""
    assert health_status(server.port) == 200
    arguments = list(server.process.args)  # type: ignore[arg-type]
    if "-w" in arguments:
        workers = int(arguments[arguments.index("-w") + 1])
        assert wait_until(lambda: server.log.count("Booted worker") >= workers, 10), server.log
    return server


def answer_in_flight(
    port: int, path: str, answers: list[http.client.HTTPResponse]
) -> socket.socket:
    """Send `path` on a connection of its own; a thread reads the answer into `answers`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)

    def read() -> None:
        response = connection.getresponse()
        response.read()
        answers.append(response)
        connection.close()

    threading.Thread(target=read, daemon=True).start()
    assert connection.sock is not None
    return connection.sock


@pytest.mark.parametrize("model", LOOP_FREE_MODELS)
def test_term_fails_the_health_path_at_once_and_serves_on_for_the_drain_delay(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = started(
        start_server(
            options=[*MODELS[model], *HEALTH, "--drain-delay", "2", "--graceful-timeout", "10"]
        )
    )
    ready = get(server.port, "/healthz")
    assert (ready.status, ready.getheader("Connection")) == (200, None)
    # A keep-alive connection opened before TERM, as a balancer's pool holds them.
    pooled = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    pooled.request("GET", "/")
    assert pooled.getresponse().read()
    # In flight across the whole delay: it ends during the graceful drain.
    in_flight: list[http.client.HTTPResponse] = []
    answer_in_flight(server.port, "/slow?ms=2500&announce=drain", in_flight)
    assert server.wait_for_log("app: started drain", timeout=10), server.log

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    polls = 0
    while True:
        polls += 1
        answer = get(server.port, "/healthz")
        if answer.status == 503:
            break
        assert answer.status == 200
        assert time.monotonic() - signalled < 5, server.log
    failing_after = time.monotonic() - signalled
    print(f"{model}: health 503 {failing_after * 1000:.1f} ms after TERM ({polls} polls)")
    assert failing_after < 0.1, (failing_after, server.log)
    assert answer.getheader("Connection") == "close"

    # During the delay: new connections are accepted and served, each response closing
    # its connection; the pooled connection's next request too.
    served = []
    while time.monotonic() - signalled < 1.5:
        response = get(server.port, "/slow?ms=50")
        served.append((response.status, response.getheader("Connection")))
        assert health_status(server.port) == 503
    pooled.request("GET", "/")
    response = pooled.getresponse()
    assert response.read()
    served.append((response.status, response.getheader("Connection")))
    pooled.close()
    assert served and set(served) == {(200, "close")}, served
    assert server.process.poll() is None

    code = server.process.wait(15)
    stopped_after = time.monotonic() - signalled
    print(f"{model}: {len(served)} requests served during the delay; exit {stopped_after:.2f} s")
    assert code == 0, server.log
    assert 2.0 <= stopped_after < 6, (stopped_after, server.log)
    assert wait_until(lambda: bool(in_flight), 5), server.log
    assert in_flight[0].status == 200
    if model != "process-per-request":
        # A request process forked before TERM does not learn of it: its response may
        # keep the connection, which the server closes once idle, or answers next with
        # "Connection: close".
        assert in_flight[0].getheader("Connection") == "close"
    assert "unfinished" not in server.log, server.log


@pytest.mark.parametrize("model", ["thread-pool", "workers-thread"])
def test_after_the_drain_delay_new_connections_are_refused_while_requests_finish(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """No listener is left queueing connections that no one accepts (under a master the
    master lets go of its copy at TERM): a balancer's connection is refused, and it
    tries another server before sending anything."""
    server = started(
        start_server(
            options=[*MODELS[model], *HEALTH, "--drain-delay", "0.5", "--graceful-timeout", "10"]
        )
    )
    in_flight: list[http.client.HTTPResponse] = []
    answer_in_flight(server.port, "/slow?ms=3000&announce=refused", in_flight)
    assert server.wait_for_log("app: started refused", timeout=10), server.log
    server.process.send_signal(signal.SIGTERM)
    assert server.wait_for_log("Received TERM", timeout=2), server.log

    def refused() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return False
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            # Tried as the listener closed: its SYN was dropped (not queued to be
            # reset), and is sent again a second later.
            return False

    assert wait_until(refused, 5), server.log
    assert server.process.poll() is None, "refused only once the request in flight ended"
    assert server.process.wait(15) == 0, server.log
    assert wait_until(lambda: bool(in_flight), 5)
    assert in_flight[0].status == 200


@pytest.mark.parametrize("model", ["thread-pool", "workers-thread"])
@pytest.mark.parametrize("second", ["TERM", "INT"])
def test_a_second_signal_during_the_drain_delay_stops_at_once(
    start_server: Callable[..., RunningServer], model: str, second: str
) -> None:
    server = started(
        start_server(
            options=[*MODELS[model], *HEALTH, "--drain-delay", "30", "--graceful-timeout", "30"]
        )
    )
    server.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: health_status(server.port) == 503, 5), server.log
    signalled = time.monotonic()
    server.process.send_signal(signal.Signals["SIG" + second])
    assert server.process.wait(10) == 0, server.log
    assert time.monotonic() - signalled < 3.0, server.log


def test_hup_replaces_workers_without_the_drain_delay(
    start_server: Callable[..., RunningServer],
) -> None:
    """HUP's new workers listen on: the old ones retire at once, the health path answering
    200 throughout, and only a stop for good waits the delay."""
    server = started(
        start_server(
            options=[
                *MODELS["workers-thread"],
                *HEALTH,
                "--drain-delay",
                "30",
                "--graceful-timeout",
                "5",
            ]
        )
    )
    hupped = time.monotonic()
    server.process.send_signal(signal.SIGHUP)
    statuses = set()
    while "Reload complete" not in server.log and time.monotonic() - hupped < 10:
        statuses.add(health_status(server.port))
    assert server.wait_for_log("Reload complete", timeout=10), server.log
    assert wait_until(lambda: server.log.count(" exited") >= 2, 5), server.log
    # Well within the 30 s delay, and the graceful timeout too.
    assert time.monotonic() - hupped < 5, server.log
    statuses.add(health_status(server.port))
    assert statuses == {200}, statuses
    assert "Received HUP" in server.log
    assert server.stop(signal.SIGINT) == 0


def test_a_retiring_worker_answers_the_health_path_200_with_connection_close(
    start_server: Callable[..., RunningServer],
) -> None:
    """--max-requests retires a worker while the server serves on: its health answer on a
    kept-alive connection stays 200 and closes the connection."""
    server = started(
        start_server(
            options=[
                "-w",
                "1",
                "--threads",
                "4",
                *HEALTH,
                "--max-requests",
                "1",
                "--drain-delay",
                "30",
            ]
        )
    )
    # In flight, it keeps the worker draining once the next request has retired it.
    in_flight: list[http.client.HTTPResponse] = []
    answer_in_flight(server.port, "/slow?ms=3000&announce=keep", in_flight)
    assert server.wait_for_log("app: started keep", timeout=10), server.log
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b"ok\n"
    assert get(server.port, "/").status == 200
    assert server.wait_for_log("retiring", timeout=5), server.log
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"ok\n")
    assert response.getheader("Connection") == "close"
    connection.close()
    # The master stopping lets the retiring worker finish its drain.
    server.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: bool(in_flight), 10), server.log
    assert in_flight[0].status == 200
    assert server.process.wait(10) == 0


def test_the_health_path_is_answered_by_corral_not_the_app(
    start_server: Callable[..., RunningServer],
) -> None:
    """GET and HEAD, kept alive and pipelined; never in the access log. Other methods,
    a query or another path reach the app."""
    server = start_server(options=["--threads", "1", *HEALTH, "--access-logfile", "-"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.0\r\n\r\n"
        )
        answers = read_until_closed(sock)
    first, second, third = answers.split(b"HTTP/1.")[1:]
    assert first.startswith(b"1 200 OK\r\n") and first.endswith(b"\r\n\r\nok\n")
    assert b"Cache-Control: no-store\r\n" in first and b"Connection" not in first
    assert second.startswith(b"1 200 OK\r\n") and b"Content-Length: 3\r\n" in second
    assert second.endswith(b"\r\n\r\n")
    assert third.startswith(b"0 200 OK\r\n") and b"Connection: close\r\n" in third
    # A POST, a query, a longer path: the app's (the behaviours app says hello).
    assert fetch(server.port, "/healthz?full=1") == (200, b"hello\n")
    assert fetch(server.port, "/healthz/deep") == (200, b"hello\n")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/healthz", body=b"x")
    assert connection.getresponse().read() == b"hello\n"
    connection.close()
    assert server.wait_for_log('"POST /healthz HTTP/1.1" 200', timeout=5), server.log
    assert server.wait_for_log('"GET /healthz?full=1 HTTP/1.1" 200', timeout=5), server.log
    assert '"GET /healthz HTTP/1.1"' not in server.log
    assert '"HEAD /healthz' not in server.log


def test_health_requests_do_not_wait_for_busy_threads(
    start_server: Callable[..., RunningServer],
) -> None:
    """Every thread of the pool held by the app, requests queued behind them: the health
    path is still answered at once."""
    server = start_server(options=["--threads", "2", *HEALTH])
    answers: list[http.client.HTTPResponse] = []
    for number in range(4):
        answer_in_flight(server.port, f"/slow?ms=3000&announce=busy{number}", answers)
    assert server.wait_for_log("app: started busy", timeout=10)
    began = time.monotonic()
    assert health_status(server.port) == 200
    assert time.monotonic() - began < 1.0
    assert not answers


def test_one_at_a_time_answers_between_requests(
    start_server: Callable[..., RunningServer],
) -> None:
    """One at a time runs the application on the loop's own thread: a health check
    waits for the request in flight (there is no queue to wait behind), and after TERM
    is answered 503 as soon as that request ends, within the delay."""
    server = start_server(options=["--threads", "1", *HEALTH, "--drain-delay", "3"])
    in_flight: list[http.client.HTTPResponse] = []
    answer_in_flight(server.port, "/slow?ms=1000&announce=inline", in_flight)
    assert server.wait_for_log("app: started inline", timeout=10), server.log
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    answer = get(server.port, "/healthz")
    assert answer.status == 503
    assert time.monotonic() - signalled < 2.5
    assert wait_until(lambda: bool(in_flight), 5)
    assert in_flight[0].status == 200
    assert get(server.port, "/").status == 200
    assert server.process.wait(10) == 0, server.log


def test_a_connection_past_keep_alive_with_a_request_arriving_is_served_not_closed(
    start_server: Callable[..., RunningServer],
) -> None:
    """The idle sweep closes a connection only with no byte of a request waiting in it:
    the client (a balancer reusing its connection) would otherwise see it reset. One at
    a time lets the request arrive while the loop is busy, past the keep-alive."""
    server = start_server(options=["--threads", "1", "--keep-alive", "1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        idle_since = time.monotonic()
        in_flight: list[http.client.HTTPResponse] = []
        answer_in_flight(server.port, "/slow?ms=2000&announce=sweep", in_flight)
        assert server.wait_for_log("app: started sweep", timeout=10), server.log
        # The loop runs the slow request; the idle connection passes its keep-alive,
        # then its next request arrives, before the loop sweeps again.
        time.sleep(max(0.0, idle_since + 1.3 - time.monotonic()))
        assert not in_flight, "the slow request must still hold the loop"
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(idle, reset_ends=True)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


@pytest.mark.parametrize("model", list(MODELS))
def test_a_drain_answers_an_idle_connection_instead_of_closing_it(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """TERM leaves an idle keep-alive connection open, within --keep-alive: a balancer
    reusing it at the instant a server closed it would lose its request (RFC 9112
    §9.6). Its next request is answered with "Connection: close", and then the server
    exits."""
    server = start_server(options=[*MODELS[model], "--keep-alive", "30"])
    if "-w" in MODELS[model]:
        started(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_for_log("Received TERM", timeout=5), server.log
        # Open two seconds on: no end of file, and the server still runs.
        readable, _, _ = select.select([idle], [], [], 2.0)
        assert readable == [], idle.recv(100)
        assert server.process.poll() is None, server.log
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(idle)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200 "), answer
    assert b"\r\nconnection: close" in head, answer
    assert server.process.wait(10) == 0, server.log


def test_a_drain_closes_an_idle_connection_at_keep_alive(
    start_server: Callable[..., RunningServer],
) -> None:
    """An idle connection no request comes on ends the drain at --keep-alive, well
    before the graceful timeout."""
    server = start_server(options=["--threads", "4", "--keep-alive", "1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) == 0, server.log
        assert time.monotonic() - signalled < 5, server.log
        assert read_until_closed(idle) == b""


@pytest.mark.parametrize("model", ["thread-pool", "workers-thread"])
def test_after_the_drain_delay_a_connection_idle_throughout_it_closes(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """A client that sent nothing throughout --drain-delay has stopped choosing the server
    (a balancer checking the health path): its idle connection closes with the listener,
    long before --keep-alive, and the server exits."""
    server = started(
        start_server(options=[*MODELS[model], *HEALTH, "--drain-delay", "1", "--keep-alive", "60"])
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert read_until_closed(idle) == b""
        closed = time.monotonic() - signalled
    assert server.process.wait(10) == 0, server.log
    assert 1.0 <= closed < 5.0, (closed, server.log)
