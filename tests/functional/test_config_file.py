"""A real corral started with `-c FILE`: what the file says takes effect, and what
outranks it does; a bad file stops start-up with one line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import (
    ROOT,
    RunningServer,
    listening_port,
    open_idle_connections,
    wait_until,
)
from tests.server import fetch as get

APP = "tests.apps.behaviours:app"


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def corral(arguments: list[str], output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`corral ARGUMENTS` with no -b of its own, its output in `output`."""
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "corral", *arguments],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_bind_keep_alive_and_access_log_come_from_the_file(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    config = tmp_path / "corral.conf.py"
    config.write_text(
        "bind = '127.0.0.1:0'\n"
        "keepalive = 0.5\n"
        f"accesslog = {str(access_log)!r}\n"
        "access_log_format = 'from the file: %(m)s %(U)s %(s)s'\n"
    )
    output = tmp_path / "output.log"
    with corral(["-c", str(config), APP], output) as process:
        assert wait_until(
            lambda: listening_port(read(output)) is not None or process.poll() is not None
        ), read(output)
        assert process.poll() is None, read(output)
        port = listening_port(read(output))
        assert port is not None
        assert get(port, "/from-file") == (200, b"hello\n")
        assert wait_until(lambda: "from the file" in read(access_log), 5), read(output)
        assert read(access_log) == "from the file: GET /from-file 200\n"
        # keepalive = 0.5 closes an idle connection long before the default 5 s would.
        (idle,) = open_idle_connections(port, 1)
        with idle:
            idle.settimeout(3)
            assert idle.recv(1) == b""


def test_cmd_args_and_command_line_outrank_the_file(tmp_path: Path) -> None:
    # The file names a port held here, bound and not listening, for the whole test.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    file_port = held.getsockname()[1]
    access_log = tmp_path / "access.log"
    config = tmp_path / "corral.conf.py"
    config.write_text(
        f"bind = '127.0.0.1:{file_port}'\n"
        f"accesslog = {str(access_log)!r}\n"
        "access_log_format = 'from the file %(s)s'\n"
    )
    # RunningServer gives -b 127.0.0.1:0 on the command line.
    server = RunningServer(
        APP,
        ["-c", str(config)],
        env={"CORRAL_CMD_ARGS": "--access-logformat 'from CORRAL_CMD_ARGS %(s)s'"},
    )
    with held, server:
        assert server.port != file_port
        assert not accepts(file_port)
        assert get(server.port) == (200, b"hello\n")
        assert wait_until(lambda: bool(read(access_log)), 5), server.log
        assert read(access_log) == "from CORRAL_CMD_ARGS 200\n"


def test_request_hooks_from_the_file_run(tmp_path: Path) -> None:
    hooks_log = tmp_path / "hooks.log"
    config = tmp_path / "hooks.conf.py"
    config.write_text(
        "def _record(line):\n"
        f"    with open({str(hooks_log)!r}, 'a') as log:\n"
        "        log.write(line + '\\n')\n"
        "def pre_request(worker, req):\n"
        "    _record(f'pre {req.method} {req.path}')\n"
        "def post_request(worker, req):\n"
        "    _record(f'post {req.path}')\n"
    )
    with RunningServer(APP, ["-c", str(config)]) as server:
        assert get(server.port, "/hooked") == (200, b"hello\n")
        assert wait_until(lambda: "post" in read(hooks_log), 5), server.log
        assert read(hooks_log) == "pre GET /hooked\npost /hooked\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = 2\nwokers = 3\n", "unknown setting 'wokers' (did you mean 'workers'?)"),
        (
            "spew = False\ndaemon = True\n",
            "daemon is a gunicorn setting corral does not support: run corral in the "
            "foreground under systemd",
        ),
        ("spew = True\n", "spew is a gunicorn setting corral does not support: trace"),
        ("raw_env = ['SPAM=eggs', 'NOT_AN_ASSIGNMENT']\n", "'NOT_AN_ASSIGNMENT' is not NAME="),
        ("import os\n\nbind = os.environ['NO_SUCH_VARIABLE']\n", "line 3: KeyError"),
        ("timeout = 'soon'\n", "timeout: 'soon' is not a number of seconds"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.conf.py"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "corral", "-c", str(config), APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        env={key: value for key, value in os.environ.items() if key != "NO_SUCH_VARIABLE"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"corral: error: {config}")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf.py"
    result = subprocess.run(
        [sys.executable, "-m", "corral", "--check-config", "-c", str(missing), APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == f"corral: error: cannot read config file {missing}: No such file or directory\n"
    )


def test_check_config_reads_the_file_and_loads_the_app(tmp_path: Path) -> None:
    config = tmp_path / "corral.conf.py"
    config.write_text("workers = 2\nkeepalive = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "corral", "--check-config", "-c", str(config), APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "corral", "--check-config", "-c", str(config), "no_such:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_gunicorn_config_file_runs_as_is(tmp_path: Path) -> None:
    """tests/configs/gunicorn.conf.py: a master, 2 gthread workers, pid file, access log
    with gunicorn's atoms, and hooks in the master and the workers."""
    server = RunningServer(
        APP,
        ["-c", "tests/configs/gunicorn.conf.py"],
        env={"TEST_OUTPUT_DIR": str(tmp_path)},
        start_timeout=30,
    )
    with server:
        master = server.process.pid
        assert server.wait_for_log("Concurrency: 2 worker processes × 2 threads", 10), server.log
        for _ in range(4):
            assert get(server.port, "/gunicorn") == (200, b"hello\n")
        pid_file = tmp_path / "corral.pid"
        assert wait_until(lambda: bool(read(pid_file).strip()), 5), server.log
        assert int(read(pid_file)) == master

        hooks_log = tmp_path / "hooks.log"
        assert wait_until(lambda: read(hooks_log).count("post_fork") == 2, 10), read(hooks_log)
        hooks = read(hooks_log)
        assert f"when_ready {master}\n" in hooks
        workers = {int(pid) for pid in re.findall(r"^post_fork (\d+)$", hooks, re.M)}
        assert len(workers) == 2
        assert master not in workers
        assert wait_until(lambda: read(hooks_log).count("post_request") == 4, 5)
        hooks = read(hooks_log)
        served_by = {
            int(pid) for pid in re.findall(r"^post_request /gunicorn 200 (\d+)$", hooks, re.M)
        }
        assert served_by and served_by <= workers
        assert hooks.count("pre_request GET /gunicorn") == 4

        access_log = tmp_path / "access.log"
        assert wait_until(lambda: read(access_log).count("\n") == 4, 5), server.log
        for line in read(access_log).splitlines():
            match = re.fullmatch(r'127\.0\.0\.1 "GET /gunicorn HTTP/1\.1" 200 6 pid=<(\d+)>', line)
            assert match, line
            assert int(match.group(1)) in workers
    assert server.process.returncode == 0, server.log


def test_hup_runs_the_file_again_and_a_broken_one_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "corral.conf.py"
    config.write_text("workers = 1\n")
    with RunningServer(APP, ["-c", str(config)]) as server:
        assert server.wait_for_log("Booted worker", 10), server.log
        config.write_text("workers = 2\n")
        server.process.send_signal(signal.SIGHUP)
        assert server.wait_for_log("Concurrency: 2 worker processes", 10), server.log
        assert server.wait_for_log("Reload complete", 10), server.log
        config.write_text("workers = (\n")
        server.process.send_signal(signal.SIGHUP)
        assert server.wait_for_log(f"{config}, line 1: SyntaxError", 10), server.log
        assert get(server.port) == (200, b"hello\n")
    assert server.process.returncode == 0, server.log


def test_gunicorns_example_config_starts_unchanged() -> None:
    """tests/configs/gunicorn_example.conf.py mirrors gunicorn's own example: settings
    corral lacks at gunicorn's defaults, raw_env, a master with one sync worker, the
    access log to standard output, and hooks logging through server.log."""
    server = RunningServer(
        "tests.apps.environment:app",
        ["-c", "tests/configs/gunicorn_example.conf.py"],
        start_timeout=30,
    )
    with server:
        assert server.wait_for_log("Server is ready. Spawning workers", 10), server.log
        assert server.wait_for_log("Worker spawned (pid: ", 10), server.log
        (worker,) = re.findall(r"Worker spawned \(pid: (\d+)\)", server.log)
        assert int(worker) != server.process.pid
        assert server.wait_for_log(f"Booted worker {worker}", 10), server.log
        # raw_env: in the environment before the app was imported, and still there.
        assert get(server.port, "/SPAM") == (200, b"eggs eggs")
        assert get(server.port, "/DJANGO_SECRET_KEY") == (200, b"something something")
        assert server.wait_for_log('"GET /SPAM HTTP/1.1" 200 9 "-" "-"', 5), server.log
    assert server.process.returncode == 0, server.log


def test_raw_env_from_the_command_line_reaches_the_app() -> None:
    with RunningServer(
        "tests.apps.environment:app", ["-e", "SPAM=eggs", "--env=EMPTY=", "-e", "A=b=c"]
    ) as server:
        assert get(server.port, "/SPAM") == (200, b"eggs eggs")
        assert get(server.port, "/EMPTY") == (200, b" ")
        assert get(server.port, "/A") == (200, b"b=c b=c")


def test_wsgi_app_from_the_file_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "corral.conf.py"
    config.write_text("wsgi_app = 'tests.apps.environment:app'\nraw_env = ['SPAM=eggs']\n")
    with RunningServer(None, ["-c", str(config)]) as server:
        assert get(server.port, "/SPAM") == (200, b"eggs eggs")
    assert server.process.returncode == 0, server.log
    with RunningServer(APP, ["-c", str(config)]) as server:
        assert get(server.port, "/SPAM") == (200, b"hello\n")


def test_gunicorn_cmd_args_are_read_below_corral_cmd_args() -> None:
    environment = {"GUNICORN_CMD_ARGS": "--threads 3 -e SPAM=eggs --keep-alive 7"}
    with RunningServer("tests.apps.environment:app", env=environment) as server:
        assert "1 process × 3 threads (thread pool)" in server.log
        assert get(server.port, "/SPAM") == (200, b"eggs eggs")
    with RunningServer(
        "tests.apps.environment:app", env={**environment, "CORRAL_CMD_ARGS": "--threads 2"}
    ) as server:
        assert "1 process × 2 threads (thread pool)" in server.log
        assert get(server.port, "/SPAM") == (200, b"eggs eggs")


def test_a_mistyped_option_is_one_line_naming_the_closest_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral", "--wokers", "2", APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr == "corral: error: unknown option --wokers; did you mean --workers?\n"
