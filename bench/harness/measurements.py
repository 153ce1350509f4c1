"""One table row: repeated runs of one server (or ceiling) on one workload."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from harness.cpu import CLIENT_BOUND_SHARE
from harness.processes import MemorySample

SERVER = "server"
NGINX_CEILING = "nginx ceiling"
IN_PROCESS_CEILING = "in-process ceiling"


@dataclass
class Run:
    """One timed run, its figure already in the workload's unit."""

    figure: float
    requests_per_second: float
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    errors: str | None = None
    """Socket errors, non-2xx answers or a wrk failure; the run is flagged."""
    side_requests_per_second: float | None = None
    """With a side load (scenario E): its requests per second, included in the figure;
    the latencies above are then the main load's alone."""
    side_latency_p50_ms: float | None = None
    side_latency_p99_ms: float | None = None
    client_busy: float | None = None
    """The share of the run wrk's CPU was busy (`harness.cpu`); None where the server
    shares that CPU."""


@dataclass
class Measurement:
    scenario: str
    app: str
    label: str
    family: str
    kind: str = SERVER
    reference: str | None = None
    runs: list[Run] = field(default_factory=list)
    failure: str | None = None
    """Why there are no runs: failed to start, not installed, ..."""
    rss_idle: MemorySample | None = None
    rss_after: MemorySample | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None and bool(self.runs)

    @property
    def median(self) -> float:
        return statistics.median_low([run.figure for run in self.runs])

    @property
    def minimum(self) -> float:
        return min(run.figure for run in self.runs)

    @property
    def maximum(self) -> float:
        return max(run.figure for run in self.runs)

    @property
    def median_p50_ms(self) -> float | None:
        return _median_of([run.latency_p50_ms for run in self.runs])

    @property
    def median_p99_ms(self) -> float | None:
        return _median_of([run.latency_p99_ms for run in self.runs])

    @property
    def median_side_requests_per_second(self) -> float | None:
        return _median_of([run.side_requests_per_second for run in self.runs])

    @property
    def median_side_p99_ms(self) -> float | None:
        return _median_of([run.side_latency_p99_ms for run in self.runs])

    @property
    def median_client_busy(self) -> float | None:
        return _median_of([run.client_busy for run in self.runs])

    @property
    def client_bound(self) -> bool:
        """wrk's CPU was busy all along in most runs: wrk set the pace, not the server."""
        busy = self.median_client_busy
        return busy is not None and busy >= CLIENT_BOUND_SHARE

    @property
    def flags(self) -> list[str]:
        return [run.errors for run in self.runs if run.errors]


def _median_of(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None
