"""docs/deploy/systemd/: the unit files say what corral does. systemd cannot run here, so
the test reads the units and does what systemd would do with them: it binds the socket
corral.socket describes, starts exactly corral.service's ExecStart with it (the program
and the application replaced by this checkout's), reads the notifications a Type=notify
unit waits for, reloads with ExecReload and stops with KillSignal within
TimeoutStopSec. `systemd-analyze verify` checks the units' syntax where it is
installed."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.requirements import require
from tests.server import ROOT, RunningServer, fetch
from tests.systemd import NotifySocket, activated_command, high_fd

UNITS = ROOT / "docs" / "deploy" / "systemd"
APP = "tests.apps.workers_app:app"


def read_unit(path: Path) -> configparser.ConfigParser:
    """A unit file's sections; systemd's repeated keys keep their last value here."""
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text())
    return unit


def seconds(value: str) -> float:
    """A systemd time span such as "40", "40s" or "1min 30s" in seconds."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def exec_start() -> list[str]:
    """corral.service's ExecStart, run from this checkout: `corral` as `python -m
    corral`, the application replaced by the test's."""
    argv = shlex.split(read_unit(UNITS / "corral.service")["Service"]["ExecStart"])
    assert Path(argv[0]).name == "corral", argv
    assert ":" in argv[-1], f"the last argument should be MODULE:NAME: {argv}"
    return [sys.executable, "-m", "corral", *argv[1:-1], APP]


def print_config(argv: list[str]) -> dict[str, str]:
    result = subprocess.run(
        [*argv[:-1], "--print-config", argv[-1]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )


def test_the_units_start_reload_and_stop_corral_as_they_say(tmp_path: Path) -> None:
    socket_unit = read_unit(UNITS / "corral.socket")["Socket"]
    service = read_unit(UNITS / "corral.service")["Service"]
    assert socket_unit.get("Accept", "no") == "no"
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "main")
    argv = exec_start()
    # The sockets come from systemd: an address given too would never be listened on.
    assert not {"-b", "--bind"} & set(argv), argv

    # The ListenStream address, on a port the kernel picks rather than the unit's.
    host, _, _ = socket_unit["ListenStream"].rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((host, 0))
        held.listen(int(socket_unit["Backlog"]))
        port = held.getsockname()[1]
        fd = high_fd(held)
        with NotifySocket(tmp_path / "notify") as systemd:
            try:
                server = RunningServer(
                    command=activated_command([fd], argv),
                    env={"NOTIFY_SOCKET": systemd.value},
                    pass_fds=[fd],
                )
            finally:
                os.close(fd)
            with server:
                main_pid = server.process.pid
                assert server.port == port
                assert f"Listening at http://{host}:{port}" in server.log
                ready = systemd.receive()
                assert (ready["READY"], ready["MAINPID"], systemd.sender) == (
                    "1",
                    str(main_pid),
                    main_pid,
                )
                assert fetch(port)[0] == 200

                reload_command = service["ExecReload"].replace("$MAINPID", str(main_pid))
                subprocess.run(shlex.split(reload_command), check=True, timeout=10)
                assert systemd.receive()["RELOADING"] == "1"
                assert systemd.receive()["READY"] == "1"
                assert server.wait_for_log("Reload complete", 10), server.log
                assert fetch(port)[0] == 200

                started = time.monotonic()
                server.process.send_signal(signal.Signals[service["KillSignal"]])
                assert systemd.receive()["STOPPING"] == "1"
                limit = seconds(service["TimeoutStopSec"])
                assert server.process.wait(limit) == 0
                assert time.monotonic() - started < limit


def test_the_stop_timeout_outlasts_a_graceful_stop() -> None:
    service = read_unit(UNITS / "corral.service")["Service"]
    config = print_config(exec_start())
    # systemd kills what still runs after TimeoutStopSec: a graceful stop must end first.
    needed = float(config["graceful_timeout"]) + float(config.get("drain_delay", "0"))
    assert seconds(service["TimeoutStopSec"]) > needed
    assert service["KillMode"] == "mixed"


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is missing (apt-get install systemd)")
    assert analyze is not None
    # verify checks that ExecStart's program exists: this environment's corral stands
    # in for the one the unit names.
    corral = shutil.which("corral", path=str(Path(sys.executable).parent))
    require(corral is not None, f"no corral script beside {sys.executable} (pip install -e .)")
    assert corral is not None
    service = (UNITS / "corral.service").read_text()
    program = shlex.split(read_unit(UNITS / "corral.service")["Service"]["ExecStart"])[0]
    (tmp_path / "corral.service").write_text(service.replace(program, corral))
    shutil.copy(UNITS / "corral.socket", tmp_path / "corral.socket")
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "corral.socket"), str(tmp_path / "corral.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warned about, on stderr.
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")
