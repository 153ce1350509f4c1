"""How much 200 clients in the middle of TLS handshakes delay a request on a TLS
connection that is already established.

    .venv/bin/python bench/tls_handshake_flood.py [MODEL ...]

(the project's own venv: it needs trustme from the test extra). For each concurrency
model (default: thread-pool, one-at-a-time, gevent) it starts corral with a throw-away
certificate, opens one keep-alive TLS connection and times 300 requests on it, one after
another: alone, then while 200 other connections have stalled mid-handshake (half sent
half a ClientHello, half nothing), then while 200 clients (threads of another process)
do whole handshakes as fast as they can. The delay reported is the rise in median and
99th percentile over the request alone; issue #13's target is 50 ms at most with the
stalled handshakes.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tls import client_hello, write_certificate  # noqa: E402

REQUESTS = 300
FLOOD = 200
MODELS = {
    "thread-pool": ["--threads", "4"],
    "one-at-a-time": ["--threads", "1"],
    "gevent": ["-k", "gevent"],
}
_LISTENING = re.compile(r"Listening at https://127\.0\.0\.1:(\d+)")


def start(options: list[str], certificate: Path, key: Path) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", "--keep-alive", "60"]
    command += ["--certfile", str(certificate), "--keyfile", str(key), *options]
    command.append("tests.apps.behaviours:app")
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = _LISTENING.search(line)
        if match:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, int(match.group(1))
    raise RuntimeError("corral did not start")


def time_requests(connection: http.client.HTTPSConnection) -> list[float]:
    durations = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        durations.append(time.perf_counter() - started)
        assert response.status == 200
    return durations


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stall(port: int, pid: int) -> list[socket.socket]:
    before = descriptors(pid)
    hello = client_hello()
    stalled = []
    for number in range(FLOOD):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if number % 2:
            sock.sendall(hello[: len(hello) // 2])
        stalled.append(sock)
    deadline = time.monotonic() + 30
    while descriptors(pid) < before + FLOOD:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not accept the stalled connections")
        time.sleep(0.01)
    return stalled


def handshake_storm(port: int, ca: str) -> None:
    """In a process of its own (so that its threads do not take the measuring client's
    turn at the interpreter lock): FLOOD threads handshaking again and again until
    standard input closes, then the number of handshakes done on standard output."""
    context = ssl.create_default_context(cafile=ca)
    stop = threading.Event()
    counts = [0] * FLOOD

    def client(index: int) -> None:
        while not stop.is_set():
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    counts[index] += 1
            except OSError:
                continue

    threads = [threading.Thread(target=client, args=(index,)) for index in range(FLOOD)]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join(30)
    print(sum(counts), flush=True)


def summary(durations: list[float]) -> tuple[float, float, float]:
    ordered = sorted(durations)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def measure(name: str, options: list[str], directory: Path) -> None:
    files = write_certificate(trustme.CA(), directory)
    process, port = start(options, files.cert, files.key)
    context = ssl.create_default_context(cafile=str(files.ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        time_requests(connection)  # warm up
        alone = summary(time_requests(connection))
        stalled = stall(port, process.pid)
        try:
            with_stalled = summary(time_requests(connection))
        finally:
            for sock in stalled:
                sock.close()
        storm = subprocess.Popen(
            [sys.executable, __file__, "--storm", str(port), str(files.ca)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert storm.stdin is not None and storm.stdout is not None
        assert storm.stdout.readline() == "started\n"
        started = time.monotonic()
        try:
            with_storm = summary(time_requests(connection))
        finally:
            storm.stdin.close()
            handshakes = int(storm.stdout.readline() or 0)
            storm.wait(60)
        rate = handshakes / (time.monotonic() - started)
    finally:
        connection.close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    print(f"{name}: {REQUESTS} requests on one established TLS connection, ms")
    for label, (median, p99, worst) in (
        ("alone", alone),
        (f"{FLOOD} stalled handshakes", with_stalled),
        (f"{FLOOD} clients handshaking (~{rate:.0f}/s)", with_storm),
    ):
        delay = f"  delay: median +{median - alone[0]:.2f}, p99 +{p99 - alone[1]:.2f}"
        print(f"  {label:38} median {median:6.2f}  p99 {p99:6.2f}  max {worst:6.2f}{delay}")


def main() -> None:
    if sys.argv[1:2] == ["--storm"]:
        handshake_storm(int(sys.argv[2]), sys.argv[3])
        return
    names = sys.argv[1:] or list(MODELS)
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            measure(name, MODELS[name], Path(directory) / name)


if __name__ == "__main__":
    main()
