"""`corral top` against a real corral started with --stats: the live view as a real
terminal (a pseudo-terminal) receives it, the plain text of --once and of a pipe, the
view without rich, and the one-line failures, some against a stand-in stats listener."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.server import ROOT, RunningServer, fetch, wait_until

_STATS_AT = re.compile(r"Stats at http://127\.0\.0\.1:(\d+)")
# CSI (colours, cursor moves, modes), OSC (titles) and character-set selections.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z])")
# A request in flight as the live view draws it: age, worker, thread, method, path.
_LIVE_ROW = re.compile(r"(\d+\.\d) s\s+(\d+)\s+(\S+)\s+GET\s+/slow\b")
# The same in plain text, after the mark of a slow request, if any.
_PLAIN_ROW = re.compile(r"^(!?)\s+(\d+\.\d) s\s+(\d+)\s+(\S+)\s+GET\s+/slow$", re.MULTILINE)
_WORKER_ROW = re.compile(r"^\s*(\d+)\s+ready\s+(\d+)/4\s", re.MULTILINE)
_VERDICT = re.compile(r"(\d+) of 8 slots busy; 0 waiting; oldest (\d+\.\d) s on GET /slow")
RICH_MISSING = "corral top: the live view needs rich: pip install 'corral[top]'; plain text follows"
# The terminal's own screen back, after the alternate one.
LEAVE_ALTERNATE_SCREEN = "\x1b[?1049l"


class StatsServer(RunningServer):
    """corral -w 2 --threads 4 --stats 127.0.0.1:0, the stats port read from its log."""

    def __init__(self) -> None:
        super().__init__(options=["-w", "2", "--threads", "4", "--stats", "127.0.0.1:0"])
        assert wait_until(lambda: _STATS_AT.search(self.log) is not None), self.log
        match = _STATS_AT.search(self.log)
        assert match is not None
        self.stats_address = f"127.0.0.1:{match.group(1)}"
        assert wait_until(lambda: self.log.count("Booted worker") >= 2, 15), self.log

    def in_app(self) -> int:
        """Requests in the app, as the stats document says (the table is written a few
        times a second, so it may lag the app)."""
        host, port = self.stats_address.rsplit(":", 1)
        status, body = fetch(int(port), "/", host=host)
        assert status == 200
        in_app: int = json.loads(body)["totals"]["in_app"]
        return in_app


@pytest.fixture(scope="module")
def server() -> Iterator[StatsServer]:
    with StatsServer() as running:
        yield running


class SlowRequest:
    """GET /slow?ms=MS on a thread of its own, started once the app has it: the worker's
    pid and thread name come back in the response."""

    def __init__(self, server: RunningServer, ms: int, name: str) -> None:
        self.answer: dict[str, Any] = {}
        self.thread = threading.Thread(
            target=self._get, args=(server.port, f"/slow?ms={ms}&announce={name}"), daemon=True
        )
        self.thread.start()
        assert server.wait_for_log(f"app: started {name}", 10), server.log

    def _get(self, port: int, path: str) -> None:
        status, body = fetch(port, path, timeout=30)
        assert status == 200
        self.answer = json.loads(body)

    def served_by(self) -> tuple[int, str]:
        """(pid, thread) of the worker that served it, once its response is in."""
        self.thread.join(30)
        assert self.answer, "the slow request got no answer"
        return self.answer["pid"], self.answer["thread"]


def _take_terminal() -> None:
    # The pseudo-terminal becomes the new session's controlling terminal, so that a ^C
    # typed into it interrupts the command, as on a real one.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A command on a pseudo-terminal of `rows` by `columns`, and all it wrote there."""

    def __init__(self, command: Sequence[str], rows: int = 40, columns: int = 120) -> None:
        self.master, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        environment = {**os.environ, "TERM": "xterm-256color"}
        # What would override the terminal's own size and colours.
        for variable in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
            environment.pop(variable, None)
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(follower)
        self.raw = ""
        self.ended = False

    @property
    def text(self) -> str:
        """What was written, escapes taken out."""
        return _ESCAPE.sub("", self.raw).replace("\r", "")

    def read_until(self, condition: Callable[[], bool], timeout: float = 15.0) -> bool:
        """Read the terminal until `condition()` holds, the command closes it, or `timeout`
        seconds pass; the condition's last answer."""
        deadline = time.monotonic() + timeout
        while not condition() and not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if select.select([self.master], [], [], min(remaining, 0.5))[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    # EIO: every process holding the other side has closed it.
                    chunk = b""
                if not chunk:
                    self.ended = True
                self.raw += chunk.decode("utf-8", "replace")
        return condition()

    def wait(self, timeout: float = 10.0) -> int:
        """Read to the end of the output; the command's exit status."""
        assert self.read_until(lambda: False, timeout) is False
        assert self.ended, "the command did not end:\n" + self.text[-2000:]
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def top_command(*arguments: str, python: Sequence[str] = ()) -> list[str]:
    """`corral top ARGUMENTS` for a new process; `python` runs statements first."""
    if not python:
        return [sys.executable, "-m", "corral", "top", *arguments]
    program = "; ".join(
        ["import sys", *python, "from corral.cli import main", "sys.exit(main(sys.argv[1:]))"]
    )
    return [sys.executable, "-c", program, "top", *arguments]


def run_top(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        top_command(*arguments), cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("corral top: error: "), result.stderr
    assert text in result.stderr, result.stderr
    assert result.stdout == ""


# The live view


def test_the_live_view_shows_a_request_of_3_s_with_its_path_age_worker_and_thread(
    server: StatsServer,
) -> None:
    with Terminal(top_command(server.stats_address, "--slow", "2")) as terminal:
        # The request starts once the view is up, so that it is seen young, then old.
        assert terminal.read_until(lambda: "no request in flight" in terminal.text)
        request = SlowRequest(server, 5000, "live")
        shown: list[re.Match[str]] = []

        def three_seconds_old() -> bool:
            shown[:] = [row for row in _LIVE_ROW.finditer(terminal.text) if float(row[1]) >= 3]
            return bool(shown)

        assert terminal.read_until(three_seconds_old), terminal.text[-3000:]
        verdicts = _VERDICT.findall(terminal.text)
        # ^C, typed.
        os.write(terminal.master, b"\x03")
        assert terminal.wait() == 0, terminal.text[-2000:]
    age, worker, thread = shown[0][1], int(shown[0][2]), shown[0][3]
    assert (worker, thread) == request.served_by()
    assert ("1", age) in verdicts
    # Requests in the app 2 s or more stand out in red (SGR 31), the others not.
    rows = [
        (float(match[1]), "\x1b[1;31m" in line)
        for line in terminal.raw.split("\n")
        if (match := _LIVE_ROW.search(_ESCAPE.sub("", line)))
    ]
    assert {red for age, red in rows if age >= 2} == {True}, rows
    assert {red for age, red in rows if age < 2} == {False}, rows
    assert terminal.raw.rstrip().endswith(LEAVE_ALTERNATE_SCREEN), terminal.raw[-200:]


def test_the_live_view_ends_with_one_line_when_the_server_goes() -> None:
    going = StatsServer()
    try:
        with Terminal(top_command(going.stats_address)) as terminal:
            assert terminal.read_until(lambda: "of 8 slots busy" in terminal.text)
            going.stop()
            assert terminal.wait() == 1
    finally:
        going.stop()
    # The error is written on the terminal's own screen, after the live view left it.
    after = terminal.raw.rsplit(LEAVE_ALTERNATE_SCREEN, 1)[1].strip()
    # Refused, or closed by the stopping server before it answered.
    assert re.fullmatch(
        rf"corral top: error: cannot reach http://{going.stats_address}/: .+", after
    )


def test_without_rich_a_terminal_is_told_what_to_install_and_gets_plain_text(
    server: StatsServer,
) -> None:
    command = top_command(
        server.stats_address, "--interval", "0.2", python=["sys.modules['rich'] = None"]
    )
    with Terminal(command) as terminal:
        assert terminal.read_until(lambda: terminal.text.count("slots busy; 0 waiting") >= 2)
        os.write(terminal.master, b"\x03")
        assert terminal.wait() == 0
    assert terminal.text.startswith(RICH_MISSING + "\n"), terminal.text[:500]
    assert terminal.text.count(RICH_MISSING) == 1
    assert "\x1b" not in terminal.raw


# Plain text


def test_once_prints_plain_text_with_the_request_and_both_workers(server: StatsServer) -> None:
    # Long enough to still run once `corral top` has started, on a loaded machine too.
    request = SlowRequest(server, 20000, "once")
    assert wait_until(lambda: server.in_app() == 1), "the table never showed the request"
    result = run_top("--once", server.stats_address)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    verdict = _VERDICT.fullmatch(lines[0])
    assert verdict is not None, result.stdout
    assert verdict[1] == "1"
    assert lines[1] == "2 worker processes × 4 threads (thread pool) = 8 requests at a time"
    workers = dict(_WORKER_ROW.findall(result.stdout))
    assert len(workers) == 2, result.stdout
    rows = _PLAIN_ROW.findall(result.stdout)
    assert len(rows) == 1, result.stdout
    _, age, worker, thread = rows[0]
    assert age == verdict[2]
    assert (int(worker), thread) == request.served_by()
    assert workers[worker] == "1"


def test_a_pipe_gets_the_screen_again_each_interval_until_interrupted(
    server: StatsServer,
) -> None:
    process = subprocess.Popen(
        top_command(server.stats_address, "--interval", "0.2"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        verdicts = 0
        deadline = time.monotonic() + 15
        while verdicts < 3 and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "corral top ended early"
            assert "\x1b" not in line
            verdicts += "slots busy; 0 waiting" in line
        assert verdicts == 3
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0
    assert errors == ""


def test_a_pipe_closed_by_its_reader_ends_it_quietly(server: StatsServer) -> None:
    # As `corral top ADDRESS | head -1` does.
    process = subprocess.Popen(
        top_command(server.stats_address, "--interval", "0.1"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert "slots busy" in process.stdout.readline()
        process.stdout.close()
        assert process.wait(10) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()


# One line for each failure


class StandIn(http.server.ThreadingHTTPServer):
    """A stand-in for the stats listener that answers every GET with `status` and `body`."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def __exit__(self, *rest: Any) -> None:
        self.shutdown()
        self.thread.join(5)
        super().__exit__(*rest)


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_refused_connection_is_one_line_and_status_1() -> None:
    # Bound but not listening: the port is ours, and connecting to it is refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        result = run_top("--once", str(port))
    assert_one_line(result, 1, f"cannot reach http://127.0.0.1:{port}/: Connection refused")


def test_the_app_instead_of_the_stats_is_one_line_and_status_1(server: StatsServer) -> None:
    result = run_top(f"127.0.0.1:{server.port}")
    assert_one_line(
        result, 1, f"http://127.0.0.1:{server.port}/ answered something other than JSON"
    )


@pytest.mark.parametrize(
    ("status", "document", "text"),
    [
        (404, {}, "answered 404 Not Found, not corral's stats"),
        (200, [1, 2], "is not corral's stats: the document is not an object"),
        (200, {"version": 2}, "version 2 of the document; this corral top reads version 1"),
        (200, {"version": 1, "pid": 7}, "is not corral's stats: no concurrency"),
    ],
)
def test_a_listener_that_is_not_corrals_stats_is_one_line_and_status_1(
    status: int, document: Any, text: str
) -> None:
    with StandIn(status, json.dumps(document).encode()) as stand_in:
        result = run_top(stand_in.address)
    assert_one_line(result, 1, text)


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ((), "the following arguments are required: ADDRESS"),
        (("localhost",), "'localhost': give HOST:PORT, [IPv6]:PORT or a port"),
        (("https://127.0.0.1:9100/",), "the stats are served over http://"),
        (("127.0.0.1:70000",), "give HOST:PORT"),
        (("9100", "--interval", "0"), "--interval: must be at least 0.1 seconds, not 0"),
        (("9100", "--slow", "soon"), "--slow: not a number of seconds: 'soon'"),
        (("9100", "--every", "2"), "unrecognized arguments: --every 2"),
    ],
)
def test_a_wrong_command_line_is_one_line_and_status_2(
    arguments: tuple[str, ...], text: str
) -> None:
    assert_one_line(run_top(*arguments), 2, text)


def test_help_names_the_options_and_corral_help_names_top() -> None:
    top_help = run_top("--help")
    assert top_help.returncode == 0, top_help.stderr
    for option in ("ADDRESS", "--interval S", "--slow S", "--once", "corral[top]", "Exit status"):
        assert option in top_help.stdout
    corral_help = subprocess.run(
        [sys.executable, "-m", "corral", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert corral_help.returncode == 0, corral_help.stderr
    assert "corral top ADDRESS" in " ".join(corral_help.stdout.split())
