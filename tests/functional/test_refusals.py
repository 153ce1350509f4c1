"""Refused requests are counted in the error log, not written there one line each; the
access log keeps its line per request."""

from __future__ import annotations

import re
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server import MODELS, RunningServer
from tests.wire import read_until_closed

TIMEOUT = 10.0
# What each malformed request is answered with, and the cause the error log gives.
MALFORMED = {
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n": (
        300,
        400,
        "malformed header field",
    ),
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n": (150, 414, "request line too long"),
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n": (50, 400, "repeated Host field"),
}
# [2026-11-30 15:20:00 +0000] [PID] [LEVEL] message
_LOG_LINE = re.compile(r"\[[^]]*\] \[(\d+)\] \[\w+\] (.*)")
_FULL = re.compile(r"127\.0\.0\.1:\d+: refused: (.*); answered (\d+) ")
_SUMMARY = re.compile(r"refused ([\d,]+) requests? in the last [\d.]+ s: (.*)")
_SUMMARY_PART = re.compile(r"([\d,]+) × (\d+) [^(]*\((.*?)\)(?:, |$)")


def refuse(port: int, request: bytes) -> int:
    """Send `request` on a connection of its own; the status it was answered with."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = read_until_closed(sock, reset_ends=True)
    return int(answer.split(b" ", 2)[1])


def counted_in_error_log(log: str) -> tuple[Counter[tuple[int, str]], int]:
    """Refusals the error log accounts for, by (status, cause), and its lines about them.

    Per process, a summary covers every refusal of its period, those logged in full
    among them; a refusal logged in full after the process's last summary counts once.
    """
    counted: Counter[tuple[int, str]] = Counter()
    since_summary: dict[str, Counter[tuple[int, str]]] = {}
    lines = 0
    for line in log.splitlines():
        match = _LOG_LINE.fullmatch(line)
        if match is None:
            continue
        pid, message = match.groups()
        full = _FULL.match(message)
        summary = _SUMMARY.fullmatch(message)
        if full is not None:
            lines += 1
            since_summary.setdefault(pid, Counter())[(int(full[2]), full[1])] += 1
        elif summary is not None:
            lines += 1
            parts = Counter(
                {
                    (int(status), cause): int(count.replace(",", ""))
                    for count, status, cause in _SUMMARY_PART.findall(summary[2])
                }
            )
            assert sum(parts.values()) == int(summary[1].replace(",", "")), line
            counted += parts
            since_summary.pop(pid, None)
    for left in since_summary.values():
        counted += left
    return counted, lines


@pytest.mark.parametrize("model", list(MODELS))
def test_a_flood_of_malformed_requests_is_logged_as_counts(model: str) -> None:
    server = RunningServer(
        options=[*MODELS[model], "--access-logfile", "-", "--access-logformat", "access %(s)s"]
    )
    with server:
        requests = [request for request, (times, _, _) in MALFORMED.items() for _ in range(times)]
        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(pool.map(lambda request: refuse(server.port, request), requests))
        assert statuses == {400: 350, 414: 150}
        assert server.stop() == 0
    counted, lines = counted_in_error_log(server.log)
    assert counted == {(status, cause): times for times, status, cause in MALFORMED.values()}
    processes = 2 if "-w" in MODELS[model] else 1
    # A line for the first of each kind and a summary, per process and per 10 s period.
    assert lines <= 2 * processes * (len(MALFORMED) + 1), server.log
    # The access log still has its line for every request.
    access = Counter(line for line in server.lines if line.startswith("access "))
    assert access == {"access 400\n": 350, "access 414\n": 150}
