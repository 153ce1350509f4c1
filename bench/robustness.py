"""corral and its peers under hostile clients: slow heads, slow bodies, slow readers,
range requests, pipelining non-readers and silent connections.

    bench/.venv/bin/python bench/robustness.py [--quick] [--seconds N]
        [--only corral,gunicorn,waitress] [--attacks slow-body-8,idle-200] [--output FILE]

(`bench/run` builds bench/.venv.) For each server configuration and each attack, in one
run: a fresh server serves `apps:robustness` on 127.0.0.1; the attack starts and its
connections open; then for N seconds (60 by default, 10 with --quick) a normal client asks
`GET /` every 200 ms on a new connection, each request with a 5 s deadline, while the
server's memory (RSS of its process tree) is sampled and its log watched. The attack is
then stopped, the server given 10 s to answer again and stopped too. Every child process
is killed and every socket closed when the run ends, however it ends. The report
(docs/robustness.md unless --output) is rewritten by every run; logs go to
bench/results-logs/robustness/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from harness.attacks import (
    ATTACKS,
    Attack,
    IdleConnections,
    NormalClient,
    NormalOutcome,
    PipeliningNonReaders,
    SlowHttpTest,
    all_cpus,
)
from harness.environment import corral_revision, describe_machine, package_version
from harness.processes import (
    LOOPBACK,
    ServerProcess,
    children_by_parent,
    find_free_port,
    measure_tree_rss,
    stop_process_group,
    wait_until_answering,
)
from harness.report import MISSING
from harness.runner import RunSettings, server_environment, slug, start_failure, start_server
from harness.servers import ServerVariant

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
APP = "robustness"
FULL_SECONDS, QUICK_SECONDS = 60.0, 10.0
# The longest an attack's connections take to open before the normal client starts.
RAMP_LIMIT_SECONDS = 6.0
RECOVERY_SECONDS = 10.0
MEMORY_SAMPLE_SECONDS = 0.5
_CORRAL = "{python} -m corral -b {host}:{port}"
_GUNICORN = "{bin}/gunicorn -b {host}:{port}"


def _server(family: str, label: str, argv: str, import_name: str) -> ServerVariant:
    return ServerVariant(family, label, frozenset({APP}), tuple(argv.split()), import_name)


# Each server with a thread pool of 8 per process, or with gevent: the sizes the
# attacks of 8 connections are meant to exhaust. Timeouts are every server's defaults.
SERVERS: tuple[ServerVariant, ...] = (
    _server("corral", "corral --threads 8", f"{_CORRAL} --threads 8 apps:{{app}}", "corral"),
    _server(
        "corral",
        "corral -w 2 -k thread --threads 8",
        f"{_CORRAL} -w 2 -k thread --threads 8 apps:{{app}}",
        "corral",
    ),
    _server("corral", "corral -w 2 -k gevent", f"{_CORRAL} -w 2 -k gevent apps:{{app}}", "corral"),
    _server(
        "gunicorn",
        "gunicorn -w 2 -k gthread --threads 8",
        f"{_GUNICORN} -w 2 -k gthread --threads 8 apps:{{app}}",
        "gunicorn",
    ),
    _server(
        "gunicorn", "gunicorn -w 2 -k gevent", f"{_GUNICORN} -w 2 -k gevent apps:{{app}}", "gevent"
    ),
    _server(
        "waitress",
        "waitress --threads 8",
        "{bin}/waitress-serve --listen={host}:{port} --threads=8 apps:{app}",
        "waitress",
    ),
)


@dataclass
class Cell:
    """One server under one attack."""

    server: str
    attack: str
    failure: str | None = None
    requests: int = 0
    served: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    stayed_up: str = ""
    workers_killed: int | None = None
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    connections_peak: int = 0
    """Connections to the server open at once during the window, the normal client's too."""
    log_lines_per_minute: float = 0.0
    notes: list[str] = field(default_factory=list)


def worker_pids(root_pid: int) -> set[int]:
    return set(children_by_parent().get(root_pid, []))


def open_connections(port: int) -> int:
    """Established TCP connections to `port` on the server's side (IPv4 loopback)."""
    suffix = f":{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            # local address, remote address, state: 01 is ESTABLISHED.
            if fields[1].endswith(suffix) and fields[3] == "01":
                count += 1
    return count


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_lines_between(path: Path, start: int, end: int) -> int:
    with path.open("rb") as log:
        log.seek(start)
        text = log.read(max(0, end - start))
    return sum(1 for line in text.splitlines() if line.strip())


def start_attack(
    attack: Attack, port: int, seconds: float, log_path: Path
) -> SlowHttpTest | IdleConnections | PipeliningNonReaders:
    if attack.slowhttptest:
        url = f"http://{LOOPBACK}:{port}{attack.path}"
        return SlowHttpTest(attack, url, seconds, log_path, BENCH_DIR)
    if attack.key.startswith("pipelining"):
        return PipeliningNonReaders(port, attack.connections)
    return IdleConnections(port, attack.connections)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def record_outcomes(cell: Cell, outcomes: list[NormalOutcome]) -> None:
    cell.requests = len(outcomes)
    served = [outcome.seconds * 1000 for outcome in outcomes if outcome.ok]
    cell.served = len(served)
    cell.p50_ms = statistics.median(served) if served else None
    cell.p99_ms = percentile(served, 0.99)
    for outcome in outcomes:
        if not outcome.ok:
            cell.errors[outcome.error] = cell.errors.get(outcome.error, 0) + 1


def run_cell(variant: ServerVariant, attack: Attack, window: float, settings: RunSettings) -> Cell:
    cell = Cell(variant.label, attack.key)
    if not variant.is_installed():
        cell.failure = f"not installed ({variant.import_name} does not import)"
        return cell
    port = find_free_port()
    name = f"{slug(variant.label)}-{attack.key}"
    log_path = settings.log_dir / f"{name}.log"
    server = start_server(
        variant.argv(settings.python, LOOPBACK, port, APP), all_cpus(), settings, port, log_path
    )
    attacker: SlowHttpTest | IdleConnections | PipeliningNonReaders | None = None
    try:
        cell.failure = start_failure(server)
        if cell.failure is not None:
            return cell
        workers_before = worker_pids(server.pid)
        cell.rss_before_kib = measure_tree_rss(server.pid).rss_kib
        ramp = min(RAMP_LIMIT_SECONDS, attack.connections / attack.ramp_connections_per_second + 1)
        attacker = start_attack(
            attack, port, ramp + window + 5, settings.log_dir / f"{name}-attack.log"
        )
        if isinstance(attacker, IdleConnections) and attacker.failed:
            cell.notes.append(f"{attacker.failed} silent connections could not connect")
        pace = threading.Event()  # never set: its timed waits pace the sampling
        pace.wait(ramp)
        log_start = log_size(log_path)
        client = NormalClient(port)
        client_thread = threading.Thread(target=client.run, args=(window,), daemon=True)
        client_thread.start()
        while client_thread.is_alive():
            cell.rss_peak_kib = max(cell.rss_peak_kib, measure_tree_rss(server.pid).rss_kib)
            cell.connections_peak = max(cell.connections_peak, open_connections(port))
            pace.wait(MEMORY_SAMPLE_SECONDS)
        log_end = log_size(log_path)
        record_outcomes(cell, client.outcomes)
        cell.log_lines_per_minute = log_lines_between(log_path, log_start, log_end) * 60 / window
        if isinstance(attacker, SlowHttpTest) and attacker.process.poll() not in (None, 0):
            cell.notes.append(f"slowhttptest exited with code {attacker.process.returncode}")
        if isinstance(attacker, PipeliningNonReaders):
            cell.notes.append(f"{attacker.bytes_sent / 1e6:.1f} MB of requests sent")
        attacker.stop()
        attacker = None
        cell.stayed_up = stayed_up(server.process, server.port, log_path)
        if workers_before:
            cell.workers_killed = len(workers_before - worker_pids(server.pid))
        return cell
    finally:
        if attacker is not None:
            attacker.stop()
        stop_process_group(server.process, grace_seconds=5.0)


def stayed_up(process: subprocess.Popen[bytes], port: int, log_path: Path) -> str:
    if process.poll() is not None:
        return f"no: exited with code {process.returncode}"
    started = time.monotonic()
    problem = wait_until_answering(ServerProcess(process, port, log_path), RECOVERY_SECONDS)
    if problem is not None:
        return f"no: {problem} after the attack"
    waited = time.monotonic() - started
    return "yes" if waited < 1 else f"yes, answering {waited:.0f} s after the attack"


def render(
    cells: list[Cell], command: str, started_utc: str, revision: str, window: float, quick: bool
) -> str:
    attacks = [attack for attack in ATTACKS if any(cell.attack == attack.key for cell in cells)]
    servers = list(dict.fromkeys(cell.server for cell in cells))
    by_key = {(cell.server, cell.attack): cell for cell in cells}
    versions = ", ".join(
        f"{name} {package_version(name) or 'not installed'}"
        for name in ("gunicorn", "gevent", "waitress")
    )
    slowhttptest = _command_output(["slowhttptest", "-h"]).split("version ")[-1].split()[0]
    lines = [
        "# Robustness under hostile clients",
        "",
        f"Generated by `{command}` on {started_utc}, corral at commit "
        f"{revision}. Every run rewrites this file: do not edit it by hand.",
        "",
        f"Machine: {describe_machine()}. Peers: {versions}; slowhttptest {slowhttptest}.",
        "",
    ]
    if quick:
        lines += [
            f"**A `--quick` run ({window:g} s per cell)**: a trial of the harness. The figures "
            "to quote come from a full run (60 s per cell).",
            "",
        ]
    lines += [
        "## Method",
        "",
        f"Each cell is a fresh server serving `bench/apps.py:{APP}` on 127.0.0.1 (not pinned "
        "to CPUs; every server's timeouts at their defaults). The attack starts, its "
        f"connections get up to {RAMP_LIMIT_SECONDS:g} s to open, then for {window:g} s a "
        "normal client sends `GET /` every 200 ms on a new connection, each with a 5 s "
        "deadline for the whole answer. *Served* is the share of those requests answered 200 "
        "in time; p50 and p99 are over the served ones. *Stayed up*: the server process "
        f"was alive when the attack stopped and answered within {RECOVERY_SECONDS:g} s. "
        "*Workers killed*: worker processes present before the attack and gone after it "
        "("
        + MISSING
        + " for servers of one process). *RSS*: VmRSS summed over the server's process tree, "
        "before the attack and its peak during the window. *Log lines/min*: lines the "
        "server wrote to its output (its error log; no server keeps an access log here) "
        "during the window. *Connections*: the most TCP connections to the server "
        "established at once during the window (from `/proc/net/tcp`), the normal "
        "client's included: how much of the attack reached the server.",
        "",
        "Servers: " + "; ".join(f"`{server}`" for server in servers) + ". gunicorn runs its "
        "threaded worker with 8 threads, as corral's `--threads 8`; gevent workers keep "
        "their default 1,000 connections; waitress keeps its default connection limit (100) "
        "and timeouts.",
        "",
        "Attacks:",
        "",
    ]
    lines += [f"- **{attack.title}** (`{attack.key}`): {attack.explanation}" for attack in attacks]
    lines += ["", "## Served normal requests", ""]
    header = ["server", *(attack.title for attack in attacks)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for server in servers:
        row = [server]
        for attack in attacks:
            cell = by_key.get((server, attack.key))
            row.append(_served(cell) if cell else MISSING)
        lines.append("| " + " | ".join(row) + " |")
    for attack in attacks:
        lines += ["", f"## {attack.title}", ""]
        header = [
            "server", "served", "p50 ms", "p99 ms", "stayed up", "workers killed",
            "RSS before → peak", "log lines/min", "connections", "failed requests, notes",
        ]  # fmt: skip
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for server in servers:
            cell = by_key.get((server, attack.key))
            if cell is None:
                continue
            if cell.failure:
                lines.append(f"| {server} |" + f" {MISSING} |" * 8 + f" {cell.failure} |")
                continue
            killed = MISSING if cell.workers_killed is None else str(cell.workers_killed)
            failed = [f"{count}× {error}" for error, count in sorted(cell.errors.items())]
            lines.append(
                f"| {server} | {_served(cell)} | {_milliseconds(cell.p50_ms)} | "
                f"{_milliseconds(cell.p99_ms)} | {cell.stayed_up} | {killed} | "
                f"{cell.rss_before_kib / 1024:.0f} → {cell.rss_peak_kib / 1024:.0f} MiB | "
                f"{cell.log_lines_per_minute:.0f} | {cell.connections_peak:,} | "
                f"{'; '.join(failed + cell.notes)} |"
            )
    return "\n".join(lines) + "\n"


def _served(cell: Cell) -> str:
    if cell.failure or not cell.requests:
        return MISSING
    return f"{cell.served / cell.requests:.0%} ({cell.served}/{cell.requests})"


def _milliseconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _command_output(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout + completed.stderr


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _stop_on_terminate(signal_number: int, frame: FrameType | None) -> None:
    # Unwinds through the try/finally blocks that stop each server and attack.
    raise SystemExit(128 + signal_number)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/robustness.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s per cell")
    parser.add_argument("--seconds", type=float, help="seconds the normal client runs per cell")
    parser.add_argument("--only", type=_comma_list, help="server families, e.g. corral,waitress")
    parser.add_argument(
        "--attacks", type=_comma_list, help="attack keys: " + ", ".join(a.key for a in ATTACKS)
    )
    parser.add_argument("--output", type=Path, default=REPO_DIR / "docs" / "robustness.md")
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_terminate)
    signal.signal(signal.SIGHUP, _stop_on_terminate)
    window = arguments.seconds or (QUICK_SECONDS if arguments.quick else FULL_SECONDS)
    attacks = [a for a in ATTACKS if arguments.attacks is None or a.key in arguments.attacks]
    servers = [s for s in SERVERS if arguments.only is None or s.family in arguments.only]
    if not attacks or not servers:
        parser.error("no attack or no server selected")
    log_dir = BENCH_DIR / "results-logs" / "robustness"
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in log_dir.glob("*.log"):
        stale.unlink()
    settings = RunSettings(
        bench_dir=BENCH_DIR,
        log_dir=log_dir,
        python=Path(sys.executable),
        server_env=server_environment(BENCH_DIR, REPO_DIR),
        runs=1,
        seconds=window,
    )
    command = shlex.join(["bench/.venv/bin/python", "bench/robustness.py", *argv])
    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # The code the run starts on, named before it begins.
    revision = corral_revision(REPO_DIR)
    print(f"robustness: {command}\nrobustness: logs in {log_dir}", flush=True)
    cells: list[Cell] = []
    for attack in attacks:
        print(f"\n== {attack.title}", flush=True)
        for variant in servers:
            print(f"   {variant.label:<40}", end=" ", flush=True)
            cell = run_cell(variant, attack, window, settings)
            cells.append(cell)
            print(cell.failure or f"served {_served(cell)}, up: {cell.stayed_up}", flush=True)
    arguments.output.write_text(
        render(cells, command, started_utc, revision, window, arguments.quick)
    )
    (log_dir / "robustness.json").write_text(
        json.dumps([asdict(cell) for cell in cells], indent=2) + "\n"
    )
    print(f"\nrobustness: wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
