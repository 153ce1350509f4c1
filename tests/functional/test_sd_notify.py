"""systemd's Type=notify protocol: the test binds the datagram socket systemd would name
in NOTIFY_SOCKET and reads what corral sends on start, on HUP and on TERM."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from tests.server import (
    MODELS,
    SINGLE_PROCESS_MODELS,
    WORKER_MODELS,
    RunningServer,
    fetch,
    wait_until,
)
from tests.systemd import NotifySocket
from tests.tls import write_certificate

GATED_APP = "tests.apps.gated_boot:app"


def waiting_workers(gate: Path) -> set[str]:
    """Pids of the processes whose import of the gated app waits, or waited, on `gate`."""
    return {path.name.rsplit(".", 1)[1] for path in gate.parent.glob(f"{gate.name}.waiting.*")}


def test_a_master_says_ready_once_its_workers_boot_and_again_after_a_reload(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with NotifySocket(tmp_path / "notify") as systemd:
        server = start_server(
            GATED_APP,
            options=[*WORKER_MODELS["workers-thread"], "--graceful-timeout", "5"],
            env={"NOTIFY_SOCKET": systemd.value, "GATED_BOOT_GATE": str(gate)},
        )
        # Both workers are importing the app: listening is not yet serving.
        assert wait_until(lambda: len(waiting_workers(gate)) == 2, 15)
        turn_master_loop(server)
        assert systemd.pending() == []
        gate.touch()
        ready = systemd.receive()
        # From the master itself, as NotifyAccess=main requires.
        assert systemd.sender == server.process.pid
        assert ready == {
            "READY": "1",
            "MAINPID": str(server.process.pid),
            "STATUS": concurrency_line(server),
        }
        assert ready["STATUS"].endswith("= 8 requests at a time")
        assert fetch(server.port)[0] == 200

        # HUP: RELOADING=1 at once, READY=1 only when the new workers have booted.
        first_workers = waiting_workers(gate)
        gate.unlink()
        server.process.send_signal(signal.SIGHUP)
        reloading = systemd.receive()
        assert reloading["RELOADING"] == "1"
        assert 0 < int(reloading["MONOTONIC_USEC"]) <= time_monotonic_usec()
        assert wait_until(lambda: len(waiting_workers(gate) - first_workers) == 2, 15)
        turn_master_loop(server)
        assert systemd.pending() == []
        gate.touch()
        again = systemd.receive()
        assert systemd.sender == server.process.pid
        assert (again["READY"], again["MAINPID"]) == ("1", str(server.process.pid))
        assert again["STATUS"] == ready["STATUS"]
        assert server.wait_for_log("Reload complete", 5), server.log

        server.process.send_signal(signal.SIGTERM)
        stopping = systemd.receive()
        assert stopping["STOPPING"] == "1"
        assert "STATUS" in stopping
        assert server.process.wait(15) == 0
        assert systemd.pending() == []


def turn_master_loop(server: RunningServer) -> None:
    """Return once the master's loop has gone round at least once whole since the call:
    it logs each USR1 in its turn, so a second one logged means the first turn ended."""
    before = server.log.count("Received USR1")
    for turn in (1, 2):
        server.process.send_signal(signal.SIGUSR1)
        assert server.wait_for_log_count("Received USR1", before + turn, 10), server.log


def time_monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.mark.parametrize("model", list(SINGLE_PROCESS_MODELS))
def test_a_single_process_says_ready_reloading_and_stopping(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    # The abstract namespace: "@name" in NOTIFY_SOCKET.
    with NotifySocket(abstract_name=f"corral-test-{uuid.uuid4().hex}") as systemd:
        server = start_server(
            options=SINGLE_PROCESS_MODELS[model], env={"NOTIFY_SOCKET": systemd.value}
        )
        ready = systemd.receive()
        assert systemd.sender == server.process.pid
        assert ready == {
            "READY": "1",
            "MAINPID": str(server.process.pid),
            "STATUS": concurrency_line(server),
        }
        assert fetch(server.port)[0] == 200
        # A single process reads again only TLS certificates, yet answers HUP as the
        # protocol asks, so that `systemctl reload` of a Type=notify-reload unit returns.
        server.process.send_signal(signal.SIGHUP)
        assert systemd.receive()["RELOADING"] == "1"
        assert systemd.receive() == ready
        server.process.send_signal(signal.SIGTERM)
        assert systemd.receive() == {
            "STOPPING": "1",
            "STATUS": "Stopping: finishing requests in flight within 30 s",
        }
        assert server.process.wait(15) == 0
        assert systemd.pending() == []


def test_a_quick_stop_says_so(start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    for options in (MODELS["thread-pool"], WORKER_MODELS["workers-thread"]):
        with NotifySocket(tmp_path / f"notify-{len(options)}") as systemd:
            server = start_server(options=options, env={"NOTIFY_SOCKET": systemd.value})
            assert systemd.receive()["READY"] == "1"
            server.process.send_signal(signal.SIGINT)
            assert systemd.receive() == {"STOPPING": "1", "STATUS": "Stopping quickly"}
            # A second signal stops at once, and says nothing more.
            server.process.send_signal(signal.SIGINT)
            assert server.process.wait(15) == 0
            assert systemd.pending() == []


def concurrency_line(server: RunningServer) -> str:
    """What the start-up line "Concurrency: ..." says."""
    assert server.wait_for_log("Concurrency: ", 5), server.log
    return server.log.split("Concurrency: ", 1)[1].splitlines()[0]


def test_a_notify_socket_no_one_reads_changes_nothing(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-socket"
    for options in (MODELS["thread-pool"], WORKER_MODELS["workers-thread"]):
        server = start_server(
            options=[*options, "--log-level", "debug"], env={"NOTIFY_SOCKET": str(missing)}
        )
        assert fetch(server.port)[0] == 200
        server.process.send_signal(signal.SIGHUP)
        assert server.wait_for_log("Received HUP", 5), server.log
        assert fetch(server.port)[0] == 200
        assert server.stop(signal.SIGTERM) == 0
        # Said once, at debug level, however many messages went unsent.
        assert server.log.count("cannot notify systemd") == 1, server.log
        assert "Traceback" not in server.log
    assert not os.path.exists(missing)


def test_a_single_process_serving_tls_says_ready_once_the_certificates_are_read(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    certificate = write_certificate(trustme.CA(), tmp_path / "tls")
    with NotifySocket(tmp_path / "notify") as systemd:
        server = start_server(
            options=[*MODELS["thread-pool"], *certificate.options()],
            env={"NOTIFY_SOCKET": systemd.value},
        )
        assert systemd.receive()["READY"] == "1"
        server.process.send_signal(signal.SIGHUP)
        assert systemd.receive()["RELOADING"] == "1"
        assert systemd.receive()["READY"] == "1"
        assert server.wait_for_log("TLS certificates reloaded", 5), server.log
        # A certificate that cannot be read ends the reload too: the old one serves on.
        certificate.cert.write_text("truncated by a failed renewal\n")
        server.process.send_signal(signal.SIGHUP)
        assert systemd.receive()["RELOADING"] == "1"
        assert systemd.receive()["READY"] == "1"
        assert server.wait_for_log("TLS certificates not reloaded", 5), server.log


def test_a_stop_with_a_drain_delay_says_it_serves_on_first(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    for options in (MODELS["thread-pool"], WORKER_MODELS["workers-thread"]):
        with NotifySocket(tmp_path / f"notify-{len(options)}") as systemd:
            server = start_server(
                options=[*options, "--health-path", "/healthz", "--drain-delay", "0.5"],
                env={"NOTIFY_SOCKET": systemd.value},
            )
            assert systemd.receive()["READY"] == "1"
            server.process.send_signal(signal.SIGTERM)
            assert systemd.receive() == {
                "STOPPING": "1",
                "STATUS": "Stopping: serving on for 0.5 s (--drain-delay), "
                "then finishing requests in flight within 30 s",
            }
            assert server.process.wait(15) == 0
