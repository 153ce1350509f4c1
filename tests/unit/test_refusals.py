"""The count of refused requests: which refusals get a line of their own, and the summary."""

from __future__ import annotations

import logging
import os

import pytest

from corral.serving.refusals import RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="corral.error")
    return caplog


def test_the_first_of_each_kind_is_logged_in_full_and_the_period_summed_up(
    log: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = RefusalLog(10.0, clock)
    for number in range(3400):
        refusals.record(400, "Bad Request", "malformed header field", f"10.0.0.1:{number}")
    for _ in range(131):
        refusals.record(413, "Content Too Large", "body larger than 1000 bytes", "10.0.0.2:1")
    assert log.messages == [
        "10.0.0.1:0: refused: malformed header field; answered 400 Bad Request",
        "10.0.0.2:1: refused: body larger than 1000 bytes; answered 413 Content Too Large",
    ]
    clock.now += 9.9
    refusals.flush_due()
    assert len(log.messages) == 2
    clock.now += 0.1
    refusals.flush_due()
    assert log.messages[2:] == [
        "refused 3,531 requests in the last 10 s: 3,400 × 400 Bad Request (malformed header "
        "field), 131 × 413 Content Too Large (body larger than 1000 bytes)"
    ]
    # A new period: its first refusal of a kind is logged in full again.
    refusals.record(400, "Bad Request", "malformed header field", "10.0.0.3:1")
    assert log.messages[3:] == [
        "10.0.0.3:1: refused: malformed header field; answered 400 Bad Request"
    ]


def test_no_summary_when_every_refusal_had_its_own_line(log: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(10.0, clock)
    refusals.record(400, "Bad Request", "bare LF in request head", "10.0.0.1:1")
    refusals.record(414, "URI Too Long", "request line too long", "10.0.0.1:2")
    clock.now += 30
    refusals.flush_due()
    refusals.flush()
    assert len(log.messages) == 2


def test_a_period_ends_with_the_refusal_that_comes_after_it(log: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(10.0, clock)
    refusals.record(400, "Bad Request", "malformed request line", "10.0.0.1:1")
    clock.now += 4
    refusals.record(400, "Bad Request", "malformed request line", "10.0.0.1:2")
    clock.now += 6
    refusals.record(400, "Bad Request", "malformed request line", "10.0.0.1:3")
    assert log.messages[1:] == [
        "refused 3 requests in the last 10 s: 3 × 400 Bad Request (malformed request line)"
    ]


def test_5xx_refusals_are_warnings(log: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(10.0, Clock())
    refusals.record(
        503,
        "Service Unavailable",
        "waited more than --queue-timeout 1 s to be served",
        "10.0.0.1:1",
    )
    refusals.record(
        503,
        "Service Unavailable",
        "waited more than --queue-timeout 1 s to be served",
        "10.0.0.1:2",
    )
    refusals.record(400, "Bad Request", "malformed header field", "10.0.0.1:3")
    refusals.flush()
    assert [record.levelno for record in log.records] == [
        logging.WARNING,
        logging.INFO,
        logging.WARNING,
    ]


def test_a_child_forwards_its_refusals_to_the_parent_count(log: pytest.LogCaptureFixture) -> None:
    parent = RefusalLog(10.0, Clock())
    child = RefusalLog(10.0, Clock())
    read_end, write_end = os.pipe()
    try:
        child.forward_to(write_end)
        child.record(400, "Bad Request", "malformed header field", "10.0.0.1:1")
        child.record(400, "Bad Request", "malformed header field", "10.0.0.1:2")
        assert log.messages == []
        os.close(write_end)
        write_end = -1
        parent.take_forwarded(os.read(read_end, 65536) + b"not a refusal\n")
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    parent.flush()
    assert log.messages == [
        "10.0.0.1:1: refused: malformed header field; answered 400 Bad Request",
        "refused 2 requests in the last 0.0 s: 2 × 400 Bad Request (malformed header field)",
    ]
