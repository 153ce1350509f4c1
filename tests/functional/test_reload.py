"""--reload: a change to the app's source starts a fresh server process, however the app
was imported, on the same listening sockets."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.test_flask_command import MACHINERY, FlaskCommand
from tests.functional.test_master import is_gone, workers_of
from tests.server import (
    ROOT,
    RunningServer,
    fetch,
    listening_port,
    stop_process,
    wait_until,
)

RELOAD_MODELS = {
    "one-process": [],
    "thread-pool": ["--threads", "4"],
    "gevent": ["-k", "gevent"],
    "preload-worker": ["--preload", "-w", "1"],
    "workers": ["-w", "2"],
    "gevent-workers": ["-w", "2", "-k", "gevent"],
}
FLASK_APP = """
import os

from flask import Flask

VERSION = "1"
app = Flask(__name__)


@app.get("/pid")
def pid() -> str:
    return f"{os.getpid()} {VERSION}"
"""


def write_app(directory: Path) -> Path:
    source = directory / "reloadable_app.py"
    source.write_text((ROOT / "tests" / "apps" / "workers_app.py").read_text())
    return source


def set_version(source: Path, version: str) -> None:
    text = source.read_text()
    start = text.index('VERSION = "') + len('VERSION = "')
    source.write_text(text[:start] + version + text[text.index('"', start) :])


def answer(port: int) -> tuple[str, str]:
    """(pid, version) of whoever answers /pid, or ("", "") while nobody can."""
    try:
        status, body = fetch(port, "/pid", timeout=5)
    except (OSError, http.client.HTTPException):
        return "", ""
    pid, _, version = body.decode().partition(" ")
    return (pid, version) if status == 200 else ("", "")


def serving_processes(reloader: int) -> set[int]:
    """The reloader's child and, with workers, the child's workers."""
    children = workers_of(reloader)
    return children | {pid for child in children for pid in workers_of(child)}


def env_for(directory: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{directory}{os.pathsep}{ROOT}"}


def assert_reloads(server: RunningServer, source: Path, version: str) -> None:
    """Change the app's VERSION and wait for a fresh process to serve it."""
    before = serving_processes(server.process.pid)
    assert before, server.log
    set_version(source, version)

    def served_afresh() -> bool:
        pid, served = answer(server.port)
        # A worker still importing when the file changed serves the new code too.
        return served == version and int(pid) not in before

    assert wait_until(served_afresh, 20), server.log
    assert all(is_gone(pid) for pid in before), (before, server.log)
    assert f"Restarting: {source} changed" in server.log


@pytest.mark.parametrize("options", list(RELOAD_MODELS.values()), ids=list(RELOAD_MODELS))
def test_a_changed_source_file_is_served_by_a_fresh_process(
    tmp_path: Path, options: list[str]
) -> None:
    source = write_app(tmp_path)
    env = env_for(tmp_path)
    with RunningServer("reloadable_app:app", ["--reload", *options], env=env) as server:
        assert wait_until(lambda: answer(server.port)[1] == "1", 15), server.log
        assert_reloads(server, source, "2")
        assert_reloads(server, source, "3")
        reloader = server.process.pid
        last = serving_processes(reloader)
        assert server.stop() == 0
    assert all(is_gone(pid) for pid in last), server.log
    assert "Traceback" not in server.log


@pytest.mark.parametrize("options", [[], ["-w", "2"]], ids=["one-process", "workers"])
def test_a_syntax_error_is_told_and_serving_resumes_once_fixed(
    tmp_path: Path, options: list[str]
) -> None:
    source = write_app(tmp_path)
    env = env_for(tmp_path)
    with RunningServer("reloadable_app:app", ["--reload", *options], env=env) as server:
        assert wait_until(lambda: answer(server.port)[1] == "1", 15), server.log
        good = source.read_text()
        source.write_text(good + "\ndef unfinished(:\n")
        assert server.wait_for_log("The server exited with status 4", 20), server.log
        assert "cannot load app 'reloadable_app:app': SyntaxError: " in server.log
        assert "importlib" not in server.log
        source.write_text(good.replace('VERSION = "1"', 'VERSION = "2"'))
        assert wait_until(lambda: answer(server.port)[1] == "2", 20), server.log


def test_the_preloading_flask_command_reloads(tmp_path: Path) -> None:
    source = tmp_path / "flask_reload_app.py"
    source.write_text(FLASK_APP)
    command = [sys.executable, "-m", "flask", "--app", "flask_reload_app", "corral"]
    command += ["-b", "127.0.0.1:0", "--reload"]
    with RunningServer(command=command, env=env_for(tmp_path)) as server:
        assert wait_until(lambda: answer(server.port)[1] == "1", 15), server.log
        assert_reloads(server, source, "2")
        assert server.stop() == 0


def flask_reload_command(port: int = 0) -> list[str]:
    command = [sys.executable, "-m", "flask", "--app", "flask_reload_app", "corral"]
    return [*command, "-b", f"127.0.0.1:{port}", "--reload"]


def assert_told_briefly(log: str, told: str) -> None:
    assert f"cannot load app 'flask_reload_app': {told}" in log, log
    for machinery in MACHINERY:
        assert machinery not in log, (machinery, log)


def test_the_flask_command_tells_a_syntax_error_and_resumes_once_fixed(tmp_path: Path) -> None:
    source = tmp_path / "flask_reload_app.py"
    source.write_text(FLASK_APP)
    with RunningServer(command=flask_reload_command(), env=env_for(tmp_path)) as server:
        assert wait_until(lambda: answer(server.port)[1] == "1", 15), server.log
        assert_reloads(server, source, "2")
        good = source.read_text()
        source.write_text(good + "\ndef unfinished(:\n")
        assert server.wait_for_log("The server exited with status 4", 20), server.log
        assert_told_briefly(server.log, "SyntaxError: ")
        source.write_text(good.replace('VERSION = "2"', 'VERSION = "3"'))
        assert wait_until(lambda: answer(server.port)[1] == "3", 20), server.log
        assert server.stop() == 0


def test_a_flask_app_broken_from_the_start_is_served_once_fixed(tmp_path: Path) -> None:
    source = tmp_path / "flask_reload_app.py"
    source.write_text(FLASK_APP + "\nRATIO = 1 / 0\n")
    process = subprocess.Popen(
        flask_reload_command(),
        cwd=ROOT,
        env={**os.environ, **env_for(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command = FlaskCommand(process)

    def log() -> str:
        return "".join(command.stderr)

    try:
        assert wait_until(lambda: "The server exited with status 4" in log(), 20), log()
        assert_told_briefly(log(), "ZeroDivisionError: division by zero")
        assert "RATIO = 1 / 0" in log()
        source.write_text(FLASK_APP)
        # The fixed app is served on the port the start-up line names.
        assert wait_until(lambda: listening_port(log()) is not None, 20), log()
        port = listening_port(log())
        assert port is not None
        assert wait_until(lambda: answer(port)[1] == "1", 20), log()
        assert stop_process(process, signal.SIGTERM, 15) == 0
    finally:
        stop_process(process, signal.SIGKILL, 5)
        for reader in command.readers:
            reader.join(5)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def test_term_to_the_reloader_stops_the_server_with_its_status(tmp_path: Path) -> None:
    write_app(tmp_path)
    server = RunningServer("reloadable_app:app", ["--reload", "-w", "1"], env=env_for(tmp_path))
    assert wait_until(lambda: answer(server.port)[1] == "1", 15), server.log
    serving = serving_processes(server.process.pid)
    assert server.stop(signal.SIGTERM) == 0
    assert all(is_gone(pid) for pid in serving)
    assert "Master stopped" in server.log


def test_without_watchfiles_the_files_are_polled(tmp_path: Path) -> None:
    source = write_app(tmp_path)
    missing = tmp_path / "without" / "watchfiles"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{missing.parent}{os.pathsep}{tmp_path}{os.pathsep}{ROOT}"}
    with RunningServer("reloadable_app:app", ["--reload"], env=env) as server:
        assert wait_until(lambda: answer(server.port)[1] == "1", 15), server.log
        assert "pip install 'corral[reload]' gives change events" in server.log
        assert_reloads(server, source, "2")
