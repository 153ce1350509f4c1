"""Section M: the memory one worker process holds, idle and after some requests.

Each server of the "memory" profile serves the Flask app with one worker (or as
one process, where it has no master). No load generator runs: after the start
probe and a short settle the harness reads the worker's RSS, PSS and USS, sends
a fixed number of requests one at a time, and reads them again.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass, field

from harness.processes import (
    LOOPBACK,
    ProcessMemory,
    children_by_parent,
    find_free_port,
    measure_process,
    stop_process_group,
)
from harness.runner import SERVER_CPU, RunSettings, slug, start_failure, start_server
from harness.scenarios import MEMORY_KEY
from harness.servers import MEMORY, ServerVariant, select_variants

TITLE = "M: memory of one idle worker"
APP = "flask_json"
# Threads, gevent's hub and lazy imports in the first requests settle within this.
SETTLE_SECONDS = 1.0
REQUESTS_BETWEEN_SAMPLES = 500
REQUEST_TIMEOUT_SECONDS = 5.0
EXPLANATION = (
    f"Each server serves `{APP}` (Flask) with one worker, on CPU 0, and gets no load. "
    f"*Idle* is read {SETTLE_SECONDS:g} s after its first answer (the start probe, one "
    f"request); *after* follows {REQUESTS_BETWEEN_SAMPLES} more requests sent one at a "
    "time. The worker is the master's child where there is a master, else the one "
    "process. RSS is VmRSS from `/proc/PID/status`; PSS and USS come from "
    "`/proc/PID/smaps_rollup`: USS (private pages) is what one more worker of the kind "
    "adds, PSS shares each page inherited from the master between the two, so master + "
    "worker PSS is what the whole server takes from the machine. Figures in MiB."
)
REFERENCE = "gunicorn sync"


@dataclass
class MemoryMeasurement:
    label: str
    family: str
    reference: str | None = None
    master: ProcessMemory | None = None
    """The supervising process, None for a server that runs as one process."""
    worker_idle: ProcessMemory | None = None
    worker_after: ProcessMemory | None = None
    process_count: int = 0
    failure: str | None = None
    notes: list[str] = field(default_factory=list)


def _master_and_worker(root_pid: int) -> tuple[ProcessMemory | None, ProcessMemory | None, int]:
    """(master, worker, process count): the root's first child is the worker, if any."""
    children = sorted(children_by_parent().get(root_pid, []))
    root = measure_process(root_pid)
    if not children:
        return None, root, 1 if root else 0
    return root, measure_process(children[0]), 1 + len(children)


def _send_requests(port: int, count: int) -> str | None:
    """count GETs, one at a time; http.client reconnects when the server closes."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        for _ in range(count):
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                return f"answered {response.status}"
    except (OSError, http.client.HTTPException) as error:
        return f"request failed: {error!r}"
    finally:
        connection.close()
    return None


def measure_variant_memory(variant: ServerVariant, settings: RunSettings) -> MemoryMeasurement:
    measurement = MemoryMeasurement(
        label=variant.label, family=variant.family, reference=variant.reference
    )
    port = find_free_port()
    argv = variant.argv(settings.python, LOOPBACK, port, APP)
    log_path = settings.log_dir / f"{MEMORY_KEY}-{APP}-{slug(variant.label)}.log"
    server = start_server(argv, str(SERVER_CPU), settings, port, log_path)
    try:
        measurement.failure = start_failure(server)
        if measurement.failure is not None:
            return measurement
        time.sleep(SETTLE_SECONDS)
        master, worker, count = _master_and_worker(server.pid)
        measurement.master, measurement.worker_idle = master, worker
        measurement.process_count = count
        problem = _send_requests(port, REQUESTS_BETWEEN_SAMPLES)
        if problem is not None:
            measurement.notes.append(problem)
        _, measurement.worker_after, _ = _master_and_worker(server.pid)
        after = measurement.worker_after
        if worker is not None and after is not None and after.pid != worker.pid:
            measurement.notes.append("worker replaced between samples")
        return measurement
    finally:
        stop_process_group(server.process)


def run_memory_section(families: set[str] | None, settings: RunSettings) -> list[MemoryMeasurement]:
    print(f"\n== {TITLE}: {APP}", flush=True)
    rows: list[MemoryMeasurement] = []
    for variant in select_variants(MEMORY, families, quick=False):
        print(f"   {variant.label:<40}", end=" ", flush=True)
        if not variant.is_installed():
            rows.append(
                MemoryMeasurement(
                    label=variant.label,
                    family=variant.family,
                    failure=f"not installed ({variant.import_name} does not import)",
                )
            )
        else:
            rows.append(measure_variant_memory(variant, settings))
        row = rows[-1]
        if row.worker_idle is None:
            print(row.failure or "no worker found", flush=True)
        else:
            print(
                f"worker RSS {row.worker_idle.rss_kib / 1024:.1f} MiB idle, "
                f"USS {row.worker_idle.uss_kib / 1024:.1f} MiB",
                flush=True,
            )
    return rows
