"""Hostile clients for bench/robustness.py, and the normal client measured beside them.

Every attack is bounded: it is started, runs until `stop()`, and `stop()` ends every
process and closes every socket it opened. slowhttptest runs as a child in its own
session (stopped with its whole group); the idle and pipelining attacks are sockets
held by a thread of this process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import LOOPBACK, start_pinned, stop_process_group

# A fresh connection per normal request: what a new visitor costs the server.
NORMAL_REQUEST = b"GET / HTTP/1.1\r\nHost: robustness\r\nConnection: close\r\n\r\n"
# What the pipelining non-readers send, again and again.
PIPELINED_REQUEST = b"GET / HTTP/1.1\r\nHost: robustness\r\n\r\n"


@dataclass(frozen=True)
class Attack:
    key: str
    title: str
    connections: int
    explanation: str
    slowhttptest: tuple[str, ...] = ()
    """slowhttptest's mode and options (without -c, -l and -u); empty for our own."""
    path: str = "/"
    ramp_connections_per_second: int = 200


ATTACKS: tuple[Attack, ...] = (
    Attack(
        "slow-headers-1000",
        "slow headers ×1,000",
        1000,
        "`slowhttptest -H`: 1,000 connections each send a request head one field "
        "every 10 s and never end it (Slowloris).",
        ("-H", "-i", "10", "-x", "24"),
    ),
    Attack(
        "slow-body-8",
        "slow body ×8",
        8,
        "`slowhttptest -B -c 8 -i 10 -s 8192`: 8 POSTs to a route that reads its body "
        "announce 8,192 bytes and send a few every 10 s (R-U-Dead-Yet).",
        ("-B", "-i", "10", "-s", "8192", "-x", "24"),
        path="/upload",
    ),
    Attack(
        "slow-body-1000",
        "slow body ×1,000",
        1000,
        "As slow body ×8, with 1,000 connections.",
        ("-B", "-i", "10", "-s", "8192", "-x", "24"),
        path="/upload",
    ),
    Attack(
        "slow-read-8",
        "slow read ×8",
        8,
        "`slowhttptest -X -c 8`: 8 connections ask for a 1 MiB response, three times "
        "pipelined, advertise a receive window of 1 to 512 bytes and read 5 bytes a "
        "second.",
        ("-X", "-k", "3", "-n", "1", "-w", "1", "-y", "512", "-z", "5"),
        path="/download",
    ),
    Attack(
        "range-100",
        "range ×100",
        100,
        "`slowhttptest -R -c 100`: 100 requests with a Range field of about 2,000 "
        "overlapping ranges (the Apache killer); the app answers without ranges.",
        ("-R", "-a", "5", "-b", "2000"),
    ),
    Attack(
        "pipelining-non-readers-8",
        "pipelining non-readers ×8",
        8,
        "8 connections pipeline `GET /` as fast as the server takes them and never read "
        "a response.",
    ),
    Attack(
        "idle-200",
        "200 silent connections",
        200,
        "200 connections are opened and send nothing.",
    ),
)


class SlowHttpTest:
    """One slowhttptest run against `url`, its output in `log_path`."""

    def __init__(self, attack: Attack, url: str, seconds: float, log_path: Path, cwd: Path) -> None:
        rate = min(attack.connections, attack.ramp_connections_per_second)
        argv = [
            "slowhttptest",
            *attack.slowhttptest,
            "-c", str(attack.connections),
            "-r", str(rate),
            "-l", str(max(1, round(seconds))),
            # Its own probe would add a client; the normal client is ours.
            "-p", "3",
            "-u", url,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] = start_pinned(
            argv, all_cpus(), cwd, dict(os.environ), log_path
        )

    def stop(self) -> None:
        stop_process_group(self.process, grace_seconds=3.0)


class IdleConnections:
    """`count` connections that send nothing, held until `stop()`."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets: list[socket.socket] = []
        self.failed = 0
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2.0)
            try:
                sock.connect((LOOPBACK, port))
            except OSError:
                sock.close()
                self.failed += 1
                continue
            self.sockets.append(sock)

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


class PipeliningNonReaders:
    """`count` connections that keep sending pipelined requests and never read.

    A thread writes whatever each socket's send buffer takes, every 20 ms, until
    `stop()`; the server's replies pile up unread in the receive buffers.
    """

    def __init__(self, port: int, count: int) -> None:
        self.sockets: list[socket.socket] = []
        self.bytes_sent = 0
        self.stopping = threading.Event()
        for _ in range(count):
            sock = socket.create_connection((LOOPBACK, port), timeout=2.0)
            sock.setblocking(False)
            self.sockets.append(sock)
        self.thread = threading.Thread(target=self._send, name="pipelining", daemon=True)
        self.thread.start()

    def _send(self) -> None:
        burst = PIPELINED_REQUEST * 256
        while not self.stopping.wait(0.02):
            for sock in self.sockets:
                try:
                    while True:
                        self.bytes_sent += sock.send(burst)
                except OSError:
                    # The send buffer is full (the server stopped reading), or the server
                    # closed this connection: the others go on.
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5.0)
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


@dataclass
class NormalOutcome:
    ok: bool
    seconds: float
    error: str = ""


@dataclass
class NormalClient:
    """`GET /` every `interval` seconds on a fresh connection, each with its own deadline.

    Each request runs in its own thread, so one that hangs does not delay the next:
    the success rate is the share of moments at which a visitor would have been served.
    """

    port: int
    interval: float = 0.2
    timeout: float = 5.0
    outcomes: list[NormalOutcome] = field(default_factory=list)

    def run(self, seconds: float) -> list[NormalOutcome]:
        threads: list[threading.Thread] = []
        start = time.monotonic()
        count = max(1, round(seconds / self.interval))
        pace = threading.Event()  # never set: its timed wait paces the requests
        for index in range(count):
            delay = start + index * self.interval - time.monotonic()
            if delay > 0:
                pace.wait(delay)
            thread = threading.Thread(target=self._request, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(timeout=self.timeout + 1.0)
        return self.outcomes

    def _request(self) -> None:
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            response = fetch(self.port, NORMAL_REQUEST, deadline)
        except OSError as error:
            self.outcomes.append(NormalOutcome(False, time.monotonic() - started, str(error)))
            return
        ok = response.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 "))
        status = response.split(b"\r\n", 1)[0].decode("latin-1") or "closed without an answer"
        self.outcomes.append(NormalOutcome(ok, time.monotonic() - started, "" if ok else status))


def fetch(port: int, request: bytes, deadline: float) -> bytes:
    """Send `request` on a new connection; everything received until the server closes.

    Raises `TimeoutError` when `deadline` (a monotonic time) passes first.
    """
    remaining = deadline - time.monotonic()
    with socket.create_connection((LOOPBACK, port), timeout=max(0.01, remaining)) as sock:
        sock.sendall(request)
        received = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete answer before the deadline")
            sock.settimeout(remaining)
            piece = sock.recv(65536)
            if not piece:
                return bytes(received)
            received += piece


def all_cpus() -> str:
    """Every CPU this process may run on, as a taskset list: the servers are not pinned."""
    return ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
