"""Starting, probing, measuring and stopping server processes.

Every server runs in its own session, so one killpg reaches its master, its
workers and anything they forked, even after the master has exited.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


def find_free_port() -> int:
    """A port nothing listens on now; the small race until the server binds is accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tls: bool = False
    """Whether it answers HTTPS (with a certificate nobody verifies) instead of HTTP."""

    @property
    def pid(self) -> int:
        return self.process.pid


def start_pinned(
    argv: list[str], cpus: str, cwd: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Starts argv on a taskset CPU list ("0", "0,1") in a new session, output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ taskset -c {cpus} {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_answering(server: ServerProcess, deadline_seconds: float) -> str | None:
    """Polls with GET / until any HTTP answer; returns None, or why it never came."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        exit_code = server.process.poll()
        if exit_code is not None:
            return f"exited with code {exit_code} before answering"
        connection = _probe_connection(server)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return None
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            connection.close()
    return f"did not answer within {deadline_seconds:.0f} s"


def _probe_connection(server: ServerProcess) -> http.client.HTTPConnection:
    if not server.tls:
        return http.client.HTTPConnection(LOOPBACK, server.port, timeout=1.0)
    # The run's certificate comes from a CA made for it: only its liveness matters here.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(LOOPBACK, server.port, timeout=1.0, context=context)


def stop_process_group(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
    """TERM to the whole group, KILL after grace_seconds, then KILL any stragglers."""
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    # Workers orphaned by a master that exited first are still in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name in field 2 may hold spaces and parentheses: split after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def _vmrss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class MemorySample:
    rss_kib: int
    process_count: int
    # The largest single process: with a master and one worker, the worker.
    largest_kib: int = 0


def measure_tree_rss(root_pid: int) -> MemorySample:
    """VmRSS summed over root_pid and all its descendants (taskset execs in place).

    Summing counts pages shared after fork twice; for a master plus one worker
    this overstates by roughly the master's imported code, and the process count
    is reported so the reader can tell.
    """
    children = children_by_parent()
    pending = [root_pid]
    total_kib = 0
    largest_kib = 0
    count = 0
    while pending:
        pid = pending.pop()
        rss = _vmrss_kib(pid)
        if rss:
            total_kib += rss
            largest_kib = max(largest_kib, rss)
            count += 1
        pending.extend(children.get(pid, []))
    return MemorySample(rss_kib=total_kib, process_count=count, largest_kib=largest_kib)


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory in KiB, from /proc/PID/status and /proc/PID/smaps_rollup.

    RSS counts every resident page; PSS divides each shared page among the
    processes sharing it; USS (private pages only) is what the process alone
    holds, so what one more worker of the same kind would add.
    """

    pid: int
    rss_kib: int
    pss_kib: int
    uss_kib: int


def measure_process(pid: int) -> ProcessMemory | None:
    """None when the process is gone; PSS and USS are 0 where smaps_rollup is unreadable."""
    rss = _vmrss_kib(pid)
    if not rss:
        return None
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0])
    except OSError:
        pass
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return ProcessMemory(pid=pid, rss_kib=rss, pss_kib=fields.get("Pss", 0), uss_kib=uss)
