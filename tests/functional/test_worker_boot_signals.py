"""Signals that reach a worker while it boots: remembered, then acted on once it has booted,
as gunicorn's workers do, instead of killing it half-way."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import pytest

from tests.functional.test_master import get, wait_until
from tests.server import RunningServer

APP = "tests.apps.gated_boot:app"


def waiting_workers(gate: Path) -> set[int]:
    return {int(path.name.rsplit(".", 1)[1]) for path in gate.parent.glob(f"{gate.name}.waiting.*")}


def stop_while_a_worker_boots(server: RunningServer, gate: Path, signum: int) -> int:
    """Signal the master, let the booting worker finish booting, and return the master's
    status."""
    server.process.send_signal(signum)
    name = signal.Signals(signum).name.removeprefix("SIG")
    assert server.wait_for_log(f"Received {name}"), server.log
    gate.touch()
    code = server.process.wait(20)
    server.reader.join(5)
    return code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT], ids=["TERM", "QUIT"])
def test_a_signal_to_the_master_while_its_first_worker_boots(tmp_path: Path, signum: int) -> None:
    gate = tmp_path / "gate"
    server = RunningServer(APP, ["-w", "1"], env={"GATED_BOOT_GATE": str(gate)})
    try:
        assert wait_until(lambda: len(waiting_workers(gate)) == 1), server.log
        (worker,) = waiting_workers(gate)
        code = stop_while_a_worker_boots(server, gate, signum)
    finally:
        server.stop(signal.SIGKILL)
    name = signal.Signals(signum).name.removeprefix("SIG")
    assert code == 0, server.log
    assert f"Worker {worker} stopping: {name} arrived while it booted" in server.log
    assert f"Worker {worker} exited" in server.log
    assert "killed by" not in server.log


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_term_while_a_max_requests_replacement_boots(tmp_path: Path, worker_class: str) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    options = ["-w", "1", "-k", worker_class, "--max-requests", "2"]
    server = RunningServer(APP, options, env={"GATED_BOOT_GATE": str(gate)})
    try:
        assert wait_until(lambda: "Booted worker" in server.log, 15), server.log
        gate.unlink()
        get(server.port)
        get(server.port)
        assert wait_until(lambda: len(waiting_workers(gate)) == 1), server.log
        (replacement,) = waiting_workers(gate)
        code = stop_while_a_worker_boots(server, gate, signal.SIGTERM)
    finally:
        server.stop(signal.SIGKILL)
    assert code == 0, server.log
    assert f"Worker {replacement} stopping: TERM arrived while it booted" in server.log
    assert f"Worker {replacement} exited" in server.log
    assert "killed by" not in server.log


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie no one has reaped yet counts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


def bindable(port: int) -> bool:
    """True when a new server could listen on `port` again."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


@pytest.mark.parametrize("booted", [False, True], ids=["booting", "serving"])
def test_workers_do_not_outlive_a_master_killed_outright(tmp_path: Path, booted: bool) -> None:
    """SIGKILL (the OOM killer, `kill -9`) gives the master no chance to stop its workers:
    they go with it, a booting one (an import that hangs) killed, a serving one drained,
    and the port is free for the next server."""
    gate = tmp_path / "gate"
    if booted:
        gate.touch()
    server = RunningServer(APP, ["-w", "2"], env={"GATED_BOOT_GATE": str(gate)})
    try:
        if booted:
            assert wait_until(lambda: server.log.count("Booted worker") == 2, 15), server.log
            get(server.port)
            workers = [int(pid) for pid in re.findall(r"Booted worker (\d+)", server.log)]
        else:
            assert wait_until(lambda: len(waiting_workers(gate)) == 2), server.log
            workers = sorted(waiting_workers(gate))
        assert len(workers) == 2, server.log
        server.process.kill()
        server.process.wait(5)
        assert wait_until(lambda: all(gone(pid) for pid in workers), 10), workers
        assert bindable(server.port)
    finally:
        server.stop(signal.SIGKILL)
