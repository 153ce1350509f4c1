"""Measuring one server on one workload: start, wait, load, sample memory, stop."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
from harness.wrk import LoadSpec, WrkResult, run_wrk

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


def server_environment(bench_dir: Path, repo_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The repository root makes corral importable even when its editable
    # install failed; bench/ makes apps.py importable for every server.
    paths = [str(bench_dir), str(repo_dir), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def load_for(scenario: Scenario, workload: Workload, settings: RunSettings) -> LoadSpec:
    script = settings.bench_dir / workload.script if workload.script else None
    return LoadSpec(
        connections=scenario.connections,
        seconds=settings.seconds,
        headers=scenario.headers,
        script=script,
    )


def _to_run(workload: Workload, result: WrkResult) -> Run:
    errors = None
    if result.failure:
        errors = result.failure
    elif result.flagged:
        parts = [f"{name} {count}" for name, count in result.socket_errors.items()]
        if result.non_2xx:
            parts.append(f"non-2xx {result.non_2xx}")
        errors = ", ".join(parts)
    return Run(
        figure=workload.figure(result.requests_per_second),
        requests_per_second=result.requests_per_second,
        latency_p50_ms=result.latency_p50_ms,
        latency_p99_ms=result.latency_p99_ms,
        errors=errors,
    )


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
    server = start_server(argv, scenario.server_cpus, settings, port, log_path)
    process = server.process
    try:
        measurement.failure = start_failure(server)
        if measurement.failure is not None:
            return measurement
        measurement.rss_idle = measure_tree_rss(server.pid)
        url = f"http://{LOOPBACK}:{port}/"
        load = load_for(scenario, workload, settings)
        warmup = LoadSpec(load.connections, WARMUP_SECONDS, load.headers, load.script)
        run_wrk(url, warmup, log_path)
        for _ in range(settings.runs):
            time.sleep(PAUSE_BETWEEN_RUNS_SECONDS)
            measurement.runs.append(_to_run(workload, run_wrk(url, load, log_path)))
            if process.poll() is not None:
                measurement.failure = f"server exited with code {process.returncode} under load"
                break
        if measurement.failure is None:
            measurement.rss_after = measure_tree_rss(server.pid)
        return measurement
    finally:
        stop_process_group(process)


def start_server(
    argv: list[str], cpus: str, settings: RunSettings, port: int, log_path: Path
) -> ServerProcess:
    """Starts argv on `cpus`, its output in a fresh `log_path`; the caller stops it."""
    log_path.unlink(missing_ok=True)
    process = start_pinned(argv, cpus, settings.bench_dir, settings.server_env, log_path)
    return ServerProcess(process=process, port=port, log_path=log_path)


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
