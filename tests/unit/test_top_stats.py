"""`corral top`'s reading of the stats: the address ADDRESS names, and the checked shape
of the JSON document."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.top.stats import (
    BadAddress,
    NotCorralStats,
    StatsAddress,
    parse_address,
    read_document,
)

# The example of docs/observability.md, with a second request and the sizing advice.
DOCUMENT: dict[str, Any] = {
    "version": 1,
    "pid": 4100,
    "uptime_seconds": 3725.4,
    "concurrency": {
        "workers": 2,
        "slots_per_worker": 2,
        "slots": 4,
        "model": "2 worker processes × 2 threads (thread pool) = 4 requests at a time",
    },
    "totals": {
        "requests": 120,
        "by_status_class": {"4xx": 2, "2xx": 118},
        "in_app": 2,
        "waiting": 12,
        "connections": 1,
        "bytes_in": 0,
        "bytes_out": 0,
        "restarts": 1,
    },
    "workers": [
        {
            "pid": 4101,
            "state": "ready",
            "slots": 2,
            "in_app": 2,
            "waiting": 12,
            "connections": 1,
            "served": 60,
            "p50_seconds": 0.002,
            "p99_seconds": 0.05,
            "rss_bytes": 31_000_000,
            "restarts": 1,
        },
        {
            "pid": 4102,
            "state": "booting",
            "slots": 2,
            "in_app": 0,
            "waiting": 0,
            "connections": 0,
            "served": 0,
            "p50_seconds": None,
            "p99_seconds": None,
            "rss_bytes": 900,
            "restarts": 0,
        },
    ],
    "in_flight": [
        {"worker": 4101, "thread": "corral-1", "method": "GET", "path": "/a", "age_seconds": 0.3},
        {
            "worker": 4101,
            "thread": "corral-0",
            "method": "POST",
            "path": "/report",
            "age_seconds": 4.21,
        },
    ],
    "sizing": {
        "text": "requests wait 94% of their time on I/O and spend 6% on the CPU: with 2 "
        "cores, about 2 workers × 17 threads would keep the CPUs busy; you have 2 × 2",
        "advised_workers": 2,
        "advised_threads_per_worker": 17,
        "cpu_fraction": 0.06,
        "far_off": True,
    },
    "a_key_added_later": {"ignored": True},
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """DOCUMENT with the key at dotted `path` set to `value`, or removed for `...`."""
    document = copy.deepcopy(DOCUMENT)
    *parents, last = path.split(".")
    place: Any = document
    for key in parents:
        place = place[int(key)] if isinstance(place, list) else place[key]
    key: Any = int(last) if isinstance(place, list) else last
    if value is ...:
        del place[key]
    else:
        place[key] = value
    return document


# The address


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("9100", StatsAddress("127.0.0.1", 9100)),
        ("0.0.0.0:9100", StatsAddress("0.0.0.0", 9100)),
        ("stats.internal:9100", StatsAddress("stats.internal", 9100)),
        ("[::1]:9100", StatsAddress("::1", 9100)),
        ("http://127.0.0.1:9100", StatsAddress("127.0.0.1", 9100)),
        ("http://[::1]:9100/", StatsAddress("::1", 9100)),
    ],
)
def test_an_address_is_what_stats_was_given_or_the_url_it_logged(
    text: str, address: StatsAddress
) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "text",
    ["", "localhost", "127.0.0.1:", ":9100", "127.0.0.1:0", "1:65536", "[::1]", "ftp://h:1"],
)
def test_a_bad_address_is_refused(text: str) -> None:
    with pytest.raises(BadAddress):
        parse_address(text)


def test_an_ipv6_address_is_bracketed_in_its_url() -> None:
    assert StatsAddress("::1", 9100).url == "http://[::1]:9100/"


# The document


def test_the_document_is_read_with_its_sizing_and_keys_added_later_ignored() -> None:
    stats = read_document(DOCUMENT)
    assert (stats.slots, stats.in_app, stats.waiting, stats.worker_processes) == (4, 2, 12, 2)
    assert stats.by_status_class == {"4xx": 2, "2xx": 118}
    assert stats.workers[1].p50_seconds is None
    assert stats.in_flight[1].path == "/report"
    assert stats.sizing is not None and stats.sizing.far_off


def test_the_sizing_may_be_absent() -> None:
    assert read_document(changed("sizing", ...)).sizing is None


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("version", 2, "version 2 of the document; this corral top reads version 1"),
        ("version", "1", "version is not a count"),
        ("concurrency", [], "concurrency is not an object"),
        ("concurrency.slots", ..., "no concurrency.slots"),
        ("totals.in_app", True, "totals.in_app is not a count"),
        ("totals.by_status_class.2xx", 1.5, "totals.by_status_class.2xx is not a count"),
        ("workers", {}, "workers is not a list"),
        ("workers.1.p99_seconds", "fast", "workers[1].p99_seconds is not a number"),
        ("in_flight.0.thread", 7, "in_flight[0].thread is not text"),
        ("in_flight.1", "GET /", "in_flight[1] is not an object"),
        ("sizing.text", ..., "no sizing.text"),
    ],
)
def test_a_document_of_another_shape_is_refused_naming_the_key(
    path: str, value: Any, complaint: str
) -> None:
    with pytest.raises(NotCorralStats) as refused:
        read_document(changed(path, value))
    assert str(refused.value) == complaint
