"""Where corral's time per request goes: writes bench/profile.md.

    bench/.venv/bin/python bench/hot_path_profile.py

First, each app is served by a real `corral --threads 1` on CPU 0 under `wrk -t1 -c32`
on CPU 1, as in scenario A, with probes around the app and around every send
(`server_split.py`): what the app, the sends and the rest of the server cost there.

Then each app is served by one corral `Connection` over a socket pair in this process:
the client writes a request, `Connection.collect()` gathers it, `Connection.serve()`
parses it, calls the app and sends the response, the client reads it. No event loop or
thread hand-off is involved, so the figures are the per-request cost of corral's own
code, the app and the two system calls that move the bytes. A cProfile run then splits
that time by function. Functions compiled by mypyc (`corral.compiled`) are invisible to
cProfile, their time counted in their callers': run with CORRAL_PURE_PYTHON=1 for the
split of the pure-Python sources.
"""

from __future__ import annotations

import cProfile
import io
import json
import platform
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from corral import compiled  # noqa: E402
from corral.http.parser import HeadLimits  # noqa: E402
from corral.serving.connection import Connection, ServingState  # noqa: E402
from corral.serving.listeners import ListenerInfo  # noqa: E402
from corral.serving.transport import PlainTransport  # noqa: E402
from corral.wsgi.environ import base_environ  # noqa: E402

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n"
    b"Accept: */*\r\nConnection: keep-alive\r\n\r\n"
)
TIMED_REQUESTS = 30_000
PROFILED_REQUESTS = 20_000
SHOWN_FUNCTIONS = 18


def serve_loop(app: Any) -> Any:
    state = ServingState(
        app,
        HeadLimits(),
        ListenerInfo("127.0.0.1", "8000"),
        base_environ("127.0.0.1", "8000", "http", "", False, False),
        30.0,
        None,
    )
    server_side, client_side = socket.socketpair()
    # Non-blocking, as the dispatcher leaves it: CPython polls before each call on a
    # socket with a timeout.
    connection = Connection(PlainTransport(server_side, ("127.0.0.1", 50000), 30.0), state)

    def run(count: int) -> None:
        for _ in range(count):
            client_side.sendall(REQUEST)
            # As the dispatcher does: the request is gathered whole, then served.
            assert connection.collect()
            connection.serve()
            client_side.recv(1 << 16)

    return run


def socket_alone() -> float:
    """Microseconds per request/response exchange with no HTTP work at all."""
    server_side, client_side = socket.socketpair()
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"
    started = time.perf_counter()
    for _ in range(TIMED_REQUESTS):
        client_side.sendall(REQUEST)
        server_side.recv(1 << 16)
        server_side.sendall(response)
        client_side.recv(1 << 16)
    return (time.perf_counter() - started) / TIMED_REQUESTS * 1e6


def app_alone(app: Any) -> float:
    """Microseconds per call of the app with no server, for comparison."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SCRIPT_NAME": "",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    started = time.perf_counter()
    for _ in range(TIMED_REQUESTS):
        result = app(dict(environ), start_response)
        b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / TIMED_REQUESTS * 1e6


def in_server(name: str, seconds: int = 5) -> dict[str, float]:
    """Serve `name` with a real corral under wrk, as in scenario A; the probes' report."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        server = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, str(HERE / "server_split.py"), name,
             str(port), str(report)]
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url, timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", url]
            output = subprocess.run(wrk, capture_output=True, text=True, check=True).stdout
            server.send_signal(signal.SIGUSR2)
            server.wait(10)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        result: dict[str, float] = json.loads(report.read_text())
    for line in output.splitlines():
        if line.startswith("Requests/sec:"):
            result["requests_per_second"] = float(line.split()[1])
    return result


def profile(name: str, app: Any) -> list[str]:
    served = in_server(name)
    run = serve_loop(app)
    run(2000)
    started = time.perf_counter()
    run(TIMED_REQUESTS)
    per_request = (time.perf_counter() - started) / TIMED_REQUESTS * 1e6
    alone = app_alone(app)
    sockets = socket_alone()
    profiler = cProfile.Profile()
    profiler.enable()
    run(PROFILED_REQUESTS)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    lines = [
        f"## {name}",
        "",
        f"In a real server under wrk: {served['requests_per_second']:,.0f} requests/s, "
        f"{served['wall_us']:.1f} µs per request on the server's core:",
        "",
        f"- the app: {served['app_us']:.1f} µs (called alone, below: {alone:.1f} µs)",
        f"- sending responses: {served['send_us']:.1f} µs "
        f"({served['sends_per_request']:.2f} sends per request)",
        f"- the rest of the server (event loop, receive, parsing, environ, head): "
        f"{served['rest_us']:.1f} µs",
        "",
        "Over a socket pair, one connection, no event loop:",
        "",
        f"- served through corral: **{per_request:.1f} µs** per request "
        f"({1e6 / per_request:,.0f} requests/s on one core, client included)",
        f"- the app called alone: {alone:.1f} µs; the same bytes moved with no HTTP work: "
        f"{sockets:.1f} µs; so corral's own code: **{per_request - alone - sockets:.1f} µs**",
        "",
        "Own time by function under cProfile (which inflates small functions):",
        "",
        "| share | calls per request | function |",
        "|---|---|---|",
    ]
    for (filename, line, function), entry in rows[:SHOWN_FUNCTIONS]:
        calls, own_time = entry[1], entry[2]
        where = Path(filename).name if filename != "~" else ""
        label = f"{where}:{line} {function}" if where else function
        lines.append(f"| {own_time / total:5.1%} | {calls / PROFILED_REQUESTS:.1f} | `{label}` |")
    return [*lines, ""]


def main() -> None:
    import apps

    sections = []
    for name in ("hello", "flask_json"):
        sections += profile(name, getattr(apps, name))
    header = [
        "# Where corral's time per request goes",
        "",
        "Written by `bench/hot_path_profile.py`; edits are lost. First a real `corral",
        "--threads 1` under `wrk -t1 -c32` (server on CPU 0, wrk on CPU 1) with probes",
        "around the app and the sends; then one `Connection` serving a keep-alive client",
        "over a socket pair in one process: parsing, the environ, the app, the response and",
        "the two system calls, without the event loop, split by function under cProfile.",
        "",
        "A send to a client waiting in wrk wakes it; one at a time sends the responses of",
        "the connections ready together in one go after serving them (`Connection.send_last`),",
        "so the wake-ups overlap. The app runs slower inside the server than alone; the",
        "likely cause, not measurable on this virtual machine (no hardware counters), is",
        "the CPU's caches: the server's work between two calls evicts the app's, and the",
        "app's evicts the server's. The probe's own cost (two clock reads and a join, about",
        "1.5 µs) is counted in the app's figure.",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"Python {platform.python_version()}, {platform.machine()}, corral "
        f"{compiled.DESCRIPTION}",
        "",
    ]
    (HERE / "profile.md").write_text("\n".join(header + sections))
    print((HERE / "profile.md").read_text())


if __name__ == "__main__":
    main()
