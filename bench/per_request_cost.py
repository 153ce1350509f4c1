"""corral's own cost per request, in one process: instructions (callgrind) or microseconds.

    python bench/per_request_cost.py time [ROUNDS]
    python bench/per_request_cost.py count

One `Connection` serves a keep-alive client over a socket pair, as in
`hot_path_profile.py`: the client writes a request, `collect()` gathers it, `serve()`
parses it, calls the app and sends the response, the client reads it. The same loop is
run with the app called alone and with the bytes moved with no HTTP work; what remains
after both are taken away is corral's own cost.

`time` takes the least of ROUNDS interleaved rounds (the machine may be busy).
`count` runs each loop under `valgrind --tool=callgrind` twice, with two request counts,
and divides the difference in instructions by the difference in requests: start-up and
warm-up cancel out, and the count does not move with the machine's load.

Which corral runs, compiled by mypyc or pure Python (`corral.compiled`; set
CORRAL_PURE_PYTHON=1 for pure Python), is printed first.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corral.http.parser import HeadLimits  # noqa: E402
from corral.serving.connection import Connection, ServingState  # noqa: E402
from corral.serving.listeners import ListenerInfo  # noqa: E402
from corral.serving.transport import PlainTransport  # noqa: E402
from corral.wsgi.environ import base_environ  # noqa: E402

# wrk's request, and a browser's: seven fields, the long ones a browser sends.
WRK_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n"
    b"Accept: */*\r\nConnection: keep-alive\r\n\r\n"
)
BROWSER_REQUEST = (
    b"GET /articles/2024/index.html?page=2&sort=new HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    b"image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://www.example.com/articles/2024/\r\n"
    b"Cookie: session=3f9a1c7e5b2d4a6f8e0c; theme=dark; consent=1\r\n\r\n"
)
CASES = {
    "hello": ("hello", WRK_REQUEST),
    "flask_json": ("flask_json", WRK_REQUEST),
    "browser": ("hello", BROWSER_REQUEST),
}
WARM_UP = 2000


def served_loop(app: Any, request: bytes) -> Callable[[int], None]:
    state = ServingState(
        app,
        HeadLimits(),
        ListenerInfo("127.0.0.1", "8000"),
        base_environ("127.0.0.1", "8000", "http", "", False, False),
        30.0,
        None,
    )
    server_side, client_side = socket.socketpair()
    connection = Connection(PlainTransport(server_side, ("127.0.0.1", 50000), 30.0), state)

    def run(count: int) -> None:
        for _ in range(count):
            client_side.sendall(request)
            if not connection.collect():
                raise RuntimeError("the request was not gathered whole")
            connection.serve()
            client_side.recv(1 << 16)

    run(1)
    if connection.closed:
        raise RuntimeError("the connection closed after one request")
    return run


def app_loop(app: Any, request: bytes) -> Callable[[int], None]:
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

    def run(count: int) -> None:
        for _ in range(count):
            result = app(dict(environ), start_response)
            b"".join(result)
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return run


def socket_loop(app: Any, request: bytes) -> Callable[[int], None]:
    server_side, client_side = socket.socketpair()
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"

    def run(count: int) -> None:
        for _ in range(count):
            client_side.sendall(request)
            server_side.recv(1 << 16)
            server_side.sendall(response)
            client_side.recv(1 << 16)

    return run


LOOPS = {"served": served_loop, "app": app_loop, "socket": socket_loop}


def which_corral() -> str:
    from corral import compiled

    return f"{compiled.DESCRIPTION}, from {Path(compiled.__file__).parent}"


def make_loop(case: str, loop: str) -> Callable[[int], None]:
    import apps

    app_name, request = CASES[case]
    return LOOPS[loop](getattr(apps, app_name), request)


def timed(rounds: int, count: int) -> None:
    loops = {(case, loop): make_loop(case, loop) for case in CASES for loop in LOOPS}
    for run in loops.values():
        run(WARM_UP)
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(rounds):
        for key, run in loops.items():
            started = time.perf_counter()
            run(count)
            best[key] = min(best[key], (time.perf_counter() - started) / count * 1e6)
    print(f"µs per request, least of {rounds} rounds of {count}:")
    for case in CASES:
        served, app, moved = (best[(case, loop)] for loop in LOOPS)
        print(
            f"  {case:11s} served {served:6.2f}  app {app:6.2f}  socket {moved:5.2f}"
            f"  corral's own {served - app - moved:6.2f}"
        )


def instructions(case: str, loop: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
             sys.executable, __file__, "run", case, loop, str(count)],
            check=True, capture_output=True,
            # The same hash seed every run: dict and set layouts, and so the count, repeat.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        match = re.search(r"^summary: (\d+)", output.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError("callgrind wrote no summary")
        return int(match.group(1))


def counted(low: int, high: int) -> None:
    print(f"instructions per request (callgrind, {high} requests less {low}):")
    for case in CASES:
        per_loop = {
            loop: (instructions(case, loop, high) - instructions(case, loop, low)) / (high - low)
            for loop in LOOPS
        }
        served, app, moved = per_loop["served"], per_loop["app"], per_loop["socket"]
        print(
            f"  {case:11s} served {served:9,.0f}  app {app:9,.0f}  socket {moved:7,.0f}"
            f"  corral's own {served - app - moved:9,.0f}",
            flush=True,
        )


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "time"
    if mode == "run":
        case, loop, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        run = make_loop(case, loop)
        run(WARM_UP)
        run(count)
        return
    print("corral:", which_corral())
    if mode == "time":
        timed(int(sys.argv[2]) if len(sys.argv) > 2 else 15, 5000)
    elif mode == "count":
        counted(500, 2500)
    else:
        raise SystemExit(f"unknown mode {mode!r}: time or count")


if __name__ == "__main__":
    main()
