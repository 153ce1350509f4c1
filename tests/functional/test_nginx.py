"""A real nginx in front of corral, started with the recipes of docs/deploy/nginx/: a
rolling restart under load, one server stopped and started again while the other is
reloaded with HUP, fails no request, GET or POST (which nginx never retries once sent),
and nginx logs no upstream connection closed or reset under a request; and the
unix-socket recipe serves and drains."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx import (
    FIRST_UPSTREAM,
    SECOND_UPSTREAM,
    UNIX_UPSTREAM,
    Tally,
    nginx,
    send_load,
)
from tests.server import ROOT, RunningServer, wait_until

APP = "tests.apps.behaviours:app"
# Longer than the recipe's upstream keepalive_timeout (60 s), as docs/deploy/nginx.md says.
SERVING = [
    "-w",
    "2",
    "--threads",
    "4",
    "--keep-alive",
    "75",
    "--health-path",
    "/healthz",
    "--drain-delay",
    "1",
    "--graceful-timeout",
    "10",
]
LOAD_SECONDS = 20.0


def start_corral(port: int) -> RunningServer:
    command = [sys.executable, "-m", "corral", "-b", f"127.0.0.1:{port}", *SERVING, APP]
    server = RunningServer(command=command)
    assert wait_until(lambda: server.log.count("Booted worker") >= 2, 15), server.log
    return server


class Restarts:
    """Until the load ends: stop one server with TERM and start it again on its port,
    then reload the other with HUP, and again."""

    def __init__(self, servers: list[RunningServer], seconds: float, load: Tally) -> None:
        # Changed in place: whoever made the list stops the servers it ends with.
        self.servers = servers
        self.load = load
        self.port = servers[0].port
        self.deadline = time.monotonic() + seconds
        self.done: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            # The load under way first: answers through both servers.
            assert wait_until(self._load_under_way, 15), "no load through nginx"
            while time.monotonic() < self.deadline - 7:
                self._restart_first()
                self._reload_second()
        except BaseException as error:
            self.error = error

    def _load_under_way(self) -> bool:
        with self.load.lock:
            return self.load.total >= 100

    def _restart_first(self) -> None:
        first = self.servers[0]
        first.process.send_signal(signal.SIGTERM)
        code = first.process.wait(30)
        assert code == 0, first.log
        first.stop()
        self.servers[0] = start_corral(self.port)
        self.done.append("restarted")

    def _reload_second(self) -> None:
        second = self.servers[1]
        exited = second.log.count(" exited")
        second.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: second.log.count(" exited") >= exited + 2, 30), second.log
        self.done.append("reloaded")

    def finish(self) -> list[str]:
        self.thread.join(60)
        if self.error is not None:
            raise self.error
        return self.done


@pytest.fixture
def two_servers() -> Iterator[list[RunningServer]]:
    servers = [start_corral(0), start_corral(0)]
    yield servers
    for server in servers:
        server.stop(signal.SIGQUIT)


def report(method: str, tally: Tally, restarts: list[str], not_sent: list[str]) -> str:
    refused = sum("(111: Connection refused)" in line for line in not_sent)
    reset = sum("(104: Connection reset by peer)" in line for line in not_sent)
    disabled = sum("temporarily disabled" in line for line in not_sent)
    return (
        f"{method}: {tally.total} requests through nginx, statuses {dict(tally.statuses)}, "
        f"{len(tally.failures)} failed; {restarts.count('restarted')} restarts, "
        f"{restarts.count('reloaded')} reloads; before a request was sent, nginx logged "
        f"{refused} connections refused, {reset} reset while connecting, and {disabled} "
        f"times a server left out (max_fails), each time trying the other server"
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_rolling_restart_behind_nginx_fails_no_request(
    tmp_path: Path, two_servers: list[RunningServer], method: str
) -> None:
    first, second = two_servers
    addresses = {
        FIRST_UPSTREAM: f"127.0.0.1:{first.port}",
        SECOND_UPSTREAM: f"127.0.0.1:{second.port}",
    }
    with nginx(tmp_path, "corral.conf", addresses) as front:
        tally = Tally()
        restarts = Restarts(two_servers, LOAD_SECONDS, tally)
        send_load(front.port, LOAD_SECONDS, method, tally=tally)
        done = restarts.finish()
        failed_lines = front.failed_upstream_lines()
        not_sent = front.not_sent_lines()
    print(report(method, tally, done, not_sent))
    assert "restarted" in done and "reloaded" in done, done
    assert tally.total > 1000, tally
    assert tally.failures == [], tally.failures[:10]
    assert tally.wrong == [], tally.wrong[:10]
    # Nothing depended on nginx retrying: no request met a connection closed under it.
    assert failed_lines == [], "\n".join(failed_lines)
    assert set(tally.statuses) == {200}, tally.statuses


@pytest.mark.timeout(60)
def test_the_unix_socket_recipe_serves_forwards_and_drains(tmp_path: Path) -> None:
    path = tmp_path / "corral.sock"
    log = tmp_path / "corral.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "corral", "-b", f"unix:{path}", *SERVING, APP],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_until(lambda: log.read_text().count("Booted worker") >= 2, 15), log.read_text()
        with (
            contextlib.ExitStack() as stack,
            nginx(tmp_path, "corral-unix.conf", {UNIX_UPSTREAM: str(path)}) as front,
        ):
            connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
            stack.callback(connection.close)
            connection.request("GET", "/", headers={"X-Show-Environ": "1"})
            environ = json.loads(connection.getresponse().read())
            # The unix socket's peer, nginx, is trusted: it names the client.
            assert environ["REMOTE_ADDR"] == "127.0.0.1"
            assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
            connection.request("POST", "/echo", body=b"through a unix socket")
            assert connection.getresponse().read() == b"through a unix socket"
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b"ok\n"
            # TERM: during the drain delay nginx's requests are still served.
            process.send_signal(signal.SIGTERM)
            assert wait_until(lambda: "Received TERM" in log.read_text(), 5)
            statuses = []
            began = time.monotonic()
            while time.monotonic() - began < 0.5:
                connection.request("POST", "/echo", body=b"draining")
                response = connection.getresponse()
                assert response.read() == b"draining"
                statuses.append(response.status)
            assert set(statuses) == {200}, statuses
            assert process.wait(15) == 0, log.read_text()
            assert front.failed_upstream_lines() == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
