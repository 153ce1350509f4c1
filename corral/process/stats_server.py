"""--stats ADDRESS: a listener of its own, outside the app's concurrency, that answers with
what the slot table holds: JSON at `/`, Prometheus's text format at `/metrics`.

It runs on a thread of its own in the master (which reads the table and nothing else, and
so answers while every worker is busy), or in a single process beside the serving loop.
The standard library's `http.server` speaks HTTP here; corral's own protocol code stays
out of the master. Each answer is a fresh read of the table; nothing is cached.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import socket
from typing import Any

from corral.process.slot_table import SlotTable
from corral.process.slot_writer import start_real_thread
from corral.process.stats_report import METRICS_MISSING, metrics_exposition, stats_document
from corral.serving.listeners import BindError, describe, listen

error_log = logging.getLogger("corral.error")

# A master started by USR2 finds its predecessor's stats listener here.
STATS_FD_VARIABLE = "CORRAL_STATS_FD"
_BACKLOG = 64
# Seconds a stats client has to send its request and take the answer.
_CLIENT_TIMEOUT = 5.0


def open_stats_listener(address: str) -> socket.socket:
    """The listening socket for --stats: handed over by the previous master (USR2), or
    bound now. Raises `BindError` naming the address."""
    handed_over = os.environ.pop(STATS_FD_VARIABLE, "")
    if handed_over.isdigit():
        fd = int(handed_over)
        os.set_inheritable(fd, False)
        return socket.socket(fileno=fd)
    if address.startswith(("unix:", "fd://")):
        raise BindError(f"--stats {address}: give HOST:PORT or a port")
    return listen(address, _BACKLOG)


class StatsServer:
    """Serves the stats of `table` on `sock` from a daemon thread, once `start` is called."""

    def __init__(self, sock: socket.socket, table: SlotTable) -> None:
        self.table = table
        self.url = describe(sock)
        # The thread makes its own socket object from the descriptor, so that under
        # gevent it belongs to that thread's own loop.
        self.fd = sock.detach()

    def start(self) -> None:
        """Serve from a daemon thread, from now on. Whatever that thread imports is
        imported here first, on the caller's thread: a master forks workers while the
        stats thread runs, and a fork made while another thread imports a module leaves
        the child that module's import lock held by no thread, so the worker's own import
        of it waits for ever."""
        try:
            import prometheus_client
            import prometheus_client.core  # noqa: F401
        except ImportError:
            error_log.info(
                "Stats: /metrics needs prometheus_client (pip install 'corral[metrics]')"
            )
        # A real thread under gevent too, so that a request that never yields does not
        # hold the stats back.
        start_real_thread(self._serve, "corral-stats")

    def _serve(self) -> None:
        server = _StatsHTTPServer(socket.socket(fileno=self.fd), self.table)
        server.serve_forever()

    def close_in_child(self) -> None:
        """In a forked worker: let go of the listener, which only the master serves."""
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def handover_environment(self) -> dict[str, str]:
        """Make the listener survive exec and say where it is, for the next master."""
        os.set_inheritable(self.fd, True)
        return {STATS_FD_VARIABLE: str(self.fd)}


class _StatsHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, table: SlotTable) -> None:
        # The socket is bound and listening already.
        super().__init__(sock.getsockname()[:2], _StatsHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.table = table


class _StatsHandler(http.server.BaseHTTPRequestHandler):
    server: _StatsHTTPServer
    timeout = _CLIENT_TIMEOUT
    server_version = "corral-stats"

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/":
            snapshot = self.server.table.snapshot()
            body = json.dumps(stats_document(snapshot), ensure_ascii=False).encode() + b"\n"
            self._answer(200, "application/json", body)
        elif path == "/metrics":
            try:
                body, content_type = metrics_exposition(self.server.table.snapshot())
            except ImportError:
                self._answer(501, "text/plain; charset=utf-8", METRICS_MISSING)
                return
            self._answer(200, content_type, body)
        else:
            self._answer(404, "text/plain; charset=utf-8", b"stats are at / and /metrics\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would drown the error log.
        error_log.debug("stats: %s %s", self.address_string(), format % args)
