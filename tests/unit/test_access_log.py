"""The access log's atoms, formatted from a request record: the exact text of each."""

from __future__ import annotations

import io
import os
import re
import time

import pytest

from corral.http.parser import HeadLimits, RequestHead, parse_head, parse_request_line_only
from corral.serving.access_log import DEFAULT_FORMAT, WERKZEUG_FORMAT, AccessLog
from corral.serving.request_observer import RequestRecord

HEAD = (
    b"POST /api/caf%C3%A9/x?q=1&r=2 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"User-Agent: probe/1\r\n"
    b"Referer: http://example.com/from\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 3\r\n"
    b"X-Custom: a\r\n"
    b"x-custom: b\r\n"
    b"X_Custom: underscore\r\n\r\n"
)


def head_of(data: bytes) -> RequestHead:
    parsed = parse_head(data, HeadLimits())
    assert parsed is not None
    return parsed[0]


RECORD = RequestRecord(
    201,
    "201 Created",
    [("Content-Type", "text/html"), ("X-Out", "yes")],
    1234,
    head_of(HEAD),
    ("10.1.2.3", 5555),
)


def line_of(
    log_format: str,
    record: RequestRecord = RECORD,
    seconds: float = 2.5,
    environ: dict[str, object] | None = None,
    script_name: str = "",
) -> str:
    stream = io.StringIO()
    AccessLog(stream, log_format, script_name=script_name).finished(environ, record, seconds)
    return stream.getvalue()


@pytest.mark.parametrize(
    ("atom", "text"),
    [
        ("h", "10.1.2.3"),
        ("l", "-"),
        ("u", "-"),
        ("r", "POST /api/caf%C3%A9/x?q=1&r=2 HTTP/1.1"),
        ("m", "POST"),
        ("U", "/api/caf\xc3\xa9/x"),
        ("q", "q=1&r=2"),
        ("H", "HTTP/1.1"),
        ("s", "201"),
        ("b", "1234"),
        ("B", "1234"),
        ("f", "http://example.com/from"),
        ("a", "probe/1"),
        ("T", "2"),
        ("M", "2500"),
        ("D", "2500000"),
        ("L", "2.500000"),
        # The pid of the process running the test, filled in there.
        ("p", "<PID>"),
        ("{user-agent}i", "probe/1"),
        ("{Content-Type}i", "text/plain"),
        ("{content-length}i", "3"),
        ("{x-custom}i", "a, b"),
        ("{x_custom}i", "underscore"),
        ("{x-missing}i", "-"),
        ("{content-type}o", "text/html"),
        ("{X-OUT}o", "yes"),
        ("{x-missing}o", "-"),
    ],
)
def test_atom(atom: str, text: str) -> None:
    assert line_of(f"%({atom})s") == text.replace("PID", str(os.getpid())) + "\n"


def test_path_atom_loses_the_root_path_as_path_info_does() -> None:
    assert line_of("%(U)s", script_name="/api") == "/caf\xc3\xa9/x\n"
    assert line_of("%(U)s", script_name="/ap") == "/api/caf\xc3\xa9/x\n"


def test_nothing_sent_is_a_dash_in_b_and_zero_in_big_b() -> None:
    record = RequestRecord(204, "204 No Content", [], 0, RECORD.head, RECORD.peer)
    assert line_of("%(b)s %(B)s", record) == "- 0\n"


def test_no_status_is_logged_as_500() -> None:
    record = RequestRecord(0, "0", [], 0, RECORD.head, RECORD.peer)
    assert line_of("%(s)s", record) == "500\n"


def test_unix_socket_peer() -> None:
    record = RequestRecord(200, "200 OK", [], 0, RECORD.head, "")
    assert line_of("%(h)s", record) == "-\n"


def test_environ_atom_reads_the_environ_then_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_TEST_VARIABLE", "from-process")
    environ = {"REMOTE_USER": "alice", "CORRAL_TEST_VARIABLE": "from-environ"}
    log_format = "%({REMOTE_USER}e)s %({CORRAL_TEST_VARIABLE}e)s %({NOT_SET_ANYWHERE}e)s"
    assert line_of(log_format, environ=environ) == "alice from-environ -\n"
    assert line_of(log_format) == "- from-process -\n"


def test_time_atoms() -> None:
    line = line_of("%(t)s|%({%Y-%m-%d}t)s")
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]\|\d{4}-\d\d-\d\d\n", line)
    assert line.split("|")[1] == time.strftime("%Y-%m-%d\n")


def test_default_and_werkzeug_formats() -> None:
    date = time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
    assert line_of(DEFAULT_FORMAT) == (
        f'10.1.2.3 - - {date} "POST /api/caf%C3%A9/x?q=1&r=2 HTTP/1.1" 201 1234 '
        '"http://example.com/from" "probe/1"\n'
    )
    werkzeug_date = time.strftime("%d/%b/%Y %H:%M:%S")
    assert line_of(WERKZEUG_FORMAT) == (
        f'10.1.2.3 - - [{werkzeug_date}] "POST /api/caf%C3%A9/x?q=1&r=2 HTTP/1.1" 201 -\n'
    )


def test_refused_request_with_its_request_line() -> None:
    head = parse_request_line_only(b"GET /x?y HTTP/1.0\r\nBad Field\r\n\r\n", HeadLimits())
    record = RequestRecord(400, "400 Bad Request", [], 16, head, ("10.1.2.3", 1))
    assert line_of('"%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(b)s', record) == (
        '"GET /x?y HTTP/1.0" GET /x y HTTP/1.0 400 16\n'
    )


def test_refused_request_without_a_request_line() -> None:
    assert parse_request_line_only(b"NOT HTTP\r\n\r\n", HeadLimits()) is None
    record = RequestRecord(400, "400 Bad Request", [], 16, None, ("10.1.2.3", 1))
    log_format = '"%(r)s" %(m)s %(U)s %(q)s %(H)s %(f)s %(a)s %({host}i)s %(s)s'
    assert line_of(log_format, record) == '"-" - - - - - - - 400\n'


def test_format_error_is_written_as_the_line() -> None:
    assert line_of("%(nope)s").startswith("access log format error: KeyError('nope')")
