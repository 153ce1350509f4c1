"""`--connection-limit N`: each process holds at most N connections. At the limit, the
connections idle the longest are closed to make room; with none idle, new connections
wait in the kernel's backlog until one closes. The open-file limit is raised to fit."""

from __future__ import annotations

import re
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.server import SINGLE_PROCESS_MODELS, RunningServer, fetch, wait_until

TIMEOUT = 10.0
LIMIT = 5
MODELS = {
    **SINGLE_PROCESS_MODELS,
    # One worker process, so that every connection goes to the one limit.
    "workers-sync": ["-w", "1"],
    "workers-thread": ["-w", "1", "--threads", "4"],
    "workers-gevent": ["-w", "1", "-k", "gevent"],
    # Pausing and resuming the listeners differs with poll(2).
    "thread-pool-poll": ["--threads", "4", "--poller", "poll"],
}
APP = "tests.apps.behaviours:app"
# Closed once answered, so that it does not stay on as an idle connection.
CLOSING_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2), Linux")


@pytest.fixture(params=list(MODELS), ids=list(MODELS))
def limited(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    options = [*MODELS[request.param], "--connection-limit", str(LIMIT), "--keep-alive", "60"]
    with RunningServer(options=options) as server:
        yield server


@pytest.fixture
def clients() -> Iterator[Callable[[], socket.socket]]:
    """Connect to a port; every socket made is closed afterwards."""
    made: list[socket.socket] = []

    def connect(port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        made.append(sock)
        return sock

    yield connect  # type: ignore[misc]
    for sock in made:
        sock.close()


def served(sock: socket.socket, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> bool:
    """Send `request` (or its end); True once a 200 response has come back."""
    sock.sendall(request)
    return sock.recv(4096).startswith(b"HTTP/1.1 200 ")


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def waiting_to_be_accepted(port: int) -> int:
    """Connections in the kernel's queue of the socket listening on `port`: `ss` shows
    them in the Recv-Q column of a listening socket."""
    output = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(output.split()[1])


def test_at_the_limit_an_idle_connection_makes_room_not_one_sending_a_request(
    limited: RunningServer, clients: Callable[[int], socket.socket]
) -> None:
    idle = clients(limited.port)
    assert served(idle)
    # Each sends part of a head and stops, as a slow client (or slowloris) does.
    slow = [clients(limited.port) for _ in range(LIMIT - 1)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\n")
    assert fetch(limited.port) == (200, b"hello\n")
    assert closed_by_server(idle)
    assert limited.wait_for_log(f"connection limit of {LIMIT} reached")
    for sock in slow:
        assert served(sock, b"Host: x\r\n\r\n")


# Served on the thread that accepts, a connection is idle again before the next client
# is accepted, so which was idle the longest does not depend on thread scheduling.
@pytest.mark.parametrize("model", ["one-at-a-time", "workers-sync"])
def test_the_connection_idle_the_longest_is_closed_first(
    model: str, clients: Callable[[int], socket.socket]
) -> None:
    options = [*MODELS[model], "--connection-limit", str(LIMIT), "--keep-alive", "60"]
    with RunningServer(options=options) as server:
        idle = []
        for _ in range(LIMIT):
            sock = clients(server.port)
            assert served(sock)
            idle.append(sock)
        assert fetch(server.port) == (200, b"hello\n")
        assert closed_by_server(idle[0])
        # The others, idle for less long, were left open.
        for sock in idle[1:]:
            assert served(sock)


@needs_ss
def test_clients_sending_a_request_are_not_closed_for_room_and_new_ones_wait(
    limited: RunningServer, clients: Callable[[int], socket.socket]
) -> None:
    # Each sends part of a head and stops, as a slow client (or slowloris) does.
    slow = [clients(limited.port) for _ in range(LIMIT)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\n")
    waiting = clients(limited.port)
    waiting.sendall(CLOSING_REQUEST)
    assert wait_until(lambda: waiting_to_be_accepted(limited.port) == 1)
    # One slow client ends its request: it is answered, and then, idle, makes room.
    assert served(slow[0], b"Host: x\r\n\r\n")
    assert waiting.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert closed_by_server(slow[0])
    # At the limit again, another new client waits until a slow one leaves.
    slow.append(clients(limited.port))
    slow[-1].sendall(b"GET / HTTP/1.1\r\n")
    also_waiting = clients(limited.port)
    also_waiting.sendall(CLOSING_REQUEST)
    assert wait_until(lambda: waiting_to_be_accepted(limited.port) == 1)
    slow[1].close()
    assert also_waiting.recv(4096).startswith(b"HTTP/1.1 200 ")
    # The others were kept for as long as they keep sending, and are served.
    assert served(slow[2], b"Host: x\r\n\r\n")


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Room in this test process for the clients of a flood."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-file limit, {hard}, is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    "options", [[], ["-w", "2", "--threads", "4"]], ids=["one-at-a-time", "workers-thread"]
)
def test_the_default_limit_leaves_room_beside_a_thousand_slow_clients(
    options: list[str],
    many_descriptors: None,
    clients: Callable[[int], socket.socket],
) -> None:
    with RunningServer(options=options) as server:
        for _ in range(1000):
            clients(server.port).sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert fetch(server.port) == (200, b"hello\n")
        assert "connection limit" not in server.log


def open_file_limits(pid: int) -> tuple[str, str]:
    """(soft, hard) "Max open files" of a running process, as /proc shows them."""
    with open(f"/proc/{pid}/limits") as limits:
        match = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits.read())
    assert match is not None
    return match[1], match[2]


def under_ulimit(limit: str, *options: str) -> list[str]:
    """The corral command, run by a shell that first sets `ulimit -n` as `limit` says."""
    corral = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", *options, APP]
    return ["bash", "-c", f'ulimit {limit} && exec "$@"', "bash", *corral]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("options", [[], ["-w", "1"]], ids=["single", "workers"])
def test_the_soft_open_file_limit_is_raised_for_the_connection_limit(options: list[str]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 10100:
        pytest.skip(f"the hard open-file limit, {hard}, is below 10100")
    with RunningServer(command=under_ulimit("-Sn 256", *options)) as server:
        assert open_file_limits(server.process.pid)[0] == "10100"
        assert fetch(server.port) == (200, b"hello\n")


def test_a_hard_open_file_limit_below_the_connection_limit_lowers_it() -> None:
    with RunningServer(command=under_ulimit("-n 300", "--connection-limit", "1000")) as server:
        assert server.wait_for_log("--connection-limit 1000 lowered to 200: the open-file limit")
        assert fetch(server.port) == (200, b"hello\n")
