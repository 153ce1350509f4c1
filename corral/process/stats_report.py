"""The two views of the slot table the stats listener serves: a JSON document (`/`) and
Prometheus's text exposition (`/metrics`). docs/observability.md describes both.

A request process of --process-per-request writes a slot of its own; both views add it
to the process that forked it, so a single process is always one worker here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from corral.process.slot_table import (
    STATE_NAMES,
    Counts,
    InFlight,
    SlotRecord,
    TableSnapshot,
)
from corral.serving.request_counts import DURATION_BOUNDS
from corral.serving.sizing import advise_from_share
from corral.workers import cpu_cores

# The version of the JSON document's shape; raised when a key changes meaning or goes.
DOCUMENT_VERSION = 1
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
METRICS_MISSING = b"/metrics needs prometheus_client: pip install 'corral[metrics]'\n"


@dataclass
class _Worker:
    """One worker (or the single process) with its request processes added in."""

    slot: SlotRecord
    in_app: int
    counts: list[Counts] = field(default_factory=list)
    in_flight: list[InFlight] = field(default_factory=list)


def _workers(snapshot: TableSnapshot) -> list[_Worker]:
    workers = {
        record.pid: _Worker(record, record.in_app, [record.counts], list(record.in_flight))
        for record in snapshot.slots
        if not record.parent
    }
    for record in snapshot.slots:
        if not record.parent:
            continue
        parent = workers.get(record.parent)
        if parent is None:
            # Its parent has no slot (gone): shown on its own.
            workers[record.pid] = _Worker(
                record, record.in_app, [record.counts], list(record.in_flight)
            )
            continue
        parent.in_app += record.in_app
        parent.counts.append(record.counts)
        parent.in_flight.extend(record.in_flight)
    return sorted(workers.values(), key=lambda worker: (worker.slot.position, worker.slot.index))


def _sum_counts(counts: list[Counts]) -> Counts:
    by_class: dict[str, int] = {}
    for each in counts:
        for name, value in each.by_status_class.items():
            by_class[name] = by_class.get(name, 0) + value
    return Counts(
        requests=sum(each.requests for each in counts),
        by_status_class={name: by_class[name] for name in STATUS_CLASSES if name in by_class},
        bytes_in=sum(each.bytes_in for each in counts),
        bytes_out=sum(each.bytes_out for each in counts),
        duration_sum=sum(each.duration_sum for each in counts),
        buckets=tuple(
            sum(column) for column in zip(*(each.buckets for each in counts), strict=True)
        ),
    )


def quantile(buckets: tuple[int, ...], q: float) -> float | None:
    """The `q` quantile (0 to 1) of a duration histogram, in seconds, interpolated within
    its bucket as Prometheus's histogram_quantile does; the largest bound when it falls
    past every bound; None with no requests."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    below = 0
    for number, count in enumerate(buckets):
        if count and below + count >= rank:
            if number == len(DURATION_BOUNDS):
                return DURATION_BOUNDS[-1]
            lower = DURATION_BOUNDS[number - 1] if number else 0.0
            upper = DURATION_BOUNDS[number]
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return DURATION_BOUNDS[-1]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def stats_document(
    snapshot: TableSnapshot, now: float | None = None, wall_now: float | None = None
) -> dict[str, Any]:
    """The JSON document of docs/observability.md; `now` is `time.monotonic()` and
    `wall_now` `time.time()`, given by tests."""
    now = time.monotonic() if now is None else now
    wall_now = time.time() if wall_now is None else wall_now
    workers = _workers(snapshot)
    totals = _sum_counts([snapshot.retired, *(each for w in workers for each in w.counts)])
    per_worker = max(snapshot.slots_per_worker, 0)
    in_flight = sorted(
        ((request, worker.slot.pid) for worker in workers for request in worker.in_flight),
        key=lambda pair: pair[0].started,
    )
    return {
        "version": DOCUMENT_VERSION,
        "pid": snapshot.pid,
        "uptime_seconds": round(max(wall_now - snapshot.started, 0.0), 3),
        "concurrency": {
            "workers": snapshot.workers,
            "slots_per_worker": per_worker,
            "slots": max(snapshot.workers, 1) * per_worker,
            "model": snapshot.model,
        },
        "totals": {
            "requests": totals.requests,
            "by_status_class": totals.by_status_class,
            "in_app": sum(worker.in_app for worker in workers),
            "waiting": sum(worker.slot.waiting for worker in workers),
            "connections": sum(worker.slot.connections for worker in workers),
            "bytes_in": totals.bytes_in,
            "bytes_out": totals.bytes_out,
            "restarts": snapshot.restarts,
        },
        "workers": [_worker_document(worker) for worker in workers],
        "in_flight": [
            {
                "worker": pid,
                "thread": request.thread,
                "method": request.method,
                "path": request.path,
                "age_seconds": round(max(now - request.started, 0.0), 3),
            }
            for request, pid in in_flight
        ],
        **_sizing(snapshot, workers),
    }


def _sizing(snapshot: TableSnapshot, workers: list[_Worker]) -> dict[str, Any]:
    """{"sizing": the advice of docs/observability.md} from the workers' samples, their
    CPU shares weighed by how many requests each sampled; {} before any sample."""
    sampled = [worker.slot for worker in workers if worker.slot.sizing_samples]
    samples = sum(slot.sizing_samples for slot in sampled)
    if not samples:
        return {}
    share = sum(slot.cpu_fraction * slot.sizing_samples for slot in sampled) / samples
    advice = advise_from_share(
        share,
        samples,
        cpu_cores(),
        snapshot.workers,
        max(snapshot.slots_per_worker, 1),
    )
    return {"sizing": advice.as_dict()}


def _worker_document(worker: _Worker) -> dict[str, Any]:
    slot = worker.slot
    counts = _sum_counts(worker.counts)
    return {
        "pid": slot.pid,
        "state": STATE_NAMES.get(slot.state, "unknown"),
        "slots": slot.capacity,
        "in_app": worker.in_app,
        "waiting": slot.waiting,
        "connections": slot.connections,
        "served": counts.requests,
        "p50_seconds": _rounded(quantile(counts.buckets, 0.5)),
        "p99_seconds": _rounded(quantile(counts.buckets, 0.99)),
        "rss_bytes": slot.rss_bytes,
        "restarts": slot.restarts,
    }


class _TableCollector:
    """A prometheus_client collector of one snapshot's metric families."""

    def __init__(self, snapshot: TableSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snapshot = self.snapshot
        workers = _workers(snapshot)
        totals = _sum_counts([snapshot.retired, *(each for w in workers for each in w.counts)])
        requests = CounterMetricFamily(
            "corral_requests_total",
            "Requests answered, by status class: the app's, and those corral refused itself.",
            labels=["status_class"],
        )
        for name in STATUS_CLASSES:
            requests.add_metric([name], totals.by_status_class.get(name, 0))
        yield requests
        cumulative = 0
        buckets = []
        for bound, count in zip((*DURATION_BOUNDS, float("inf")), totals.buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        yield HistogramMetricFamily(
            "corral_request_duration_seconds",
            "Seconds from the app's call to the response's end, for requests the app ran.",
            buckets=buckets,
            sum_value=totals.duration_sum,
        )
        gauges = (
            ("corral_requests_in_app", "Requests inside the app now.", "in_app"),
            ("corral_requests_waiting", "Requests waiting for a thread now.", "waiting"),
            ("corral_connections_open", "Connections open now, idle ones too.", "connections"),
        )
        for name, text, attribute in gauges:
            yield GaugeMetricFamily(
                name,
                text,
                value=sum(
                    worker.in_app if attribute == "in_app" else getattr(worker.slot, attribute)
                    for worker in workers
                ),
            )
        yield GaugeMetricFamily(
            "corral_slots",
            "Requests the server is set to serve at once (workers x each one's concurrency).",
            value=max(snapshot.workers, 1) * snapshot.slots_per_worker,
        )
        yield GaugeMetricFamily(
            "corral_workers", "Processes serving requests now.", value=len(workers)
        )
        yield CounterMetricFamily(
            "corral_worker_restarts_total",
            "Workers started in place of one that exited or was replaced.",
            value=snapshot.restarts,
        )
        memory = GaugeMetricFamily(
            "corral_worker_memory_bytes", "Resident memory of each worker.", labels=["pid"]
        )
        for worker in workers:
            memory.add_metric([str(worker.slot.pid)], worker.slot.rss_bytes)
        yield memory
        yield CounterMetricFamily(
            "corral_bytes_received_total",
            "Bytes of requests received: heads and bodies as framed on the wire.",
            value=totals.bytes_in,
        )
        yield CounterMetricFamily(
            "corral_bytes_sent_total",
            "Bytes of responses sent: heads and bodies (chunk framing not counted).",
            value=totals.bytes_out,
        )


def metrics_exposition(snapshot: TableSnapshot) -> tuple[bytes, str]:
    """(body, content type) of Prometheus's text format for `snapshot`, written by
    prometheus_client. Raises ImportError when prometheus_client is not installed."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_TableCollector(snapshot))
    return generate_latest(registry), CONTENT_TYPE_LATEST
