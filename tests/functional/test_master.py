"""The master and its worker processes, driven with real signals.

Each test starts `corral -w N` in a subprocess, talks to it over loopback and signals the
master or its workers the way an operator would.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.server import ROOT, RunningServer, fetch, wait_until

APP = "tests.apps.workers_app:app"


def workers_of(master_pid: int) -> set[int]:
    """The master's live child processes (zombies excluded)."""
    try:
        text = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text()
    except OSError:
        return set()
    children = set()
    for pid in map(int, text.split()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            children.add(pid)
    return children


def is_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def start(options: list[str], count: int, app: str = APP, **kwargs: object) -> RunningServer:
    server = RunningServer(app, options, **kwargs)  # type: ignore[arg-type]
    booted = wait_until(lambda: server.log.count("Booted worker") >= count, 15)
    assert booted, server.log
    return server


def get(port: int, path: str = "/pid", timeout: float = 10) -> str:
    status, body = fetch(port, path, timeout=timeout)
    assert status == 200
    return body.decode()


class KeepAliveLoad:
    """`clients` threads, each sending requests over one keep-alive connection (opened
    again when the server ends it with Connection: close) until stopped."""

    def __init__(self, port: int, clients: int, path: str = "/pid") -> None:
        self.port = port
        self.path = path
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stopping.is_set():
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read().decode()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                if response.will_close:
                    connection.close()
            except Exception as error:
                with self.lock:
                    self.failures.append(repr(error))
                connection.close()
                continue
            with self.lock:
                self.bodies.append(body)
        connection.close()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)


def test_a_killed_worker_is_replaced_within_a_second() -> None:
    with start(["-w", "2"], 2) as server:
        master = server.process.pid
        before = workers_of(master)
        assert len(before) == 2
        failures: list[str] = []
        served: list[float] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    get(server.port)
                    served.append(time.monotonic())
                except Exception as error:
                    failures.append(repr(error))

        thread = threading.Thread(target=client)
        thread.start()
        assert wait_until(lambda: len(served) >= 5, 5), failures
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        replaced = wait_until(lambda: len(workers_of(master) - {victim}) == 2, 1.0)
        replaced_after = time.monotonic() - killed_at
        wait_until(lambda: any(moment > killed_at + 0.1 for moment in served), 5)
        stop.set()
        thread.join(10)
        assert replaced, f"no replacement after {replaced_after:.2f} s:\n{server.log}"
        # Only a request inside the killed worker may fail: one client, so at most one.
        assert len(failures) <= 1, failures
        assert any(moment > killed_at + 0.1 for moment in served)
        assert f"Worker {victim} was killed by SIGKILL" in server.log


def test_hup_under_load_loses_nothing_and_serves_the_new_code(tmp_path: Path) -> None:
    shutil.copy(ROOT / "tests" / "apps" / "workers_app.py", tmp_path / "reloadable_app.py")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    with start(["-w", "4"], 4, app="reloadable_app:app", env=env) as server:
        master = server.process.pid
        old_workers = workers_of(master)
        load = KeepAliveLoad(server.port, 8)
        time.sleep(5)
        source = tmp_path / "reloadable_app.py"
        source.write_text(source.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
        os.kill(master, signal.SIGHUP)
        assert wait_until(lambda: "Reload complete" in server.log, 10), server.log
        time.sleep(15)
        load.stop()
        assert load.failures == [], load.failures[:5]
        assert len(load.bodies) > 1000
        assert load.bodies[-1].endswith(" 2")
        assert workers_of(master).isdisjoint(old_workers)
        assert get(server.port).endswith(" 2")


def test_usr2_then_quit_hands_over_without_losing_a_request(tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    server = start(["-w", "2", "--pid", str(pidfile)], 2)
    old_master = server.process.pid
    new_master = 0
    try:
        assert pidfile.read_text().strip() == str(old_master)
        load = KeepAliveLoad(server.port, 8)
        time.sleep(2)
        os.kill(old_master, signal.SIGUSR2)
        assert wait_until(lambda: server.log.count("Booted worker") >= 4, 15), server.log
        assert wait_until(lambda: pidfile.exists(), 5)
        new_master = int(pidfile.read_text())
        assert new_master != old_master
        assert (tmp_path / "corral.pid.oldbin").read_text().strip() == str(old_master)
        time.sleep(1)
        os.kill(old_master, signal.SIGQUIT)
        assert server.process.wait(10) == 0
        time.sleep(3)
        load.stop()
        assert load.failures == [], load.failures[:5]
        assert get(server.port).split()[0] in {str(pid) for pid in workers_of(new_master)}
        assert pidfile.read_text().strip() == str(new_master)
        assert not (tmp_path / "corral.pid.oldbin").exists()
    finally:
        # The new master holds the output pipe too: stop it first, or reading the
        # pipe to its end would wait for it.
        if new_master:
            os.kill(new_master, signal.SIGTERM)
            wait_until(lambda: is_gone(new_master), 10)
        server.stop(signal.SIGKILL)


def test_ttin_and_ttou_add_and_remove_one_worker() -> None:
    with start(["-w", "2"], 2) as server:
        master = server.process.pid
        os.kill(master, signal.SIGTTIN)
        assert wait_until(lambda: len(workers_of(master)) == 3, 5), server.log
        # Logged once the worker is forked: the line may come a moment after it.
        line = "Concurrency: 3 worker processes × 1 thread = 3 requests at a time"
        assert wait_until(lambda: line in server.log, 5), server.log
        os.kill(master, signal.SIGTTOU)
        assert wait_until(lambda: len(workers_of(master)) == 2, 5), server.log
        time.sleep(0.5)
        assert len(workers_of(master)) == 2


def test_term_lets_ten_requests_in_flight_finish_then_everything_exits_0() -> None:
    server = start(["-w", "2", "-k", "thread", "--threads", "5"], 2)
    master = server.process.pid
    workers = workers_of(master)
    results: list[str] = []

    def request() -> None:
        try:
            results.append(get(server.port, "/sleep?1.5"))
        except Exception as error:
            results.append(repr(error))

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    # Nothing the server tells shows a request has reached the app: time to get there.
    time.sleep(0.5)
    assert server.stop(signal.SIGTERM) == 0
    for thread in threads:
        thread.join(10)
    assert len(results) == 10 and all(result.endswith(" 1") for result in results), results
    for pid in workers:
        assert f"Worker {pid} exited\n" in server.log
    assert "exited with status" not in server.log and "killed" not in server.log


@pytest.mark.parametrize("worker_class", ["sync", "thread", "gevent"])
def test_timeout_kills_a_hung_worker_and_logs_where_it_hung(worker_class: str) -> None:
    with start(["-w", "1", "-k", worker_class, "--timeout", "3"], 1) as server:
        master = server.process.pid
        (hung,) = workers_of(master)
        started = time.monotonic()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            get(server.port, "/hang", timeout=10)
        assert wait_until(lambda: hung not in workers_of(master), 6 - (time.monotonic() - started))
        assert time.monotonic() - started < 6
        assert get(server.port).split()[0] != str(hung)
        assert "time.sleep(1000)" in server.log
        assert 'serving "GET /hang HTTP/1.1"' in server.log
        assert f"WORKER TIMEOUT (pid {hung})" in server.log


def test_a_busy_worker_leaves_new_connections_to_an_idle_one() -> None:
    with start(["-w", "2", "-k", "thread", "--threads", "2"], 2) as server:
        # Find two keep-alive connections that landed in the same worker.
        connections: dict[str, list[http.client.HTTPConnection]] = {}
        pair: list[http.client.HTTPConnection] = []
        for _ in range(40):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            connection.request("GET", "/pid")
            pid = connection.getresponse().read().decode().split()[0]
            connections.setdefault(pid, []).append(connection)
            if len(connections[pid]) == 2:
                pair = connections[pid]
                break
        assert pair, "every connection went to a different worker"
        busy_pid = pid
        try:
            for connection in pair:
                connection.request("GET", "/sleep?2")
            # Nothing the server tells shows both have reached the app: time to get there.
            time.sleep(0.3)
            for _ in range(4):
                started = time.monotonic()
                answer = get(server.port)
                assert time.monotonic() - started < 0.5
                assert answer.split()[0] != busy_pid
            for connection in pair:
                assert connection.getresponse().status == 200
        finally:
            for group in connections.values():
                for connection in group:
                    connection.close()


def test_sync_workers_serve_one_request_each_at_a_time() -> None:
    with start(["-w", "4", "-k", "sync"], 4) as server:
        assert "Concurrency: 4 worker processes × 1 thread = 4 requests at a time" in server.log
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(get(server.port, "/sleep?0.1")))
            for _ in range(8)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        elapsed = time.monotonic() - started
        assert len(results) == 8
        # Two rounds of four: not one (more than 4 at once), not eight (one at a time).
        assert 0.19 < elapsed < 0.4, elapsed
        assert len({result.split()[0] for result in results}) == 4


def test_the_timeout_dump_tells_identical_stacks_once() -> None:
    """Twenty greenlets hung in the same line make one stack in the dump, with their
    count, not twenty (a gevent worker of 1,000 would write tens of thousands of lines)."""
    with start(["-w", "1", "-k", "gevent", "--timeout", "3"], 1) as server:
        (hung,) = workers_of(server.process.pid)
        failures: list[BaseException] = []

        def hang() -> None:
            try:
                get(server.port, "/hang", timeout=10)
            except (ConnectionError, http.client.HTTPException) as error:
                failures.append(error)

        threads = [threading.Thread(target=hang) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(failures) == 20
        assert wait_until(lambda: f"WORKER TIMEOUT (pid {hung})" in server.log, 5)
        assert "20 with this stack (Greenlet " in server.log, server.log
        assert server.log.count("time.sleep(1000)") == 1


@pytest.mark.parametrize("worker_class", ["thread", "gevent"])
def test_timeout_does_not_count_a_client_slow_to_read(worker_class: str) -> None:
    """--timeout times the application: a response the client takes slowly keeps its
    request in flight past the timeout, and the worker is not killed for it."""
    with start(
        ["-w", "1", "-k", worker_class, "--timeout", "2"], 1, app="tests.apps.behaviours:app"
    ) as server:
        (worker,) = workers_of(server.process.pid)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /big?kib=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
            # Slower than the timeout: 4 s for the first 4 MiB, then the rest at once.
            received = 0
            started = time.monotonic()
            while received < 4 << 20:
                chunk = sock.recv(65536)
                assert chunk, server.log
                received += len(chunk)
                time.sleep(max(0.0, received / (1 << 20) - (time.monotonic() - started)))
            # The head and the whole body arrive, then nothing is cut short.
            while received < 64 << 20:
                chunk = sock.recv(1 << 20)
                assert chunk, server.log
                received += len(chunk)
        assert received >= 64 << 20
        assert workers_of(server.process.pid) == {worker}
        assert "WORKER TIMEOUT" not in server.log
