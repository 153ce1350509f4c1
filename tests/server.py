"""A real corral server in a subprocess on 127.0.0.1, port chosen by the kernel."""

from __future__ import annotations

import http.client
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# corral's startup line, Werkzeug's run_simple's and gunicorn's, naming the port it
# listens on (over TLS, with https).
_LISTENING = re.compile(r"(?:Listening at:?|Running on) (https?)://127\.0\.0\.1:(\d+)")

# The concurrency models every behaviour test runs under, by their command-line options.
MODELS: dict[str, list[str]] = {
    "one-at-a-time": ["--threads", "1"],
    "thread-pool": ["--threads", "4"],
    "thread-per-request": ["--thread-per-request"],
    "process-per-request": ["--process-per-request", "4"],
    "gevent": ["-k", "gevent"],
    # The usual production setting: worker processes under a master, threads in each.
    "workers-thread": ["-w", "2", "--threads", "4"],
}
# Worker processes under a master, with each worker class.
WORKER_MODELS: dict[str, list[str]] = {
    "workers-sync": ["-w", "2"],
    "workers-thread": ["-w", "2", "--threads", "4"],
    "workers-gevent": ["-w", "2", "-k", "gevent"],
}
ALL_MODELS: dict[str, list[str]] = {**MODELS, **WORKER_MODELS}
# The models of one process, by their names in corral.workers.MODELS.
SINGLE_PROCESS_MODELS = {name: options for name, options in MODELS.items() if "-w" not in options}


def listening_port(text: str) -> int | None:
    """The port of the first "Listening at http://127.0.0.1:PORT" line in `text` (or
    https://, Werkzeug's "Running on ...", gunicorn's "Listening at: ..."), None before a
    server logged one."""
    match = _LISTENING.search(text)
    return int(match.group(2)) if match else None


def listening_scheme(text: str) -> str | None:
    """The scheme, http or https, from the same line as `listening_port`."""
    match = _LISTENING.search(text)
    return match.group(1) if match else None


def open_idle_connections(port: int, count: int) -> list[socket.socket]:
    """`count` keep-alive connections that each had one request answered, left idle."""
    idle: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.append(sock)
        for sock in idle:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    except BaseException:
        for sock in idle:
            sock.close()
        raise
    return idle


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def fetch(
    port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 10
) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def stop_process(process: subprocess.Popen[Any], sig: int, timeout: float) -> int:
    """Send `sig` unless `process` has ended; wait `timeout` seconds, then kill it. Its
    exit status."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def _limit_fds(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


class RunningServer:
    """`corral -b 127.0.0.1:0 OPTIONS APP` and what it logged; stop() sends a signal.
    With `app=None` no APP is given (a config file or the environment names it)."""

    def __init__(
        self,
        app: str | None = "tests.apps.behaviours:app",
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        start_timeout: float = 15.0,
        fd_limit: int | None = None,
        command: Sequence[str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        """`command` replaces the whole `corral` command line (the Flask command, say);
        `pass_fds` stay open in it (a listening socket handed over, say)."""
        if command is None:
            command = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", *options]
            if app is not None:
                command.append(app)
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=None if fd_limit is None else lambda: _limit_fds(fd_limit),
            pass_fds=pass_fds,
        )
        self.lines: list[str] = []
        self.port_found = threading.Event()
        self.port = 0
        self.scheme = "http"
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()
        if not self.port_found.wait(start_timeout):
            self.stop(signal.SIGKILL)
            raise RuntimeError("corral did not start:\n" + self.log)

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            port = listening_port(line)
            if port and not self.port:
                self.port = port
                self.scheme = listening_scheme(line) or "http"
                self.port_found.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_for_log(self, text: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return True
            time.sleep(0.02)
        return False

    def wait_for_log_count(self, text: str, count: int, timeout: float = 5.0) -> bool:
        """Wait until `text` has been logged `count` times or more."""
        return wait_until(lambda: self.log.count(text) >= count, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        code = stop_process(self.process, sig, timeout)
        self.reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
