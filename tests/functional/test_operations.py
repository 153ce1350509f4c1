"""Binding, signals, logs and the command line, against real processes."""

from __future__ import annotations

import ast
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.server import MODELS, ROOT, RunningServer, fetch, listening_port, wait_until


def _run_cli(*arguments: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize(
    "options",
    [
        ["--threads", "4"],
        ["--thread-per-request"],
        ["--process-per-request", "4"],
        ["--threads", "1"],
    ],
    ids=["thread-pool", "thread-per-request", "process-per-request", "one-at-a-time"],
)
def test_signal_lets_requests_in_flight_finish_then_exits_0(
    start_server: Callable[..., RunningServer], options: list[str], sig: int
) -> None:
    server = start_server(options=options)
    in_flight = 1 if options == ["--threads", "1"] else 4
    results: list[tuple[int, bytes]] = []

    def request(number: int) -> None:
        results.append(fetch(server.port, f"/slow?ms=800&announce=request-{number}"))

    clients = [threading.Thread(target=request, args=(n,)) for n in range(in_flight)]
    for client in clients:
        client.start()
    assert wait_until(lambda: server.log.count("app: started request-") == in_flight), server.log
    server.process.send_signal(sig)
    for client in clients:
        client.join(10)
    assert [status for status, _ in results] == [200] * in_flight
    assert server.process.wait(10) == 0
    # Once stopping, no new connection is accepted.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


@pytest.mark.parametrize("model", list(MODELS))
def test_term_after_every_kind_of_ending_exits_at_once(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    """Once every request has ended, whether the connection was kept, closed by the
    client's request or by an app failure, nothing is counted as still in flight."""
    server = start_server(options=[*MODELS[model], "--graceful-timeout", "20"])
    for headers in ({}, {"Connection": "close"}):
        for path in ("/", "/raise-before-start", "/echo"):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            connection.request("POST" if path == "/echo" else "GET", path, b"x", headers)
            connection.getresponse().read()
            connection.close()
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    # Idle connections are closed after a second of drain; nothing else to wait for.
    assert time.monotonic() - started < 3


def test_graceful_timeout_bounds_the_wait(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(options=["--threads", "2", "--graceful-timeout", "1"])
    outcome: list[object] = []

    def request() -> None:
        try:
            outcome.append(fetch(server.port, "/slow?ms=8000&announce=long"))
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    client = threading.Thread(target=request, daemon=True)
    client.start()
    assert server.wait_for_log("app: started long", 10), server.log
    started = time.monotonic()
    code = server.stop(signal.SIGTERM)
    assert code == 0
    assert time.monotonic() - started < 4
    client.join(5)
    # The request outlived the graceful timeout, so it was cut off, not answered.
    assert len(outcome) == 1 and isinstance(outcome[0], (OSError, http.client.HTTPException))


def test_binds_ipv6_loopback_and_several_addresses(
    start_server: Callable[..., RunningServer],
) -> None:
    # Two more addresses besides the helper's own 127.0.0.1:0, each port kernel-chosen.
    server = start_server(options=["-b", "[::1]:0", "-b", "127.0.0.1:0"])

    def ipv4_ports() -> list[int]:
        return [port for line in server.log.splitlines() if (port := listening_port(line))]

    assert wait_until(lambda: len(ipv4_ports()) == 2, 5), server.log
    first, second = ipv4_ports()
    assert first == server.port and second != first
    match = re.search(r"Listening at http://\[::1\]:(\d+)", server.log)
    assert match, server.log
    assert fetch(int(match.group(1)), host="::1")[0] == 200
    assert fetch(second)[0] == 200
    assert fetch(server.port)[0] == 200


def _unix_get(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := client.recv(4096):
            data += chunk
    return data


def test_unix_socket(start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    path = tmp_path / "corral.sock"
    server = start_server(options=["-b", f"unix:{path}"])
    data = _unix_get(path)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hello\n")
    assert server.port


@pytest.mark.parametrize(
    "options", [[], ["-w", "2"], ["--reload"]], ids=["single", "workers", "reload"]
)
def test_a_stop_removes_the_unix_socket_file_it_bound(
    start_server: Callable[..., RunningServer], tmp_path: Path, options: list[str]
) -> None:
    """As gunicorn: the file goes with the server, so a client finds no server there
    rather than a socket that refuses."""
    path = tmp_path / "corral.sock"
    server = start_server(options=["-b", f"unix:{path}", *options])
    if "-w" in options:
        assert wait_until(lambda: server.log.count("Booted worker") >= 2, 15), server.log
    assert _unix_get(path).startswith(b"HTTP/1.1 200 ")
    assert server.stop() == 0, server.log
    assert not path.exists(), server.log


def test_a_stop_leaves_a_socket_file_another_server_bound_since(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    path = tmp_path / "corral.sock"
    first = start_server(options=["-b", f"unix:{path}"])
    assert _unix_get(path).startswith(b"HTTP/1.1 200 ")
    # A second server binds the path over the first one's file, then the first stops.
    second = start_server(options=["-b", f"unix:{path}"])
    assert wait_until(lambda: "Listening at unix:" in second.log, 15), second.log
    assert first.stop() == 0, first.log
    assert _unix_get(path).startswith(b"HTTP/1.1 200 ")
    assert second.stop() == 0, second.log
    assert not path.exists()


def test_access_log_uses_gunicorn_atoms(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(
        options=[
            "--access-logfile",
            "-",
            "--access-logformat",
            'ACCESS %(h)s "%(r)s" %(s)s %(b)s %(L)s %({user-agent}i)s',
        ]
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/echo?x=1", headers={"User-Agent": "probe/1"})
    connection.getresponse().read()
    connection.close()
    assert server.wait_for_log("ACCESS ")
    line = next(line for line in server.lines if line.startswith("ACCESS "))
    assert re.fullmatch(
        r'ACCESS 127\.0\.0\.1 "GET /echo\?x=1 HTTP/1\.1" 200 - \d+\.\d{6} probe/1\n', line
    ), line


def test_access_log_request_header_atoms_find_every_header(
    start_server: Callable[..., RunningServer],
) -> None:
    """Content-Type and Content-Length are request headers too, though the environ
    names them without HTTP_."""
    server = start_server(
        options=[
            "--access-logfile",
            "-",
            "--access-logformat",
            "ACCESS %({content-type}i)s %({Content-Length}i)s %({x-missing}i)s",
        ]
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/echo", body=b"abc", headers={"Content-Type": "text/x-probe"})
    connection.getresponse().read()
    connection.close()
    assert server.wait_for_log("ACCESS ")
    line = next(line for line in server.lines if line.startswith("ACCESS "))
    assert line == "ACCESS text/x-probe 3 -\n", line


def test_requests_corral_refuses_are_in_the_access_log(
    start_server: Callable[..., RunningServer],
) -> None:
    """A 400 corral answers itself gets its line, with the request line once that much
    was valid, with "-" when not."""
    server = start_server(
        options=["--access-logfile", "-", "--access-logformat", 'ACCESS "%(r)s" %(s)s %(b)s']
    )
    for raw in (b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", b"NOT HTTP\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(raw)
            assert client.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert server.wait_for_log('ACCESS "-"')
    lines = [line for line in server.lines if line.startswith("ACCESS ")]
    assert lines == ['ACCESS "GET /bad HTTP/1.1" 400 16\n', 'ACCESS "-" 400 16\n'], lines


def test_request_hooks_see_header_names_as_sent(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """gunicorn's req.headers: upper-cased wire names, HTTP-Version included."""
    record = tmp_path / "headers.log"
    config = tmp_path / "hooks.conf.py"
    config.write_text(
        "def pre_request(worker, req):\n"
        f"    with open({str(record)!r}, 'w') as log:\n"
        "        log.write(repr(req.headers))\n"
    )
    server = start_server(options=["-c", str(config)])
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/", headers={"HTTP-Version": "x", "Content-Type": "a/b"})
    connection.getresponse().read()
    connection.close()
    headers = dict(ast.literal_eval(record.read_text()))
    assert headers["HTTP-VERSION"] == "x"
    assert headers["CONTENT-TYPE"] == "a/b"
    assert headers["HOST"] == f"127.0.0.1:{server.port}"


def test_error_log_file(start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    log_file = tmp_path / "error.log"
    # Only the file gets the start-up line, so the port is read back from it.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral",
            "-b",
            "127.0.0.1:0",
            "--error-logfile",
            str(log_file),
            "tests.apps.behaviours:app",
        ],
        cwd=ROOT,
    )

    def logged_port() -> int | None:
        return listening_port(log_file.read_text() if log_file.exists() else "")

    try:
        assert wait_until(lambda: logged_port() is not None, 15), "no start-up line in the file"
        port = logged_port()
        assert port is not None
        assert fetch(port)[0] == 200
    finally:
        process.terminate()
        assert process.wait(10) == 0


@pytest.mark.parametrize(
    ("arguments", "message", "code"),
    [
        (["--threads", "0", "x:app"], "--threads: must be at least 1", 2),
        (["--threads", "many", "x:app"], "--threads: 'many' is not a whole number", 2),
        (["--threads", "4", "--thread-per-request", "x:app"], "choose one concurrency model", 2),
        (["no_such_module_here:app"], "no module named 'no_such_module_here'", 4),
        (["tests.apps.behaviours:missing"], "has no 'missing'", 4),
        (["tests.apps.behaviours:ROUTES"], "not callable", 4),
        ([], "name the application", 2),
        (["--keep-alive", "-1", "x:app"], "--keep-alive: must be 0 or more seconds", 2),
    ],
)
def test_bad_command_lines_get_one_line_and_non_zero_exit(
    arguments: list[str], message: str, code: int
) -> None:
    result = _run_cli(*arguments)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_address_in_use_is_one_line(start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    result = _run_cli("-b", f"127.0.0.1:{server.port}", "tests.apps.behaviours:app")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_print_config_into_a_pipe_closed_early_is_quiet() -> None:
    # `corral --print-config | head -1`, with the reader gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "corral", "--print-config"],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=20,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert result.stderr == ""


def test_environment_variables_and_print_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral", "--print-config", "--keep-alive", "9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "CORRAL_THREADS": "6", "CORRAL_KEEP_ALIVE": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^threads\s+= 6$", result.stdout, re.M)
    # The command line wins over the environment.
    assert re.search(r"^keep_alive\s+= 9\.0$", result.stdout, re.M)


def test_app_factory(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(app="tests.apps.factory:create_app('greetings')")
    assert fetch(server.port) == (200, b"greetings")


def test_flask_command_serves_the_flask_cli_app() -> None:
    server = RunningServer(
        command=[
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.apps.flask_app",
            "corral",
            "-b",
            "127.0.0.1:0",
            "--threads",
            "8",
        ]
    )
    with server:
        assert "8 threads (thread pool)" in server.log
        status, body = fetch(server.port, "/hello")
        assert status == 200 and b'"message":"hello"' in body
        assert server.stop() == 0


def test_running_out_of_descriptors_pauses_accepting_then_recovers(
    start_server: Callable[..., RunningServer],
) -> None:
    # No connection limit: it would stop accepting before the descriptors run out.
    server = start_server(options=["--threads", "2", "--connection-limit", "0"], fd_limit=40)
    clients = []
    try:
        # The kernel completes these handshakes from the backlog; accepting them runs the
        # server out of descriptors.
        for _ in range(60):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        assert server.wait_for_log("cannot accept a connection")
        time.sleep(1.5)
        # Paused for half a second after each failure, not retried in a busy loop.
        assert server.log.count("cannot accept a connection") <= 6
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert fetch(server.port) == (200, b"hello\n")
            break
        except (OSError, http.client.HTTPException):
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
