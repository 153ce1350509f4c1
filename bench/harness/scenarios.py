"""The scenarios: which apps, how much load, and which server profile serves them."""

from __future__ import annotations

from dataclasses import dataclass

from harness.servers import CPU, IO, IO_WORKERS, MIXED, TLS

MEBIBYTE = 1024 * 1024
SLEEP_SECONDS = 0.020


@dataclass(frozen=True)
class Workload:
    app: str
    script: str | None = None
    """wrk Lua script in bench/, for requests other than a plain GET."""
    bytes_per_request: int = 0
    """When set, the figure reported is MB/s (10^6 bytes) instead of req/s."""
    in_quick: bool = True

    @property
    def unit(self) -> str:
        return "MB/s" if self.bytes_per_request else "req/s"

    def figure(self, requests_per_second: float) -> float:
        if self.bytes_per_request:
            return requests_per_second * self.bytes_per_request / 1e6
        return requests_per_second


@dataclass(frozen=True)
class SideLoad:
    """A second wrk started with the scenario's own, on connections and a path of its own.

    Its requests are timed in its own histogram and reported apart; the scenario's
    figure is both wrks' requests per second added up.
    """

    connections: int
    path: str
    name: str
    """What its requests are called in the report, e.g. "slow"."""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    explanation: str
    profile: str
    workloads: tuple[Workload, ...]
    connections: int
    headers: tuple[str, ...] = ()
    ideal_requests_per_second: float | None = None
    nginx_ceiling: bool = False
    in_quick: bool = False
    server_cpus: str = "0"
    """taskset CPU list for the server; wrk always runs on CPU 1."""
    compare_with_fastest_peer: bool = False
    """Adds a column dividing each row by the fastest server that is not corral."""
    compare_with: str | None = None
    """A reference name (servers.REFERENCE_NAMES): adds a column dividing each row by it."""
    side_load: SideLoad | None = None
    main_name: str | None = None
    """What the main wrk's requests are called when there is a side load, e.g. "fast"."""
    tls: bool = False
    """HTTPS: servers get the run's certificate and wrk an https:// URL."""
    in_process_ceiling: bool = True
    """Whether the app is also called in a loop with no server (scenarios without an ideal)."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="A",
        title="A: CPU-bound, keep-alive",
        explanation=(
            "One server process on CPU 0, wrk on CPU 1 with 32 keep-alive connections. "
            "Measures the cost of the server's own code per request."
        ),
        profile=CPU,
        workloads=(Workload("hello"), Workload("flask_json", in_quick=False)),
        connections=32,
        nginx_ceiling=True,
        in_quick=True,
    ),
    Scenario(
        key="B",
        title="B: CPU-bound, Connection: close",
        explanation=(
            "As A, but every request carries `Connection: close`: adds accept, "
            "connection set-up and teardown to each request."
        ),
        profile=CPU,
        workloads=(Workload("hello"), Workload("flask_json")),
        connections=32,
        headers=("Connection: close",),
        nginx_ceiling=True,
        compare_with="granian",
    ),
    Scenario(
        key="C",
        title="C: I/O-bound, 200 connections",
        explanation=(
            "The app sleeps 20 ms per request; 200 keep-alive connections. A server "
            "that runs 200 requests at once reaches the ideal 200 / 0.020 s = "
            "10,000 req/s; the fraction of ideal shows how much concurrency it really has."
        ),
        profile=IO,
        workloads=(Workload("sleep20"),),
        connections=200,
        ideal_requests_per_second=200 / SLEEP_SECONDS,
        in_quick=True,
    ),
    Scenario(
        key="C2",
        title="C2: I/O-bound, 200 connections, 2 worker processes",
        explanation=(
            "As C (the app sleeps 20 ms, 200 keep-alive connections, ideal 10,000 req/s), "
            "served by two worker processes of 100 requests each (gevent: up to 1,000 each). "
            "The server is not pinned: its master and workers may run on both CPUs, and "
            "`wrk -t1`, still pinned to CPU 1, shares that CPU with them. Only servers "
            "with a worker-process count take part."
        ),
        profile=IO_WORKERS,
        workloads=(Workload("sleep20"),),
        connections=200,
        ideal_requests_per_second=200 / SLEEP_SECONDS,
        server_cpus="0,1",
        compare_with_fastest_peer=True,
    ),
    Scenario(
        key="D",
        title="D: 1 MiB download and upload",
        explanation=(
            "8 keep-alive connections each fetching a 1 MiB body (download) or posting "
            "one (upload, read fully by the app). Figures are MB/s of body."
        ),
        profile=CPU,
        workloads=(
            Workload("download", bytes_per_request=MEBIBYTE),
            Workload("upload", script="upload.lua", bytes_per_request=MEBIBYTE),
        ),
        connections=8,
    ),
    Scenario(
        key="E",
        title="E: mixed load, 64 connections",
        explanation=(
            "One server process on CPU 0. Two wrks on CPU 1 at the same time: 58 keep-alive "
            "connections send fast requests (`/`, the app named) while 6 loop a request to "
            "`/slow`, which sleeps 50 ms, as an app waiting on a database now and then. The "
            "figure is both wrks' requests per second; p50 and p99 are the fast requests' "
            "alone, from their own wrk. Slow requests can be no more than 6 / 0.050 s = "
            "120 req/s: a server that falls far below its A figure lets the sleeping "
            "requests hold up the fast ones. Servers run in their concurrent configuration."
        ),
        profile=MIXED,
        workloads=(Workload("mixed_hello"), Workload("mixed_flask_json")),
        connections=58,
        side_load=SideLoad(connections=6, path="/slow", name="slow"),
        main_name="fast",
        compare_with="granian",
        in_process_ceiling=False,
    ),
    Scenario(
        key="T",
        title="T: TLS, keep-alive",
        explanation=(
            "As A (one server process on CPU 0, 32 keep-alive connections from wrk on CPU 1) "
            "over HTTPS, with a P-256 certificate made for the run. Every server negotiates "
            "TLS 1.3; each connection shakes hands once, so the figure is mostly the cost "
            "of encrypting and decrypting each request and answer. uWSGI takes no part: "
            "its pyuwsgi wheel is built "
            "without TLS (no `--https-socket`); waitress, cheroot's command line and "
            "bjoern have no TLS either."
        ),
        profile=TLS,
        workloads=(Workload("hello"), Workload("flask_json")),
        connections=32,
        compare_with="granian",
        tls=True,
    ),
)


MEMORY_KEY = "M"
"""--scenarios key of the idle memory section, which runs no load (harness/memory.py)."""


def select_scenarios(keys: list[str] | None, quick: bool) -> list[Scenario]:
    """Scenarios named by --scenarios, or all (the quick subset with --quick)."""
    if keys is not None:
        known = {scenario.key for scenario in SCENARIOS} | {MEMORY_KEY}
        unknown = set(keys) - known
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {sorted(known)}")
        return [scenario for scenario in SCENARIOS if scenario.key in keys]
    return [scenario for scenario in SCENARIOS if scenario.in_quick or not quick]


def select_workloads(scenario: Scenario, quick: bool) -> list[Workload]:
    return [workload for workload in scenario.workloads if workload.in_quick or not quick]


def memory_selected(keys: list[str] | None, quick: bool) -> bool:
    """Whether the idle memory section runs: named by --scenarios, or in a full run."""
    return MEMORY_KEY in keys if keys is not None else not quick
