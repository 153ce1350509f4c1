"""Serves one app from apps.py with corral, timing what the server does around it.

    python bench/server_split.py APP PORT REPORT   (started by hot_path_profile.py)

Runs `corral --threads 1` on 127.0.0.1:PORT with two probes: one around the app (each
call, its body joined), one around every send of response bytes to a client (pure Python
only: compiled, the sends are counted in the rest, and `send_us` is null). On SIGRTMIN+1 it
writes to REPORT, as JSON, the requests served and the microseconds per request spent in
the app, in sends, and in the rest of the server, then exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import apps  # noqa: E402

from corral import cli, compiled  # noqa: E402
from corral.serving import connection  # noqa: E402

clock = time.perf_counter_ns
# The signal that asks for the report (hot_path_profile.py sends it).
REPORT_SIGNAL = signal.SIGRTMIN + 1
totals = {"requests": 0, "app_ns": 0, "send_ns": 0, "sends": 0, "first": 0, "last": 0}


def timed_app(inner: Any) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started = clock()
        if not totals["first"]:
            totals["first"] = started
        body = [b"".join(inner(environ, start_response))]
        ended = clock()
        totals["app_ns"] += ended - started
        totals["requests"] += 1
        totals["last"] = ended
        return body

    return app


def timed(method: Any) -> Any:
    def send(self: Any, data: Any = None) -> None:
        started = clock()
        if data is None:
            method(self)
        else:
            method(self, data)
        totals["send_ns"] += clock() - started
        totals["sends"] += 1

    return send


def report(path: str) -> None:
    requests = max(totals["requests"], 1)
    wall = (totals["last"] - totals["first"]) / 1000 / requests
    app = totals["app_ns"] / 1000 / requests
    send = totals["send_ns"] / 1000 / requests
    result = {
        "requests": totals["requests"],
        "sends_per_request": totals["sends"] / requests,
        "wall_us": wall,
        "app_us": app,
        "send_us": send if totals["sends"] else None,
        "rest_us": wall - app - send,
    }
    Path(path).write_text(json.dumps(result))
    os._exit(0)


def main() -> None:
    name, port, report_path = sys.argv[1:4]
    apps.served = timed_app(getattr(apps, name))  # type: ignore[attr-defined]
    if not compiled.COMPILED:
        # A compiled Connection's methods can be neither replaced nor seen replaced by
        # its compiled callers: the sends are then counted in the rest.
        connection.Connection.send = timed(connection.Connection.send)  # type: ignore[method-assign]
        connection.Connection.flush = timed(connection.Connection.flush)  # type: ignore[method-assign]
    # USR1 and USR2 are corral's own (reopen, upgrade); a real-time signal is not.
    signal.signal(REPORT_SIGNAL, lambda *_: report(report_path))
    cli.main(["--threads", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "apps:served"])


if __name__ == "__main__":
    main()
