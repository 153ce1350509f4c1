"""Running wrk against a server and reading its report."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

WRK_CPU = 1
# wrk's own 2 s default would count slow answers as errors and cut the tail
# off the latency distribution we want to report.
WRK_TIMEOUT = "10s"

_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS_PER_SECOND = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True)
class LoadSpec:
    connections: int
    seconds: float
    headers: tuple[str, ...] = ()
    script: Path | None = None
    path: str = "/"
    """Request target, joined to the server's base URL."""


@dataclass
class WrkResult:
    requests_per_second: float = 0.0
    requests: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    failure: str | None = None

    @property
    def error_count(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx

    @property
    def flagged(self) -> bool:
        return self.failure is not None or self.error_count > 0


def build_command(base_url: str, load: LoadSpec) -> list[str]:
    """wrk's argv for `load` against `base_url` (scheme, host and port, no path)."""
    seconds = max(1, round(load.seconds))
    command = [
        "taskset", "-c", str(WRK_CPU), "wrk", "-t1", f"-c{load.connections}",
        f"-d{seconds}s", "--latency", "--timeout", WRK_TIMEOUT,
    ]  # fmt: skip
    for header in load.headers:
        command += ["-H", header]
    if load.script is not None:
        command += ["-s", str(load.script)]
    command.append(base_url + load.path)
    return command


def parse_report(text: str) -> WrkResult:
    """Reads wrk's --latency report; a report without Requests/sec is a failure."""
    result = WrkResult()
    rate = _REQUESTS_PER_SECOND.search(text)
    if rate is None:
        result.failure = "wrk printed no Requests/sec"
        return result
    result.requests_per_second = float(rate.group(1))
    total = _TOTAL.search(text)
    if total:
        result.requests = int(total.group(1))
    # With no request answered wrk still prints percentiles, all 0.00us: no latency at all.
    percentiles = _PERCENTILE.findall(text) if result.requests else []
    for percentile, value, unit in percentiles:
        milliseconds = float(value) * _UNIT_SECONDS[unit] * 1000.0
        if percentile == "50":
            result.latency_p50_ms = milliseconds
        elif percentile == "99":
            result.latency_p99_ms = milliseconds
    errors = _SOCKET_ERRORS.search(text)
    if errors:
        names = ("connect", "read", "write", "timeout")
        result.socket_errors = {
            name: int(count)
            for name, count in zip(names, errors.groups(), strict=True)
            if int(count)
        }
    non_2xx = _NON_2XX.search(text)
    if non_2xx:
        result.non_2xx = int(non_2xx.group(1))
    return result


def run_wrk(base_url: str, loads: tuple[LoadSpec, ...], log_path: Path) -> list[WrkResult]:
    """Runs one wrk per load at the same time, all on wrk's CPU; one result per load.

    Never raises for a failed run: the result carries the failure instead.

    Each wrk keeps its own latency histogram, so requests of one load are timed
    apart from the others' even though they share the server.
    """
    commands = [build_command(base_url, load) for load in loads]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    deadline = time.monotonic() + max(load.seconds for load in loads) + 30
    try:
        return [
            _finish(command, process, deadline, log_path)
            for command, process in zip(commands, processes, strict=True)
        ]
    finally:
        # A harness stopped by a signal mid-run leaves no wrk behind.
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _finish(
    command: list[str], process: subprocess.Popen[str], deadline: float, log_path: Path
) -> WrkResult:
    try:
        stdout, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return WrkResult(failure="wrk did not finish in time")
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n{stdout}{stderr}\n")
    result = parse_report(stdout)
    if process.returncode != 0 and result.failure is None:
        result.failure = f"wrk exited with code {process.returncode}"
    return result
