"""Measuring one server on one workload: start, wait, load, sample memory, stop."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.certificates import CertificateFiles
from harness.cpu import busy_share, cpu_times
from harness.measurements import Measurement, Run
from harness.processes import (
    LOOPBACK,
    ServerProcess,
    measure_tree_rss,
    start_pinned,
    stop_process_group,
    wait_until_answering,
)
from harness.scenarios import Scenario, Workload
from harness.wrk import WRK_CPU, LoadSpec, WrkResult, run_wrk

SERVER_CPU = 0
START_DEADLINE_SECONDS = 30.0
# Long enough for lazy imports, Flask's first request and thread pools to fill.
WARMUP_SECONDS = 1.0
# Each wrk run opens fresh connections; the pause lets the server reap the
# previous run's, or servers with a connection limit (waitress) refuse the new
# ones and the SYN retry adds a second to the tail latency.
PAUSE_BETWEEN_RUNS_SECONDS = 1.0


@dataclass(frozen=True)
class RunSettings:
    bench_dir: Path
    log_dir: Path
    python: Path
    server_env: dict[str, str]
    runs: int
    seconds: float
    certificate: CertificateFiles | None = None
    """For scenarios over TLS; written into the run's temporary folder."""


def server_environment(bench_dir: Path, repo_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The repository root makes corral importable even when its editable
    # install failed; bench/ makes apps.py importable for every server.
    paths = [str(bench_dir), str(repo_dir), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def loads_for(
    scenario: Scenario, workload: Workload, bench_dir: Path, seconds: float
) -> tuple[LoadSpec, ...]:
    """The scenario's own load, then its side load if it has one."""
    script = bench_dir / workload.script if workload.script else None
    load = LoadSpec(scenario.connections, seconds, scenario.headers, script)
    side = scenario.side_load
    if side is None:
        return (load,)
    return (load, LoadSpec(side.connections, seconds, scenario.headers, path=side.path))


def _errors(results: list[WrkResult], names: list[str]) -> str | None:
    parts: list[str] = []
    for result, name in zip(results, names, strict=True):
        prefix = f"{name}: " if name else ""
        if result.failure:
            parts.append(prefix + result.failure)
            continue
        found = [f"{kind} {count}" for kind, count in result.socket_errors.items()]
        if result.non_2xx:
            found.append(f"non-2xx {result.non_2xx}")
        # wrk counts only answered requests: a load whose connections the server never
        # serves would otherwise pass unseen.
        if result.requests == 0:
            found.append("no answer")
        parts += [prefix + part for part in found]
    return ", ".join(parts) or None


def _to_run(scenario: Scenario, workload: Workload, results: list[WrkResult]) -> Run:
    main, *sides = results
    total = sum(result.requests_per_second for result in results)
    names = [""]
    if scenario.side_load is not None:
        names = [scenario.main_name or "main", scenario.side_load.name]
    run = Run(
        figure=workload.figure(total),
        requests_per_second=total,
        latency_p50_ms=main.latency_p50_ms,
        latency_p99_ms=main.latency_p99_ms,
        errors=_errors(results, names),
    )
    if sides:
        run.side_requests_per_second = sides[0].requests_per_second
        run.side_latency_p50_ms = sides[0].latency_p50_ms
        run.side_latency_p99_ms = sides[0].latency_p99_ms
    return run


def last_log_line(log_path: Path) -> str:
    try:
        text = log_path.read_text(errors="replace")
        # Lines starting with "$ " are the commands the harness logged, not output.
        lines = [line for line in text.splitlines() if line and not line.startswith("$ ")]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def measure_under_load(
    argv: list[str],
    measurement: Measurement,
    scenario: Scenario,
    workload: Workload,
    settings: RunSettings,
    port: int,
) -> Measurement:
    """Runs argv on the scenario's server CPUs, then warm-up and timed wrk runs; always stops it."""
    log_path = settings.log_dir / f"{scenario.key}-{workload.app}-{slug(measurement.label)}.log"
    server = start_server(argv, scenario.server_cpus, settings, port, log_path, tls=scenario.tls)
    process = server.process
    try:
        measurement.failure = start_failure(server)
        if measurement.failure is not None:
            return measurement
        measurement.rss_idle = measure_tree_rss(server.pid)
        base_url = f"{'https' if scenario.tls else 'http'}://{LOOPBACK}:{port}"
        warmup = loads_for(scenario, workload, settings.bench_dir, WARMUP_SECONDS)
        run_wrk(base_url, warmup, log_path)
        loads = loads_for(scenario, workload, settings.bench_dir, settings.seconds)
        # wrk's CPU is its own unless the scenario gives the server that CPU too (C2).
        client_alone = str(WRK_CPU) not in scenario.server_cpus.split(",")
        for _ in range(settings.runs):
            time.sleep(PAUSE_BETWEEN_RUNS_SECONDS)
            before = cpu_times(WRK_CPU)
            results = run_wrk(base_url, loads, log_path)
            run = _to_run(scenario, workload, results)
            if client_alone:
                run.client_busy = busy_share(before, cpu_times(WRK_CPU))
            measurement.runs.append(run)
            if process.poll() is not None:
                measurement.failure = f"server exited with code {process.returncode} under load"
                break
        if measurement.failure is None:
            measurement.rss_after = measure_tree_rss(server.pid)
        return measurement
    finally:
        stop_process_group(process)


def start_server(
    argv: list[str],
    cpus: str,
    settings: RunSettings,
    port: int,
    log_path: Path,
    *,
    tls: bool = False,
) -> ServerProcess:
    """Starts argv on `cpus`, its output in a fresh `log_path`; the caller stops it."""
    log_path.unlink(missing_ok=True)
    process = start_pinned(argv, cpus, settings.bench_dir, settings.server_env, log_path)
    return ServerProcess(process=process, port=port, log_path=log_path, tls=tls)


def start_failure(server: ServerProcess) -> str | None:
    """None once the server answers; else why not, with its log's last line."""
    problem = wait_until_answering(server, START_DEADLINE_SECONDS)
    if problem is None:
        return None
    last_line = last_log_line(server.log_path)
    return f"failed to start: {problem}" + (f" ({last_line})" if last_line else "")


def slug(label: str) -> str:
    kept = [character if character.isalnum() else "-" for character in label.lower()]
    return "-".join(part for part in "".join(kept).split("-") if part)
