"""systemd socket activation (sd_listen_fds(3)): the test plays systemd, binding the
listening socket, keeping it open, and starting corral with it as fd 3, LISTEN_FDS and
LISTEN_PID; one socket outlives any number of servers, so a restart refuses nothing."""

from __future__ import annotations

import fcntl
import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.load import Load
from tests.server import (
    MODELS,
    ROOT,
    WORKER_MODELS,
    RunningServer,
    fetch,
    stop_process,
    wait_until,
)
from tests.systemd import activated_command, high_fd

PID_APP = "tests.apps.workers_app:app"
ENVIRONMENT_APP = "tests.apps.environment:app"
RESTART_MODELS = {
    "workers-thread": WORKER_MODELS["workers-thread"],
    "thread-pool": MODELS["thread-pool"],
}


@contextmanager
def activated(
    socks: Sequence[socket.socket], options: Sequence[str], app: str, names: str = ""
) -> Iterator[RunningServer]:
    """corral started as systemd starts a socket-activated service: `-b` names an
    address it must not bind, since the sockets handed over replace --bind."""
    fds = [high_fd(sock) for sock in socks]
    argv = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", *options, app]
    try:
        server = RunningServer(command=activated_command(fds, argv, names), pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    with server:
        yield server


def held_tcp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # ListenStream='s Backlog= is SOMAXCONN by default; connections made while no
    # server runs wait here.
    sock.listen(1024)
    return sock


@pytest.mark.parametrize("model", list(RESTART_MODELS))
def test_a_restart_on_the_held_socket_refuses_nothing_and_fails_no_request(model: str) -> None:
    options = [*RESTART_MODELS[model], "--graceful-timeout", "5"]
    made_while_stopped: list[http.client.HTTPConnection] = []
    with held_tcp_socket() as held:
        port = held.getsockname()[1]
        load = Load(port, "/pid")
        load.start()
        try:
            with activated([held], options, PID_APP) as first:
                assert first.port == port
                assert wait_until(lambda: len(load.answers) >= 200, 15), first.log
                assert first.stop(signal.SIGTERM) == 0, first.log
            served_by_first = pids(load)
            answered_by_first = len(load.answers)
            # No server runs: every client waits on a connection in the held socket's
            # backlog, and new ones are still made there, at once.
            assert wait_until(lambda: load.waiting() == 8, 15), load.failures
            for _ in range(4):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                made_while_stopped.append(connection)
                connection.request("GET", "/pid")
            with activated([held], options, PID_APP) as second:
                for connection in made_while_stopped:
                    response = connection.getresponse()
                    assert response.status == 200
                    assert response.read().split()[0].decode() not in served_by_first
                expected = answered_by_first + 200
                assert wait_until(lambda: len(load.answers) >= expected, 15), second.log
                load.stop()
                assert second.stop(signal.SIGTERM) == 0, second.log
        finally:
            load.stop()
            for connection in made_while_stopped:
                connection.close()
    assert load.failures == []
    assert load.retries == []
    # The second server answered the clients that waited, and then others.
    assert pids(load) - served_by_first


def pids(load: Load) -> set[str]:
    """The pids that answered `load`'s requests so far."""
    return {body.split()[0].decode() for body in load.bodies()}


def test_a_unix_socket_is_served_and_the_variables_are_not_left_for_the_app(
    tmp_path: Path,
) -> None:
    path = tmp_path / "corral.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.bind(str(path))
        held.listen(64)
        fd = high_fd(held)
        argv = [sys.executable, "-m", "corral", *MODELS["thread-pool"], ENVIRONMENT_APP]
        try:
            process = subprocess.Popen(
                activated_command([fd], argv, "web"),
                cwd=ROOT,
                pass_fds=[fd],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            os.close(fd)
        try:
            for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                # The single process imported the app with them set; what it, or a
                # process it starts, reads now has them gone.
                assert unix_get(path, f"/{name}").split(b" ")[1] == b"-", name
            assert unix_get(path, "/LISTEN_FDNAMES") == b"web -"
        finally:
            code = stop_process(process, signal.SIGTERM, 15)
            output = process.communicate(timeout=15)
    assert code == 0
    assert f"Listening at unix:{path}" in output[1]


def test_workers_never_see_the_variables() -> None:
    options = WORKER_MODELS["workers-thread"]
    with held_tcp_socket() as held, activated([held], options, ENVIRONMENT_APP) as server:
        assert server.port == held.getsockname()[1]
        for name in ("LISTEN_PID", "LISTEN_FDS"):
            assert fetch(server.port, f"/{name}")[1] == b"- -"


def test_variables_for_another_pid_are_left_alone() -> None:
    with held_tcp_socket() as held:
        fd = high_fd(held)
        # The variables a parent left behind: LISTEN_PID names another process.
        argv = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", ENVIRONMENT_APP]
        command = ["env", "LISTEN_FDS=1", "LISTEN_PID=1", *argv]
        try:
            server = RunningServer(command=command, pass_fds=[fd])
        finally:
            os.close(fd)
        with server:
            # As gunicorn and sd_listen_fds(3): not this process's sockets, so --bind
            # is listened on, and the variables are someone else's to remove.
            assert server.port != held.getsockname()[1]
            assert fetch(server.port, "/LISTEN_PID")[1] == b"1 1"


def test_a_descriptor_that_is_not_a_listening_stream_socket_stops_the_start() -> None:
    read_end, write_end = os.pipe()
    # A connection, as systemd's Accept=yes would hand over.
    connected, peer = socket.socketpair()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram, connected, peer:
        cases = (
            (read_end, "is not a socket"),
            (datagram.fileno(), "is not a stream socket"),
            (connected.fileno(), "is not listening"),
        )
        for handed, reason in cases:
            fd = fcntl.fcntl(handed, fcntl.F_DUPFD_CLOEXEC, 10)
            argv = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", PID_APP]
            try:
                result = subprocess.run(
                    activated_command([fd], argv),
                    cwd=ROOT,
                    pass_fds=[fd],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            finally:
                os.close(fd)
            assert result.returncode == 1, result.stderr
            assert reason in result.stderr
            assert "Traceback" not in result.stderr
    os.close(read_end)
    os.close(write_end)


def unix_get(path: Path, target: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    return answer.partition(b"\r\n\r\n")[2]
