"""The shared slot table: its writer, its consistent reads, and the stats drawn from it."""

from __future__ import annotations

import bisect
import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest

from corral.process.slot_table import READY, RETIRING, SlotTable
from corral.process.slot_writer import SlotWriter, requests_in_app
from corral.process.stats_report import quantile, stats_document
from corral.serving.request_counts import (
    BYTES_IN,
    BYTES_OUT,
    DURATION_BOUNDS,
    DURATION_SUM,
    FIRST_BUCKET,
)
from tests.server import wait_until


@dataclass(frozen=True)
class Head:
    method: str = "GET"
    target: str = "/report?token=secret"
    path: str = "/report"
    version: str = "HTTP/1.1"


@dataclass
class Served:
    """What the writer reads of a connection (`corral.serving.connection.Connection`)."""

    request: Head | None = None
    busy: bool = True
    request_started: float = 0.0
    request_thread: int = 0
    client_waited: float = 0.0
    client_waiting_since: float = 0.0
    head: Head | None = None
    submitted: float = 0.0

    def waited_on_client(self) -> float:
        return self.client_waited


def answered(writer: SlotWriter, status: int, received: int, sent: int, seconds: float) -> None:
    """What the connection adds to the counts as a response ends."""
    counts = writer.counts
    counts[status // 100] += 1
    counts[BYTES_IN] += received
    counts[BYTES_OUT] += sent
    counts[DURATION_SUM] += seconds
    counts[FIRST_BUCKET + bisect.bisect_left(DURATION_BOUNDS, seconds)] += 1


def publish(writer: SlotWriter, *connections: Served, elsewhere: tuple[Served, ...] = ()) -> None:
    writer.publish(requests_in_app(connections, elsewhere), len(connections), 0)


def _spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def test_a_request_in_the_app_is_written_with_its_line_then_counted_by_class_size_and_time() -> (
    None
):
    table = SlotTable(2)
    writer = SlotWriter(table, table.claim(position=0))
    serving = Served(Head(), request_started=time.monotonic(), request_thread=threading.get_ident())
    publish(writer, serving, Served(None, busy=False))
    during = table.read_slot(writer.index)
    assert during is not None
    assert during.pid == os.getpid()
    assert (during.in_app, during.connections) == (1, 2)
    [request] = during.in_flight
    assert (request.method, request.path, request.thread) == ("GET", "/report", "MainThread")
    assert request.started == serving.request_started
    answered(writer, 404, 40, 65, 0.003)
    publish(writer, Served(None, busy=False))
    after = table.read_slot(writer.index)
    assert after is not None
    assert after.in_app == 0
    assert after.in_flight == ()
    assert after.counts.requests == 1
    assert after.counts.by_status_class == {"4xx": 1}
    assert (after.counts.bytes_in, after.counts.bytes_out) == (40, 65)
    # 3 ms is counted in the bucket up to 5 ms.
    assert after.counts.buckets[DURATION_BOUNDS.index(0.005)] == 1
    assert after.counts.timed == 1
    assert after.counts.duration_sum == pytest.approx(0.003)


def test_a_refused_request_is_counted_but_not_timed() -> None:
    table = SlotTable(1)
    writer = SlotWriter(table, table.claim())
    writer.refused(400)
    publish(writer)
    record = table.read_slot(writer.index)
    assert record is not None
    assert record.counts.by_status_class == {"4xx": 1}
    assert record.counts.requests == 1
    assert record.counts.timed == 0


def test_beat_and_publish_write_state_and_the_oldest_request_not_waiting_on_its_client() -> None:
    table = SlotTable(1)
    writer = SlotWriter(table, table.claim())
    writer.beat(READY, rss=1000)
    slow_reader = Served(Head(path="/big"), request_started=10.0, client_waited=3.0)
    working = Served(Head(), request_started=12.0)
    publish(writer, slow_reader, working)
    state, _, oldest = table.heartbeat(writer.index)
    assert state == READY
    # The slow reader began first, but spent 3 s waiting on its client.
    assert oldest == 12.0
    slow_reader.client_waiting_since = 20.0
    publish(writer, slow_reader)
    assert table.heartbeat(writer.index)[2] == 0.0
    writer.beat(RETIRING, rss=0)
    assert table.heartbeat(writer.index)[0] == RETIRING
    record = table.read_slot(writer.index)
    assert record is not None
    assert record.in_app == 1
    assert [request.path for request in record.in_flight] == ["/big"]


def test_max_requests_is_told_once_the_limit_is_served() -> None:
    table = SlotTable(1)
    told: list[int] = []
    counted = SlotWriter(table, table.claim()).limit(2, lambda: told.append(1))
    for _ in range(3):
        counted()
    assert told == [1]


def test_requests_past_the_recorded_ones_count_in_the_app_and_the_oldest_are_recorded() -> None:
    table = SlotTable(1)
    writer = SlotWriter(table, table.claim())
    serving = [
        Served(Head(path=f"/{number}"), request_started=1.0 + number) for number in range(100)
    ]
    publish(writer, *reversed(serving))
    record = table.read_slot(writer.index)
    assert record is not None
    assert record.in_app == 100
    assert [request.path for request in record.in_flight] == [f"/{number}" for number in range(64)]
    publish(writer, *serving[:3])
    record = table.read_slot(writer.index)
    assert record is not None
    assert [request.path for request in record.in_flight] == ["/0", "/1", "/2"]


def test_a_worker_s_counts_are_kept_when_its_slot_is_freed_so_totals_never_go_back() -> None:
    table = SlotTable(1)
    first = SlotWriter(table, table.claim())
    for _ in range(3):
        answered(first, 200, 40, 65, 0.001)
    publish(first)
    table.release(first.index)
    second = SlotWriter(table, table.claim(position=0, restarts=1))
    answered(second, 500, 40, 65, 0.2)
    publish(second)
    snapshot = table.snapshot()
    assert len(snapshot.slots) == 1
    assert snapshot.retired.requests == 3
    document = stats_document(snapshot)
    assert document["totals"]["requests"] == 4
    assert document["totals"]["by_status_class"] == {"2xx": 3, "5xx": 1}
    assert document["workers"][0]["served"] == 1
    assert document["workers"][0]["restarts"] == 1


def test_more_workers_than_slots_map_another_region() -> None:
    table = SlotTable(1)
    claimed = [table.claim(position=number) for number in range(3)]
    assert claimed == [0, 1, 2]
    assert len(table.regions) == 3
    assert [record.position for record in table.snapshot().slots] == [0, 1, 2]


def test_a_slot_read_while_another_process_writes_it_is_never_torn() -> None:
    """A writer in another process writes its slot over and over, two kinds of request
    in turn, its counts growing; every read sees records of one kind or the other, never
    a mix, and counts that agree with each other."""
    table = SlotTable(1)
    index = table.claim()
    kinds = [Head(method="GET", path="/" + "g" * 100), Head(method="DELETE", path="/d")]
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            writer = SlotWriter(table, index)
            os.write(ready_write, b"!")
            while True:
                for kind in kinds:
                    answered(writer, 200, 1, 1, 0.001)
                    publish(writer, *(Served(kind, request_started=1.0) for _ in range(3)))
                    # About what a request costs: room for the reader between writes.
                    _spin(0.000005)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"!"
        reads = 0
        while reads < 40_000:
            record = table.read_slot(index)
            assert record is not None
            assert len({(request.method, request.path) for request in record.in_flight}) <= 1
            for request in record.in_flight:
                assert (request.method, request.path) in {(k.method, k.path) for k in kinds}
            counts = record.counts
            assert counts.requests == counts.timed == counts.bytes_in == counts.bytes_out
            reads += 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_read)
        os.close(ready_write)


def test_a_slot_left_mid_change_by_a_killed_writer_is_still_read_and_freed() -> None:
    table = SlotTable(1)
    writer = SlotWriter(table, table.claim())
    writer.words[0] += 1
    assert table.read_slot(writer.index) is not None
    table.release(writer.index)
    assert table.snapshot().slots == ()
    assert table.claim() == 0


def test_quantiles_interpolate_within_a_bucket() -> None:
    buckets = [0] * (len(DURATION_BOUNDS) + 1)
    assert quantile(tuple(buckets), 0.5) is None
    # 10 requests in (0.001, 0.0025]: the median is halfway through that bucket.
    buckets[1] = 10
    assert quantile(tuple(buckets), 0.5) == pytest.approx(0.00175)
    buckets[-1] = 1000
    assert quantile(tuple(buckets), 0.99) == DURATION_BOUNDS[-1]


def test_request_processes_write_slots_of_their_own_added_to_their_parent() -> None:
    """--process-per-request: each forked request process writes its counts to a slot
    chosen before its fork; the parent shows the requests its children serve; the stats
    add it all to the parent."""
    table = SlotTable(3)
    table.describe(os.getpid(), 0, 2, "a new process per request, at most 2 at once")
    parent = SlotWriter(table, table.claim())
    parent.set_capacity(2)
    parent.write_request_processes_to([1, 2])
    gate_read, gate_write = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                answered(parent, 200, 40, 65, 0.01)
                parent.write_counts()
                os.read(gate_read, 1)
            finally:
                os._exit(0)
        children.append(pid)
    try:
        busy = Served(None, head=Head(path="/busy"), submitted=time.monotonic())
        publish(parent, busy, elsewhere=(busy,))

        def settled() -> bool:
            return stats_document(table.snapshot())["workers"][0]["served"] == 2

        assert wait_until(settled), stats_document(table.snapshot())
        document = stats_document(table.snapshot())
        assert [worker["pid"] for worker in document["workers"]] == [os.getpid()]
        assert document["workers"][0]["in_app"] == 1
        assert [request["path"] for request in document["in_flight"]] == ["/busy"]
        assert document["in_flight"][0]["worker"] == os.getpid()
        # The parent's own slot was never written by a child.
        own = table.read_slot(parent.index)
        assert own is not None and own.counts.requests == 0 and own.pid == os.getpid()
        assert sorted(record.pid for record in table.snapshot().slots[1:]) == sorted(children)
    finally:
        os.write(gate_write, b"!!")
        for pid in children:
            os.waitpid(pid, 0)
        os.close(gate_read)
        os.close(gate_write)


def test_the_document_has_the_documented_shape() -> None:
    table = SlotTable(2)
    table.describe(4321, 2, 4, "2 worker processes × 4 threads", started=1000.0)
    writer = SlotWriter(table, table.claim())
    writer.set_capacity(4)
    writer.beat(READY, 5)
    publish(writer, Served(Head(), request_started=time.monotonic()))
    document = stats_document(table.snapshot(), wall_now=1012.5)
    assert list(document) == [
        "version",
        "pid",
        "uptime_seconds",
        "concurrency",
        "totals",
        "workers",
        "in_flight",
    ]
    assert document["version"] == 1
    assert document["pid"] == 4321
    assert document["uptime_seconds"] == 12.5
    assert document["concurrency"] == {
        "workers": 2,
        "slots_per_worker": 4,
        "slots": 8,
        "model": "2 worker processes × 4 threads",
    }
    assert list(document["totals"]) == [
        "requests",
        "by_status_class",
        "in_app",
        "waiting",
        "connections",
        "bytes_in",
        "bytes_out",
        "restarts",
    ]
    assert list(document["workers"][0]) == [
        "pid",
        "state",
        "slots",
        "in_app",
        "waiting",
        "connections",
        "served",
        "p50_seconds",
        "p99_seconds",
        "rss_bytes",
        "restarts",
    ]
    assert document["workers"][0]["state"] == "ready"
    assert list(document["in_flight"][0]) == ["worker", "thread", "method", "path", "age_seconds"]
