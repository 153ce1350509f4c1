"""A single process (no -w) answers the signals gunicorn's master takes: USR1 reopens the
log files, HUP, USR2, TTIN and TTOU are logged and change nothing; settings and hooks that
only worker processes use are named at start, never dropped without a word."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.server import ROOT, SINGLE_PROCESS_MODELS, RunningServer, fetch, wait_until

APP = "tests.apps.behaviours:app"


@pytest.mark.parametrize("model", list(SINGLE_PROCESS_MODELS))
def test_master_signals_are_logged_and_change_nothing(
    start_server: Callable[..., RunningServer], model: str
) -> None:
    server = start_server(options=SINGLE_PROCESS_MODELS[model])
    for name in ("HUP", "USR2", "TTIN", "TTOU"):
        server.process.send_signal(signal.Signals["SIG" + name])
        assert server.wait_for_log(f"Received {name}: ignored"), server.log
        # Still running and serving: before, HUP and USR2 ended it, TTIN stopped it.
        assert fetch(server.port, timeout=5)[0] == 200
    assert server.process.poll() is None
    assert server.stop() == 0


@pytest.mark.parametrize("model", list(SINGLE_PROCESS_MODELS))
def test_usr1_reopens_the_log_files(tmp_path: Path, model: str) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    command = [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", *SINGLE_PROCESS_MODELS[model]]
    command += ["--access-logfile", str(access), "--error-logfile", str(errors), APP]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        assert wait_until(lambda: errors.exists() and "Listening at" in errors.read_text(), 15)
        port = int(errors.read_text().split("Listening at http://127.0.0.1:")[1].split()[0])
        fetch(port, "/first")
        assert wait_until(lambda: "GET /first" in access.read_text(), 5)
        access.rename(tmp_path / "access.log.1")
        errors.rename(tmp_path / "error.log.1")
        process.send_signal(signal.SIGUSR1)
        # The loop reopens them on its next turn; a request gives it one.
        assert wait_until(lambda: fetch(port, "/second")[0] == 200 and access.exists(), 5)
        assert wait_until(lambda: "GET /second" in access.read_text(), 5)
        assert "GET /first" in (tmp_path / "access.log.1").read_text()
        assert "Received USR1" in (tmp_path / "error.log.1").read_text()
    finally:
        process.terminate()
        assert process.wait(15) == 0
    assert "Stopped" in errors.read_text()


def test_settings_for_worker_processes_are_named_when_ignored(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    config = tmp_path / "corral.conf.py"
    config.write_text("def post_fork(server, worker):\n    pass\n")
    server = start_server(options=["--max-requests", "2", "--preload", "-c", str(config)])
    assert server.wait_for_log("Ignored in a single process"), server.log
    line = next(line for line in server.lines if "Ignored in a single process" in line)
    assert "--max-requests" in line and "--preload" in line and "post_fork" in line
    quiet = start_server()
    assert "Ignored" not in quiet.log


def test_a_single_process_writes_and_removes_its_pid_file(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    pidfile = tmp_path / "corral.pid"
    server = start_server(options=["--pid", str(pidfile)])
    assert pidfile.read_text().strip() == str(server.process.pid)
    assert server.stop() == 0
    assert not pidfile.exists()


def test_request_hooks_get_a_worker_in_a_single_process(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """gunicorn's hooks use worker.log and worker.pid; there is a worker there too."""
    config = tmp_path / "hooks.conf.py"
    config.write_text(
        "def pre_request(worker, req):\n"
        "    worker.log.info('pre_request in %d for %s', worker.pid, req.path)\n"
    )
    server = start_server(options=["-c", str(config)])
    assert fetch(server.port, "/hooked")[0] == 200
    assert server.wait_for_log(f"pre_request in {server.process.pid} for /hooked"), server.log
    assert "hook failed" not in server.log


def test_hup_says_when_it_cannot_serve_new_code() -> None:
    """The Flask command imports the app before the fork: HUP's new workers run the
    same code, and the log says so instead of only "Reload complete"."""
    command = [sys.executable, "-m", "flask", "--app", "tests.apps.flask_app", "corral"]
    with RunningServer(command=[*command, "-w", "1", "--port", "0"]) as server:
        assert server.wait_for_log("Booted worker", 15)
        os.kill(server.process.pid, signal.SIGHUP)
        assert server.wait_for_log("HUP reloads settings, not the app's code", 10), server.log


def test_a_pid_file_that_cannot_be_written_is_one_line_and_exit_1(tmp_path: Path) -> None:
    pidfile = tmp_path / "no-such-directory" / "corral.pid"
    result = subprocess.run(
        [sys.executable, "-m", "corral", "-b", "127.0.0.1:0", "--pid", str(pidfile), APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot write the pid file" in result.stderr
    assert "Traceback" not in result.stderr
