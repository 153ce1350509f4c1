"""A real nginx on a loopback port, started with a recipe of docs/deploy/nginx/, and the
load that tests send through it.

The recipe is included as it is in the docs, inside an http block of a main
configuration written here (its own prefix, pid file, error log and temporary paths in a
test's directory, `daemon off`, one worker process). Only its addresses change: each
placeholder the test replaces must be in the recipe, so that a recipe and its test
cannot drift apart unnoticed.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.requirements import require
from tests.server import ROOT, stop_process, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RECIPES = ROOT / "docs" / "deploy" / "nginx"
# The recipes' own addresses, which tests replace with theirs.
FRONT = "127.0.0.1:8080"
FIRST_UPSTREAM = "127.0.0.1:8001"
SECOND_UPSTREAM = "127.0.0.1:8002"
UNIX_UPSTREAM = "/run/corral/corral.sock"
# Error log lines that mean a request sent upstream failed: the connection reset or
# closed under it, or no answer in time. A connection that fails "while connecting to
# upstream" (refused, or reset before nginx wrote to it) had nothing sent, and nginx
# tries the next server: those are counted apart.
FAILED_UPSTREAM = ("reset", "prematurely closed", "upstream timed out", "no live upstreams")
NOT_SENT = "while connecting to upstream"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Nginx:
    port: int
    error_log: Path

    def errors(self) -> list[str]:
        return self.error_log.read_text(errors="replace").splitlines()

    def failed_upstream_lines(self) -> list[str]:
        """Lines of requests that failed after nginx sent them upstream."""
        return [
            line
            for line in self.errors()
            if any(word in line for word in FAILED_UPSTREAM) and NOT_SENT not in line
        ]

    def not_sent_lines(self) -> list[str]:
        """Connections that failed before nginx sent a request (retried elsewhere)."""
        return [line for line in self.errors() if NOT_SENT in line]


@contextlib.contextmanager
def nginx(tmp_path: Path, recipe: str, addresses: dict[str, str]) -> Iterator[Nginx]:
    """nginx serving the recipe `recipe` with `addresses` replaced (`FRONT` with the
    port it listens on, chosen here); stopped on exit."""
    require(os.access(NGINX, os.X_OK), "nginx is not installed (apt-get install nginx)")
    text = (RECIPES / recipe).read_text()
    port = free_port()
    for old, new in {FRONT: f"127.0.0.1:{port}", **addresses}.items():
        assert old in text, f"{recipe} no longer has {old}, which its test replaces"
        text = text.replace(old, new)
    prefix = tmp_path / f"nginx-{port}"
    prefix.mkdir()
    site = prefix / recipe
    site.write_text(text)
    error_log = prefix / "error.log"
    temporary = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as nobody, who cannot reach corral's unix
    # socket in the test's private directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\nerror_log {error_log} warn;\n"
        "events {\n    worker_connections 1024;\n}\n"
        f"http {{\n    access_log off;\n{temporary}\n    include {site};\n}}\n"
    )
    command = [NGINX, "-p", str(prefix), "-e", str(error_log), "-c", str(main)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def listening() -> bool:
            assert process.poll() is None, error_log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        assert wait_until(listening, 10), error_log.read_text()
        yield Nginx(port, error_log)
    finally:
        stop_process(process, signal.SIGTERM, 10)


@dataclass
class Tally:
    """What clients saw: responses by status, failed requests, wrong answers."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.failures)


def send_load(
    port: int,
    seconds: float,
    method: str,
    clients: int = 8,
    spacing: Callable[[int], float] | None = None,
    tally: Tally | None = None,
) -> Tally:
    """`clients` threads, each on a keep-alive connection of its own to `port`, sending
    requests for `seconds`: GET /slow?ms=5, or POST /echo with a body of its own that
    must come back; `spacing(n)` seconds between a thread's requests, if given. Counted
    in `tally` if given (another thread may watch it fill), else in a new one."""
    tally = Tally() if tally is None else tally
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            body = f"client {number} request {sent}".encode()
            try:
                if method == "POST":
                    connection.request("POST", "/echo", body=body)
                else:
                    connection.request("GET", "/slow?ms=5")
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                with tally.lock:
                    tally.failures.append(f"{method} {sent} of client {number}: {error!r}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            with tally.lock:
                tally.statuses[response.status] += 1
                if response.status == 200 and method == "POST" and data != body:
                    tally.wrong.append(f"{body!r} came back as {data[:100]!r}")
            if spacing is not None:
                time.sleep(max(0.0, min(spacing(sent), deadline - time.monotonic())))
        connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return tally
