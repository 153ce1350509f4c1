"""--stats: the JSON at / and the Prometheus metrics at /metrics, read from a real server
under each concurrency model while real clients use it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import ROOT, RunningServer, fetch, wait_until

_STATS_AT = re.compile(r"Stats at http://127\.0\.0\.1:(\d+)")

# Each documented family, by the sample names Prometheus stores.
DOCUMENTED = {
    "corral_requests_total",
    "corral_request_duration_seconds_bucket",
    "corral_request_duration_seconds_count",
    "corral_request_duration_seconds_sum",
    "corral_requests_in_app",
    "corral_requests_waiting",
    "corral_slots",
    "corral_workers",
    "corral_worker_restarts_total",
    "corral_worker_memory_bytes",
    "corral_connections_open",
    "corral_bytes_received_total",
    "corral_bytes_sent_total",
}

# Options, worker processes, requests each serves at once.
MODELS: dict[str, tuple[list[str], int, int]] = {
    "workers-thread": (["-w", "2", "--threads", "4"], 2, 4),
    "one-at-a-time": (["--threads", "1"], 0, 1),
    "thread-pool": (["--threads", "4"], 0, 4),
    "process-per-request": (["--process-per-request", "4"], 0, 4),
    "gevent": (["-k", "gevent", "--worker-connections", "4"], 0, 4),
}


class StatsServer(RunningServer):
    """corral with `--stats 127.0.0.1:0`, the stats port read from its log."""

    def __init__(self, options: list[str], workers: int, **kwargs: Any) -> None:
        super().__init__(options=["--stats", "127.0.0.1:0", *options], **kwargs)
        assert wait_until(lambda: _STATS_AT.search(self.log) is not None), self.log
        match = _STATS_AT.search(self.log)
        assert match is not None
        self.stats_port = int(match.group(1))
        assert wait_until(lambda: self.log.count("Booted worker") >= workers, 15), self.log

    def document(self) -> dict[str, Any]:
        status, body = fetch(self.stats_port, "/")
        assert status == 200
        return json.loads(body)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, parsed by prometheus_client's own parser."""
        status, body = fetch(self.stats_port, "/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def requests_total(samples: dict[Any, float], status_class: str) -> float:
    return samples[("corral_requests_total", (("status_class", status_class),))]


@pytest.mark.parametrize("model", MODELS)
def test_every_family_counts_the_requests_sent(model: str) -> None:
    options, workers, each = MODELS[model]
    with StatsServer(options, workers) as server:
        ok = b"GET /slow?ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answers = [exchange(server.port, ok) for _ in range(10)]
        assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
        failing = b"GET /raise-before-start HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        for _ in range(2):
            assert exchange(server.port, failing).startswith(b"HTTP/1.1 500 ")
        # Refused by corral itself, before any app runs.
        for _ in range(3):
            assert exchange(server.port, b"NOT HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")

        # A request is counted as its response ends, which the client may see first.
        def counted() -> bool:
            samples = server.samples()
            return (
                requests_total(samples, "2xx") == 10
                and requests_total(samples, "5xx") == 2
                and requests_total(samples, "4xx") == 3
                and samples[("corral_requests_in_app", ())] == 0
                and all(
                    value > 0
                    for (name, _), value in samples.items()
                    if name == "corral_worker_memory_bytes"
                )
            )

        assert wait_until(counted), server.samples()
        samples = server.samples()
        assert {name for name, _ in samples} >= DOCUMENTED
        assert requests_total(samples, "1xx") == requests_total(samples, "3xx") == 0
        assert samples[("corral_request_duration_seconds_count", ())] == 12
        assert samples[("corral_request_duration_seconds_bucket", (("le", "+Inf"),))] == 12
        assert 0 < samples[("corral_request_duration_seconds_sum", ())] < 12
        assert samples[("corral_requests_waiting", ())] == 0
        assert samples[("corral_slots", ())] == max(workers, 1) * each
        assert samples[("corral_workers", ())] == max(workers, 1)
        assert samples[("corral_worker_restarts_total", ())] == 0
        memory = [labels for name, labels in samples if name == "corral_worker_memory_bytes"]
        assert len(memory) == max(workers, 1)
        # The 200s' requests and answers, byte for byte (the 500s are corral's own).
        assert samples[("corral_bytes_received_total", ())] == 10 * len(ok) + 2 * len(failing)
        assert samples[("corral_bytes_sent_total", ())] == sum(map(len, answers))

        document = server.document()
        assert document["pid"] == server.process.pid
        assert document["concurrency"]["workers"] == workers
        assert document["concurrency"]["slots_per_worker"] == each
        assert document["concurrency"]["slots"] == max(workers, 1) * each
        assert document["concurrency"]["model"] in server.log
        assert document["totals"]["requests"] == 15
        assert document["totals"]["by_status_class"] == {"2xx": 10, "4xx": 3, "5xx": 2}
        assert document["totals"]["in_app"] == 0
        assert document["totals"]["restarts"] == 0
        assert len(document["workers"]) == max(workers, 1)
        assert sum(worker["served"] for worker in document["workers"]) == 15
        for worker in document["workers"]:
            assert worker["state"] == "ready"
            assert worker["slots"] == each
            assert worker["rss_bytes"] > 0
            # A worker may have answered only requests corral refused itself (the 400s),
            # which the app never ran: served, and no duration to take quantiles of.
            if worker["p50_seconds"] is not None:
                assert worker["served"]
                assert 0 < worker["p50_seconds"] <= worker["p99_seconds"]
        timed = [worker for worker in document["workers"] if worker["p50_seconds"] is not None]
        assert timed, document["workers"]
        assert document["in_flight"] == []


def slow_request(port: int, name: str) -> None:
    """A request that holds its slot for 6 s, cut short when the test stops the server."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        fetch(port, f"/slow?ms=6000&announce={name}")


BUSY: dict[str, tuple[list[str], int, int]] = {
    "workers-thread": (["-w", "2", "--threads", "2"], 2, 4),
    "one-at-a-time": (["--threads", "1"], 0, 1),
    "thread-pool": (["--threads", "2"], 0, 2),
    "gevent": (["-k", "gevent", "--worker-connections", "2"], 0, 2),
}


@pytest.mark.parametrize("model", BUSY)
def test_metrics_answer_at_once_while_every_slot_is_busy(model: str) -> None:
    options, workers, slots = BUSY[model]
    with StatsServer(options, workers) as server:
        server.samples()
        clients = [
            threading.Thread(target=slow_request, args=(server.port, f"busy-{number}"))
            for number in range(slots)
        ]
        for client in clients:
            client.start()
        assert wait_until(lambda: server.log.count("app: started busy-") == slots), server.log
        # The requests in the app are written a few times a second.
        assert wait_until(lambda: server.samples()[("corral_requests_in_app", ())] == slots)
        started = time.perf_counter()
        samples = server.samples()
        elapsed = time.perf_counter() - started
        assert elapsed < 0.1, f"/metrics took {elapsed * 1000:.0f} ms"
        assert samples[("corral_requests_in_app", ())] == slots
        document = server.document()
        assert document["totals"]["in_app"] == slots
        assert len(document["in_flight"]) == slots
        worker_pids = {worker["pid"] for worker in document["workers"]}
        for request in document["in_flight"]:
            assert request["method"] == "GET"
            # The query string stays out of the stats.
            assert request["path"] == "/slow"
            assert request["worker"] in worker_pids
            assert 0 < request["age_seconds"] < 6
            assert request["thread"]
        server.stop(signal.SIGQUIT)
        for client in clients:
            client.join(10)


def test_a_worker_replaced_counts_a_restart_and_its_requests_stay_counted() -> None:
    with StatsServer(["-w", "2"], 2) as server:
        for _ in range(4):
            assert fetch(server.port, "/")[0] == 200
        assert wait_until(lambda: server.document()["totals"]["requests"] == 4)
        victim = server.document()["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: server.log.count("Booted worker") == 3, 15), server.log
        document = server.document()
        assert victim not in {worker["pid"] for worker in document["workers"]}
        assert document["totals"]["restarts"] == 1
        assert sorted(worker["restarts"] for worker in document["workers"]) == [0, 1]
        # A counter never goes back: the killed worker's requests are still counted.
        assert document["totals"]["requests"] == 4
        samples = server.samples()
        assert requests_total(samples, "2xx") == 4
        assert samples[("corral_worker_restarts_total", ())] == 1


def test_without_prometheus_client_metrics_says_what_to_install_and_json_still_works() -> None:
    hidden = str(ROOT / "tests" / "apps" / "without_prometheus")
    with StatsServer(["--threads", "2"], 0, env={"PYTHONPATH": hidden}) as server:
        status, body = fetch(server.stats_port, "/metrics")
        assert status == 501
        assert body == b"/metrics needs prometheus_client: pip install 'corral[metrics]'\n"
        assert server.document()["concurrency"]["slots"] == 2
        assert fetch(server.stats_port, "/other")[0] == 404


def test_a_stats_address_in_use_stops_the_start_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("0", "1"):
            result = subprocess.run(
                [
                    *(sys.executable, "-m", "corral", "-b", "127.0.0.1:0", "-w", workers),
                    *("--stats", str(port), "tests.apps.behaviours:app"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode != 0
            assert f"corral: error: cannot listen on 127.0.0.1:{port}" in result.stderr
