"""Where corral's time per request goes: writes bench/profile.md.

    bench/.venv/bin/python bench/hot_path_profile.py

First, each app is served by a real `corral --threads 1` on CPU 0 under `wrk -t1 -c32`
on CPU 1, as in scenario A, with probes around the app and around every send
(`server_split.py`; the sends only in pure Python, as compiled ones cannot be probed):
what the app, the sends and the rest of the server cost there. Then corral and granian
are served in turn under the same load, and CPU 0's user and system time and CPU 1's
wake-ups (`/proc/stat`, `/proc/interrupts`) are divided by the requests served: where
granian's lead lies.

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

import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import per_request_cost  # noqa: E402
from harness import wrk  # noqa: E402
from harness.cpu import cpu_times, tick_microseconds  # noqa: E402
from harness.processes import (  # noqa: E402
    LOOPBACK,
    ServerProcess,
    find_free_port,
    start_pinned,
    stop_process_group,
    wait_until_answering,
)
from harness.wrk import LoadSpec  # noqa: E402

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


@contextlib.contextmanager
def serving(argv: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start a server on CPU 0 with `{port}` in `argv` replaced by a free port, as the
    harness starts the bench's servers; yield it and its URL once it answers; stop its
    whole process group on leaving."""
    port = find_free_port()
    with tempfile.TemporaryDirectory() as scratch:
        argv = [part.replace("{port}", str(port)) for part in argv]
        process = start_pinned(argv, "0", HERE, dict(os.environ), Path(scratch) / "server.log")
        try:
            failure = wait_until_answering(ServerProcess(process, port, Path(scratch)), 10)
            if failure is not None:
                raise RuntimeError(f"{argv[0]} {failure}")
            yield process, f"http://{LOOPBACK}:{port}"
        finally:
            stop_process_group(process)


def run_wrk(url: str, seconds: float) -> float:
    """Requests per second of wrk with 32 connections on CPU 1, as in scenario A."""
    with tempfile.TemporaryDirectory() as scratch:
        (result,) = wrk.run_wrk(url, (LoadSpec(32, seconds),), Path(scratch) / "wrk.log")
    if result.failure is not None:
        raise RuntimeError(f"wrk against {url}: {result.failure}")
    return result.requests_per_second


def in_server(name: str, seconds: int = 5) -> dict[str, float]:
    """Serve `name` with a real corral under wrk, as in scenario A; the probes' report."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        argv = [sys.executable, str(HERE / "server_split.py"), name, "{port}", str(report)]
        with serving(argv) as (server, url):
            rate = run_wrk(url, seconds)
            server.send_signal(signal.SIGRTMIN + 1)
            server.wait(10)
        result: dict[str, float] = json.loads(report.read_text())
    result["requests_per_second"] = rate
    return result


def wake_ups(cpu: int) -> int:
    """Interrupts CPU `cpu` has taken to be woken by another CPU: function-call and
    rescheduling interrupts (CAL, RES) from /proc/interrupts. A send to a client asleep
    in epoll_wait on CPU 1 wakes it with one."""
    count = 0
    with open("/proc/interrupts") as interrupts:
        header = interrupts.readline().split()
        column = header.index(f"CPU{cpu}") + 1
        for line in interrupts:
            fields = line.split()
            if fields and fields[0] in ("CAL:", "RES:"):
                count += int(fields[column])
    return count


def cpu_split(argv: list[str], seconds: float) -> dict[str, float]:
    """Serve under wrk, as in scenario A; per request: the server's CPU's user and system
    microseconds, and the times the client's CPU was woken."""
    with serving(argv) as (_server, url):
        run_wrk(url, 1)
        before = cpu_times(0)
        woken_before = wake_ups(1)
        rate = run_wrk(url, seconds)
        after = cpu_times(0)
        woken_after = wake_ups(1)
    requests = rate * seconds
    tick_us = tick_microseconds()
    return {
        "requests_per_second": rate,
        "user_us": (after.user - before.user) * tick_us / requests,
        "system_us": (after.system - before.system) * tick_us / requests,
        "wake_ups": (woken_after - woken_before) / requests,
    }


def beside_granian(name: str, seconds: int = 5) -> list[str]:
    """corral `--threads 1` and granian, one worker, under the same load: where the time
    on the server's CPU goes, and how often each wakes the client."""
    granian = Path(sys.executable).parent / "granian"
    servers = {
        "corral --threads 1": [sys.executable, "-m", "corral", "-b", "127.0.0.1:{port}",
                               "--threads", "1", f"apps:{name}"],
        "granian, 1 worker": [str(granian), "--interface", "wsgi", "--host", "127.0.0.1",
                              "--port", "{port}", "--workers", "1", "--log-level", "warning",
                              f"apps:{name}"],
    }  # fmt: skip
    if not granian.exists():
        return [f"granian is not installed beside {sys.executable}: no comparison.", ""]
    lines = [
        "Beside granian, under the same wrk, from CPU 0's user and system time "
        "(`/proc/stat`) and CPU 1's wake-ups (`/proc/interrupts`), per request:",
        "",
        "| server | requests/s | user µs | system µs | client wake-ups |",
        "|---|---|---|---|---|",
    ]
    for label, argv in servers.items():
        split = cpu_split(argv, seconds)
        lines.append(
            f"| {label} | {split['requests_per_second']:,.0f} | {split['user_us']:.1f} | "
            f"{split['system_us']:.1f} | {split['wake_ups']:.2f} |"
        )
    return [*lines, ""]


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
        *(
            [
                f"- sending responses: {served['send_us']:.1f} µs "
                f"({served['sends_per_request']:.2f} sends per request)",
                f"- the rest of the server (event loop, receive, parsing, environ, head): "
                f"{served['rest_us']:.1f} µs",
            ]
            if served["send_us"] is not None
            else [
                f"- the rest of the server (event loop, receive, parsing, environ, head, "
                f"sends): {served['rest_us']:.1f} µs",
            ]
        ),
        "",
        *beside_granian(name),
        "Over a socket pair, one connection, no event loop:",
        "",
        f"- served through corral: **{per_request:.1f} µs** per request "
        f"({1e6 / per_request:,.0f} requests/s on one core, client included)",
        f"- the app called alone: {alone:.1f} µs; the same bytes moved with no HTTP work: "
        f"{sockets:.1f} µs; so corral's own code: **{per_request - alone - sockets:.1f} µs**",
        "",
    ]
    if compiled.COMPILED:
        return [*lines, *instructions_by_step(name), ""]
    lines += [
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


# The steps of one request through the compiled code, as (depth, label, the function
# mypyc compiled it to): each step's instructions include those of the steps below it.
STEPS = [
    (0, "gathering the request: receive, parse (`Connection.collect`)",
     "CPyDef_connection___Connection___collect"),
    (1, "the head (`HeadScanner.parse`)", "CPyDef_parser___HeadScanner___parse"),
    (2, "the request line", "CPyDef_parser____parse_request_line"),
    (2, "no bare CR or LF", "CPyDef_parser____count_line_ends"),
    (2, "the field lines checked and split", "CPyDef_parser____split_fields"),
    (2, "the fields read (Host, framing)", "CPyDef_parser____parse_fields"),
    (0, "serving it (`Connection.serve`)", "CPyDef_connection___Connection___serve"),
    (1, "the environ", "CPyDef_environ___build_environ"),
    (1, "the app and its response, the app's own instructions included (`run_application`)",
     "CPyDef_response___run_application"),
    (2, "start_response", "CPyDef_response___Response___start_response"),
    (2, "the head framed and encoded", "CPyDef_response___Response____head"),
    (2, "the response sent (`Connection.send_last`)",
     "CPyDef_connection___Connection___send_last"),
]  # fmt: skip
CALLGRIND_REQUESTS = 5000


def instructions_by_step(name: str) -> list[str]:
    """The compiled steps' instructions per request under callgrind, for the socket-pair
    loop of bench/per_request_cost.py (cProfile does not see into compiled code)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        return ["valgrind is not installed: no split of the compiled code.", ""]
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
             sys.executable, str(HERE / "per_request_cost.py"), "run", name, "served",
             str(CALLGRIND_REQUESTS)],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(output)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    found: dict[str, int] = {}
    for match in re.finditer(r"^\s*([\d,]+) .*:(CPyDef_\w+) ", annotated, re.MULTILINE):
        function, count = match.group(2), int(match.group(1).replace(",", ""))
        found[function] = max(found.get(function, 0), count)
    # per_request_cost.py serves WARM_UP requests before the counted ones.
    requests = CALLGRIND_REQUESTS + per_request_cost.WARM_UP
    lines = [
        "Instructions per request in the compiled code by step, under callgrind "
        "(the same socket-pair loop; start-up is not in these functions):",
        "",
    ]
    for depth, label, function in STEPS:
        count = found.get(function)
        shown = f"{count / requests:,.0f}" if count is not None else "not found"
        lines.append(f"{'  ' * depth}- {label}: {shown}")
    return lines


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
        "A send to a client asleep in wrk wakes it: on loopback the sender's CPU runs the",
        "receiving side of TCP and the wake-up, an interrupt to the client's CPU, inside the",
        "send. A response leaves as soon as its app call ends (it is never held across",
        "another connection's request), so when the app is slower than wrk, each response",
        "wakes wrk once; granian hands the responses to its I/O thread, which sends those",
        "finished meanwhile together, and wakes wrk far less often. The table beside",
        "granian counts those wake-ups. The app runs slower inside the server than alone;",
        "the likely cause, not measurable on this virtual machine (no hardware counters),",
        "is the CPU's caches: the network stack's and the server's work between two calls",
        "evicts the app's. The probe's own cost (two clock reads and a join, about 1.5 µs)",
        "is counted in the app's figure. Functions compiled by mypyc are invisible to",
        "cProfile; their time is counted in their callers'.",
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
