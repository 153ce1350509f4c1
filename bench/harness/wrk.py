"""Running wrk against a server and reading its report."""

from __future__ import annotations

import re
import subprocess
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


def build_command(url: str, load: LoadSpec) -> list[str]:
    seconds = max(1, round(load.seconds))
    command = [
        "taskset", "-c", str(WRK_CPU), "wrk", "-t1", f"-c{load.connections}",
        f"-d{seconds}s", "--latency", "--timeout", WRK_TIMEOUT,
    ]  # fmt: skip
    for header in load.headers:
        command += ["-H", header]
    if load.script is not None:
        command += ["-s", str(load.script)]
    command.append(url)
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
    for percentile, value, unit in _PERCENTILE.findall(text):
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


def run_wrk(url: str, load: LoadSpec, log_path: Path) -> WrkResult:
    """Runs wrk pinned to its own CPU; never raises for a failed run, flags it instead."""
    command = build_command(url, load)
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=load.seconds + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return WrkResult(failure="wrk did not finish in time")
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n{completed.stdout}{completed.stderr}\n")
    result = parse_report(completed.stdout)
    if completed.returncode != 0 and result.failure is None:
        result.failure = f"wrk exited with code {completed.returncode}"
    return result
