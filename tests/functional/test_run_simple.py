"""corral.run_simple serves a Flask app exactly as Werkzeug's run_simple does."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dev_server import DevServer
from tests.server import ROOT, listening_port, wait_until

# Headers that name the server or the moment, or that are framing a server may choose.
_SERVER_SPECIFIC = {"server", "date", "connection", "keep-alive"}


def _start(which: str, log: Path, *keywords: str) -> tuple[subprocess.Popen[bytes], int]:
    """`run_simple_server WHICH 0 KEYWORDS`, its standard error in `log`, and the port it
    logged it listens on."""
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.apps.run_simple_server", which, "0", *keywords],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def port() -> int | None:
        return listening_port(log.read_text())

    wait_until(lambda: port() is not None or process.poll() is not None, 15)
    found = port()
    if found is None:
        process.kill()
        process.wait(5)
        raise RuntimeError(f"server did not start:\n{log.read_text()}")
    return process, found


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    started: dict[str, subprocess.Popen[bytes]] = {}
    urls = {}
    logs = tmp_path_factory.mktemp("run_simple")
    try:
        for which in ("corral", "werkzeug"):
            started[which], port = _start(which, logs / f"{which}.log")
            urls[which] = f"http://127.0.0.1:{port}"
        yield urls
    finally:
        for process in started.values():
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _received(response: requests.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower() not in _SERVER_SPECIFIC
    }
    return response.status_code, response.content, headers


def _both(servers: dict[str, str], method: str, path: str, **kwargs: object) -> None:
    corral = requests.request(method, servers["corral"] + path, timeout=10, **kwargs)
    werkzeug = requests.request(method, servers["werkzeug"] + path, timeout=10, **kwargs)
    assert _received(corral) == _received(werkzeug)


def test_get(servers: dict[str, str]) -> None:
    _both(servers, "GET", "/hello?a=1&a=2&b=%C3%A9")
    assert requests.get(servers["corral"] + "/hello", timeout=10).headers["Server"] == "corral"
    assert "Werkzeug" in requests.get(servers["werkzeug"] + "/hello", timeout=10).headers["Server"]


def test_not_found_and_error_status(servers: dict[str, str]) -> None:
    _both(servers, "GET", "/missing")
    _both(servers, "GET", "/no-such-route")


def test_post_form(servers: dict[str, str]) -> None:
    _both(servers, "POST", "/form", data={"name": "corral", "tags": ["a", "b"]})


def test_chunked_upload(servers: dict[str, str]) -> None:
    def pieces() -> Iterator[bytes]:
        for number in range(50):
            yield b"%04d" % number * 500

    # A generator body makes requests send Transfer-Encoding: chunked.
    corral = requests.post(servers["corral"] + "/upload", data=pieces(), timeout=10)
    werkzeug = requests.post(servers["werkzeug"] + "/upload", data=pieces(), timeout=10)
    assert corral.json()["transfer_encoding"] == "chunked"
    assert corral.json()["length"] == 50 * 2000
    assert _received(corral) == _received(werkzeug)


def test_streamed_response(servers: dict[str, str]) -> None:
    corral = requests.get(servers["corral"] + "/stream", timeout=10, stream=True)
    werkzeug = requests.get(servers["werkzeug"] + "/stream", timeout=10, stream=True)
    assert _received(corral) == _received(werkzeug)
    assert corral.headers.get("Transfer-Encoding") == "chunked"


def test_cannot_be_both_threaded_and_multiprocess() -> None:
    from corral import run_simple

    with pytest.raises(ValueError, match="multi-threaded and multi-process"):
        run_simple("127.0.0.1", 0, lambda environ, start_response: [], threaded=True, processes=4)


@pytest.mark.parametrize(
    "keyword",
    [
        {"request_handler": object()},
        {"passthrough_errors": True},
        {"worker_class": "gevent"},
    ],
    ids=["request_handler", "passthrough_errors", "gevent"],
)
def test_what_cannot_be_honoured_is_a_clear_error(keyword: dict[str, object]) -> None:
    from corral import run_simple

    with pytest.raises(ValueError, match=r"corral\.run_simple"):
        run_simple("127.0.0.1", 0, lambda environ, start_response: [], **keyword)  # type: ignore[arg-type]


def test_an_ssl_context_of_another_kind_is_a_type_error() -> None:
    """Werkzeug takes an SSLContext, a (certfile, keyfile) pair or "adhoc"."""
    from corral import run_simple

    with pytest.raises(TypeError, match=r"ssl_context must be an ssl\.SSLContext, a \(cert"):
        run_simple("127.0.0.1", 0, lambda environ, start_response: [], ssl_context="cert.pem")


def _serve_with(tmp_path: Path, *keywords: str) -> tuple[subprocess.Popen[bytes], int]:
    return _start("corral", tmp_path / "server.log", *keywords)


def test_a_config_file_and_worker_processes_through_run_simple(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    config = tmp_path / "corral.conf.py"
    config.write_text(
        f"accesslog = {str(access_log)!r}\naccess_log_format = 'via file %(s)s'\nworkers = 2\n"
    )
    process, port = _serve_with(tmp_path, f"config={str(config)!r}")
    try:
        assert requests.get(f"http://127.0.0.1:{port}/hello", timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while "via file 200" not in (access_log.read_text() if access_log.exists() else ""):
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        log = (tmp_path / "server.log").read_text()
        assert "Concurrency: 2 worker processes" in log
    finally:
        process.terminate()
        assert process.wait(15) == 0


def _short_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A unix socket path must fit in sun_path (108 bytes on Linux).
    return tmp_path_factory.mktemp("sock")


def test_a_unix_hostname_serves_on_that_unix_socket(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = _short_directory(tmp_path_factory) / "app.sock"
    with DevServer(hostname=f"unix://{path}") as server:
        assert server.unix_path == str(path)
        response, body = server.request("/hello?x=1")
    assert response.status == 200
    environ = json.loads(body)
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/hello", "x=1")


def test_a_relative_unix_path_is_taken_from_the_working_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # werkzeug.serving.get_sockaddr makes the path absolute before binding.
    directory = _short_directory(tmp_path_factory)
    with DevServer(hostname="unix://app.sock", cwd=directory) as server:
        assert server.unix_path == str(directory / "app.sock")
        response, _ = server.request("/")
    assert response.status == 200


def test_a_socket_file_left_by_an_earlier_run_is_replaced(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = _short_directory(tmp_path_factory) / "app.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as earlier:
        earlier.bind(str(path))
    assert path.is_socket()
    with DevServer(hostname=f"unix://{path}") as server:
        response, _ = server.request("/")
    assert response.status == 200


def test_a_unix_hostname_without_a_path_is_a_clear_error() -> None:
    from corral import run_simple

    with pytest.raises(ValueError, match="needs a socket path"):
        run_simple("unix://", 0, lambda environ, start_response: [])


def test_a_file_that_is_not_a_socket_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Werkzeug deletes whatever is at the path; corral replaces only a socket file.
    from corral import run_simple

    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(SystemExit) as stopped:
        run_simple(f"unix://{path}", 0, lambda environ, start_response: [])
    assert stopped.value.code == 1
    assert "is not a socket" in capsys.readouterr().err
    assert path.read_text() == "keep me"


def test_a_port_in_use_is_told_in_short_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As Werkzeug: the error and a hint on standard error, status 1, no traceback."""
    from corral import run_simple

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            run_simple("127.0.0.1", port, lambda environ, start_response: [])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in err
    assert f"Port {port} is in use by another program" in err


# werkzeug.serving.WSGIRequestHandler.log_request: peer, two dashes, local time as
# http.server's log_date_time_string writes it, the request line, status, and "-".
_WERKZEUG_REQUEST_LINE = re.compile(
    r"127\.0\.0\.1 - - \[\d\d/[A-Z][a-z][a-z]/\d{4} \d\d:\d\d:\d\d\] "
    r'"GET /hello\?x=1 HTTP/1\.1" 200 -\n'
)


def test_each_request_is_logged_on_standard_error_as_werkzeug_logs_it() -> None:
    with DevServer() as server:
        response, _ = server.request("/hello?x=1")
        assert response.status == 200
        assert server.wait_for_stderr('"GET /hello')
    logged = [line for line in server.stderr if '"GET /hello' in line]
    assert len(logged) == 1
    assert _WERKZEUG_REQUEST_LINE.fullmatch(logged[0]), logged
    assert not any("/hello" in line for line in server.stdout)


def test_werkzeug_logs_its_request_line_in_the_same_shape(tmp_path: Path) -> None:
    # The shape asserted above, checked against Werkzeug's own run_simple.
    log = tmp_path / "werkzeug.log"
    process, port = _start("werkzeug", log)
    try:
        requests.get(f"http://127.0.0.1:{port}/hello?x=1", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(10)
    logged = [line + "\n" for line in log.read_text().splitlines() if '"GET /hello' in line]
    assert len(logged) == 1
    assert _WERKZEUG_REQUEST_LINE.fullmatch(logged[0]), logged


def test_an_access_logfile_replaces_the_werkzeug_request_line(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    with DevServer(access_logfile=str(access_log)) as server:
        server.request("/hello?x=1")
        assert wait_until(lambda: access_log.exists() and "/hello" in access_log.read_text())
    # corral's own default layout, gunicorn's: ... "GET /hello?x=1 HTTP/1.1" 200 ...
    assert '"GET /hello?x=1 HTTP/1.1" 200' in access_log.read_text()
    assert not any("/hello" in line for line in server.stderr + server.stdout)


def test_an_empty_access_logfile_logs_no_requests() -> None:
    with DevServer(access_logfile="") as server:
        response, _ = server.request("/hello?x=1")
        assert response.status == 200
    assert not any("/hello" in line for line in server.stderr + server.stdout)


def test_a_unix_socket_peer_is_logged_as_a_dash(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A unix socket peer has no address: the line starts with "-", as a missing atom does.
    path = _short_directory(tmp_path_factory) / "app.sock"
    with DevServer(hostname=f"unix://{path}") as server:
        server.request("/hello")
        logged = server.wait_for_stderr('"GET /hello')
    assert logged and logged[0].startswith("- - - ["), logged
