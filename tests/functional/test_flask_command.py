"""`flask --app APP corral` behaves like `flask run` where the two meet: its address,
-h/--host and -p/--port, a request line per request on standard error, usage errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.server import ROOT, fetch, wait_until

FLASK_APP = "tests.apps.flask_app"
# Frames that say only how an app was reached, not where it failed.
MACHINERY = (
    f"{os.sep}click{os.sep}",
    os.path.join("flask", "cli.py"),
    os.path.join("corral", "cli.py"),
    os.path.join("corral", "compat"),
    "importlib",
)
_LISTENING = re.compile(r"Listening at http://127\.0\.0\.1:(\d+)")
# Werkzeug's layout: 127.0.0.1 - - [30/Nov/2026 15:20:00] "GET / HTTP/1.1" 200 -
_REQUEST_LINE = re.compile(
    r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] "GET /hello HTTP/1\.1" 200 -'
)


def flask_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", FLASK_APP, "corral", *options]


class FlaskCommand:
    """The command running, with its standard output and error kept apart."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(process.stderr, self.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)

    @property
    def port(self) -> int:
        assert wait_until(
            lambda: (
                _LISTENING.search("".join(self.stderr)) is not None
                or self.process.poll() is not None
            ),
            15,
        )
        match = _LISTENING.search("".join(self.stderr))
        assert match, "".join(self.stderr)
        return int(match.group(1))


@contextmanager
def running(*options: str) -> Iterator[FlaskCommand]:
    process = subprocess.Popen(
        flask_command(*options),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command = FlaskCommand(process)
    try:
        yield command
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for reader in command.readers:
            reader.join(5)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def test_it_listens_on_flask_runs_address_by_default() -> None:
    result = subprocess.run(
        flask_command("--print-config"), cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^bind\s+= \['127\.0\.0\.1:5000'\]$", result.stdout, re.M)


def test_host_and_port_as_flask_run_takes_them() -> None:
    with running("-h", "127.0.0.1", "-p", "0") as command:
        assert fetch(command.port, "/hello")[0] == 200
    with running("--port", "0", "--threads", "2") as command:
        assert fetch(command.port, "/hello")[0] == 200
        assert "2 threads (thread pool)" in "".join(command.stderr)
    result = subprocess.run(
        flask_command("--host", "::1", "--port=8123", "--print-config"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert re.search(r"^bind\s+= \['\[::1\]:8123'\]$", result.stdout, re.M), result.stderr


def test_each_request_is_logged_to_standard_error_as_werkzeug_does() -> None:
    with running("--port", "0") as command:
        for _ in range(2):
            assert fetch(command.port, "/hello")[0] == 200
        assert wait_until(
            lambda: (
                sum(bool(_REQUEST_LINE.fullmatch(line.strip())) for line in command.stderr) == 2
            ),
            5,
        ), "".join(command.stderr)
        assert command.stdout == []


def test_an_access_log_the_user_sets_wins(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    with running("--port", "0", "--access-logfile", str(access_log)) as command:
        assert fetch(command.port, "/hello")[0] == 200
        assert wait_until(lambda: access_log.exists() and bool(access_log.read_text()), 5)
        assert '"GET /hello HTTP/1.1" 200' in access_log.read_text()
        assert not any("GET /hello" in line for line in command.stderr)


def test_an_extra_argument_is_a_one_line_usage_error() -> None:
    result = subprocess.run(
        flask_command("--port", "0", "other:app"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "corral: error: unexpected argument 'other:app': the application is already given\n"
    )


def test_a_bad_port_is_a_one_line_usage_error() -> None:
    result = subprocess.run(
        flask_command("-p", "http"), cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr == "corral: error: --port: 'http' is not a port number\n"


def test_help_describes_the_flask_command_alone() -> None:
    result = subprocess.run(
        flask_command("--help"), cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: flask [--app APP] corral [options]\n")
    text = " ".join(result.stdout.split())
    assert "-h HOST, --host HOST" in text and "-p PORT, --port PORT" in text
    assert "--pid FILE" in text and "--worker-connections" in text
    assert "(default: 127.0.0.1:5000)" in text
    assert "(default: standard error)" in text
    for contradiction in ("-p FILE", "-h, --help", "[APP]", "8000", "error; none unless named"):
        assert contradiction not in text, contradiction
    corral_help = subprocess.run(
        [sys.executable, "-m", "corral", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    corral_help = " ".join(corral_help.split())
    for own in ("-h, --help", "-p FILE, --pid FILE", "[APP]", "(default: 127.0.0.1:8000)"):
        assert own in corral_help, own


def test_a_host_without_a_value_is_a_one_line_usage_error() -> None:
    result = subprocess.run(
        flask_command("-h"), cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr == "corral: error: -h/--host needs a value\n"


def test_an_app_that_cannot_load_is_told_briefly_with_its_own_frames() -> None:
    command = [sys.executable, "-m", "flask", "--app", "tests.apps.raises_at_import", "corral"]
    result = subprocess.run(
        [*command, "-b", "127.0.0.1:0"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 4, result.stderr
    assert result.stderr.endswith(
        "corral: error: cannot load app 'tests.apps.raises_at_import': "
        "ZeroDivisionError: division by zero\n"
    ), result.stderr
    assert "raises_at_import.py" in result.stderr
    for machinery in MACHINERY:
        assert machinery not in result.stderr, machinery


def test_an_app_that_is_not_found_is_one_line() -> None:
    command = [sys.executable, "-m", "flask", "--app", "tests.apps.no_such_app", "corral"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 4
    assert result.stderr == (
        "corral: error: cannot load app 'tests.apps.no_such_app': "
        "Could not import 'tests.apps.no_such_app'.\n"
    )
