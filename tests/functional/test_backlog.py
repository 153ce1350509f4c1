"""`--backlog N` reaches listen(2) however corral is started: the command, worker
processes, run_simple and the Flask command."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.server import RunningServer

# Below the kernel's own ceiling (net.core.somaxconn, 4096 on current Linux), which
# would otherwise lower what the socket reports.
BACKLOG = 37

CORRAL = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", "--backlog", str(BACKLOG)]
APP = "tests.apps.behaviours:app"
COMMANDS = {
    "corral": [*CORRAL, APP],
    "corral -w 2": [*CORRAL, "-w", "2", APP],
    "run_simple": [
        *[sys.executable, "-m", "tests.apps.run_simple_server", "corral", "0"],
        f"backlog={BACKLOG}",
    ],
    "flask corral": [
        *[sys.executable, "-m", "flask", "--app", "tests.apps.flask_app", "corral"],
        *["-b", "127.0.0.1:0", "--backlog", str(BACKLOG)],
    ],
}


def listen_backlog(port: int) -> int:
    """The backlog the kernel keeps for the socket listening on `port`: for a listening
    socket, `ss` shows it in the Send-Q column."""
    output = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    (line,) = output.splitlines()
    return int(line.split()[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2), Linux only")
@pytest.mark.parametrize("name", list(COMMANDS))
def test_backlog_reaches_listen(name: str) -> None:
    with RunningServer(command=COMMANDS[name]) as server:
        assert listen_backlog(server.port) == BACKLOG
