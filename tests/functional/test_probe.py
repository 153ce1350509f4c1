"""`corral probe URL` against real servers started here: corral, the Werkzeug development
server (through `flask run`) and gunicorn, each serving corral's demo app, whose /slow
sleeps; and its one-line failures against a refusing, a silent and a failing server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.requirements import require
from tests.server import ROOT, RunningServer, wait_until

DEMO = "corral.demo:app"
SLOW = "/slow?ms=250"
# "serves 4 at a time; the 5th waits 0.25 s"
_SERVES = re.compile(r"^serves (\d+) at a time; the \d+\w\w waits ([\d.]+) s$", re.MULTILINE)


def probe(
    *arguments: str, python: Sequence[str] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`corral probe ARGUMENTS` in a new process, with `env` added to the environment;
    `python` runs statements first."""
    command = [sys.executable, "-m", "corral", "probe", *arguments]
    if python:
        program = "; ".join(
            ["import sys", *python, "from corral.cli import main", "sys.exit(main(sys.argv[1:]))"]
        )
        command = [sys.executable, "-c", program, "probe", *arguments]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def served_at_a_time(result: subprocess.CompletedProcess[str]) -> tuple[int, float]:
    """The verdict's number served at a time and the seconds the next one waits."""
    assert result.returncode == 0, result.stdout + result.stderr
    match = _SERVES.search(result.stdout)
    assert match, result.stdout
    return int(match.group(1)), float(match.group(2))


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("corral probe: error: "), result.stderr
    assert text in result.stderr


# The verdicts


def test_corral_with_4_threads_serves_4_at_a_time(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(app=DEMO, options=["--threads", "4"])
    result = probe(server.url + SLOW)
    at_a_time, wait = served_at_a_time(result)
    assert at_a_time == 4, result.stdout
    # The 5th waits for one of the first four: one service time of 250 ms.
    assert 0.15 < wait < 0.5, result.stdout
    assert "the 5th waits" in result.stdout


def test_the_werkzeug_development_server_without_threads_serves_1_at_a_time(
    start_server: Callable[..., RunningServer],
) -> None:
    """`flask run --without-threads` is Werkzeug's run_simple(threaded=False)."""
    command = [sys.executable, "-m", "flask", "--app", DEMO, "run", "--port", "0"]
    server = start_server(command=[*command, "--without-threads"])
    result = probe(server.url + SLOW)
    at_a_time, wait = served_at_a_time(result)
    assert at_a_time == 1, result.stdout
    assert 0.15 < wait < 0.5, result.stdout
    assert "the 2nd waits" in result.stdout


def test_gunicorn_with_4_workers_serves_4_at_a_time(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "gunicorn", "-w", "4", "--preload", "-b", "127.0.0.1:0"]
    # gunicorn (25.1 on) puts a control socket in $HOME; each test server gets its own.
    server = start_server(command=[*command, DEMO], env={"HOME": str(tmp_path)})
    # The master logs its address before forking; the probe must meet all four workers.
    assert wait_until(lambda: server.log.count("Booting worker with pid") == 4), server.log
    result = probe(server.url + SLOW)
    at_a_time, wait = served_at_a_time(result)
    assert at_a_time == 4, result.stdout
    assert 0.15 < wait < 0.5, result.stdout


def test_an_https_server_is_probed_over_tls_and_its_certificate_checked(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    require(shutil.which("openssl") is not None, "openssl makes the test's certificate")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl += ["-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    openssl += ["-days", "1", "-keyout", str(key), "-out", str(certificate)]
    subprocess.run(
        openssl,
        check=True,
        capture_output=True,
        timeout=30,
    )
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "--preload", "-b", "127.0.0.1:0"]
    command += ["--certfile", str(certificate), "--keyfile", str(key), DEMO]
    server = start_server(command=command, env={"HOME": str(tmp_path)})
    assert wait_until(lambda: server.log.count("Booting worker with pid") == 2), server.log
    url = f"https://127.0.0.1:{server.port}{SLOW}"
    # The certificate is trusted only where the client is told to trust it.
    trusted = probe(url, env={"SSL_CERT_FILE": str(certificate)})
    assert served_at_a_time(trusted)[0] == 2, trusted.stdout
    untrusted = probe(url)
    assert_one_line(untrusted, 1, f"TLS with 127.0.0.1:{server.port} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_thread_per_request_serves_all_up_to_max_and_the_plot_is_drawn(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = start_server(app=DEMO, options=["--thread-per-request"])
    plot = tmp_path / "curve.png"
    result = probe(server.url + SLOW, "--max", "16", "--plot", str(plot))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "served all 16 at once (no limit up to --max 16)" in result.stdout
    rows = [line.split()[0] for line in result.stdout.splitlines() if line[:8].strip().isdigit()]
    assert rows == ["1", "2", "4", "8", "16"]
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"plot: {plot}" in result.stdout


def test_a_quick_endpoint_is_said_to_give_an_unreliable_verdict(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(app=DEMO, options=["--threads", "4"])
    result = probe(server.url + "/slow?ms=0", "--max", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "too quick to tell waiting from noise" in result.stdout
    assert "/slow?ms=250" in result.stdout
    assert result.stdout.rstrip().endswith("(unreliable: the endpoint is too quick)")


# One line for each failure


def test_a_refused_connection_is_one_line_and_status_1() -> None:
    # Bound but not listening: the port is ours, and connecting to it is refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        result = probe(f"http://127.0.0.1:{port}/")
    assert_one_line(result, 1, f"cannot connect to 127.0.0.1:{port}: connection refused")


def test_a_server_that_never_answers_is_one_line_after_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        # Connections complete in the backlog and are never accepted nor answered.
        silent.listen(8)
        port = silent.getsockname()[1]
        result = probe(f"http://127.0.0.1:{port}/", "--timeout", "0.5")
    assert_one_line(result, 1, f"no answer from 127.0.0.1:{port} within 0.5 s (--timeout)")


def test_an_error_status_is_one_line_and_status_1(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(options=["--threads", "2"])
    result = probe(server.url + "/raise-before-start")
    assert_one_line(result, 1, "GET /raise-before-start answered 500 Internal Server Error")


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ((), "the following arguments are required: URL"),
        (("ftp://127.0.0.1/",), "only http:// and https:// URLs can be probed"),
        (("http:///slow",), "no host in 'http:///slow'"),
        (("http://127.0.0.1:99999/",), "not a URL"),
        (("http://127.0.0.1/", "--max", "1"), "--max: must be from 2 to 1000, not 1"),
        (("http://127.0.0.1/", "--timeout", "0"), "--timeout: must be more than 0 seconds"),
        (("http://127.0.0.1/", "--wait", "3"), "unrecognized arguments: --wait 3"),
    ],
)
def test_a_wrong_command_line_is_one_line_and_status_2(
    arguments: tuple[str, ...], text: str
) -> None:
    assert_one_line(probe(*arguments), 2, text)


def test_plot_without_matplotlib_is_one_line_before_anything_is_sent(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/"
        # An entry of None in sys.modules is how Python makes a module unimportable.
        result = probe(
            url, "--plot", str(tmp_path / "curve.png"), python=["sys.modules['matplotlib'] = None"]
        )
    assert_one_line(result, 2, "--plot needs matplotlib: pip install 'corral[plot]'")
    assert result.stdout == ""


# The command line


def test_help_names_the_options_and_corral_help_names_the_probe() -> None:
    probe_help = probe("--help")
    assert probe_help.returncode == 0, probe_help.stderr
    for option in ("--max N", "--budget S", "--timeout S", "--plot FILE", "Exit status"):
        assert option in probe_help.stdout
    corral_help = subprocess.run(
        [sys.executable, "-m", "corral", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert corral_help.returncode == 0, corral_help.stderr
    assert "corral probe URL" in " ".join(corral_help.stdout.split())
