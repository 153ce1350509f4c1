"""What `corral top` makes of the stats: the verdict, the cells, and both screens."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from corral.top.live import live_screen
from corral.top.screen import (
    format_age,
    format_bytes,
    format_duration,
    format_uptime,
    plain_screen,
    verdict,
)
from corral.top.stats import read_document
from tests.unit.test_top_stats import DOCUMENT, changed

# The verdict and the cells


def test_the_verdict_counts_busy_slots_and_waiting_and_names_the_oldest_request() -> None:
    assert verdict(read_document(DOCUMENT)) == (
        "2 of 4 slots busy; 12 waiting; oldest 4.2 s on POST /report"
    )


def test_with_no_request_in_flight_the_verdict_has_no_oldest() -> None:
    document = changed("in_flight", [])
    document["totals"]["in_app"] = 0
    document["concurrency"]["slots"] = 1
    assert verdict(read_document(document)) == "0 of 1 slot busy; 12 waiting"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.0, "0.0 s"), (0.3, "0.3 s"), (1.999, "1.9 s"), (2.0, "2.0 s")]
)
def test_ages_are_cut_to_the_tenth_below(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.00085, "850 us"), (0.002, "2.0 ms"), (0.048, "48 ms"), (1.25, "1.25 s")],
)
def test_durations_keep_two_or_three_figures(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(900, "900 B"), (1_003_520, "980 KiB"), (31_000_000, "29.6 MiB"), (1_288_490_189, "1.2 GiB")],
)
def test_sizes_are_in_binary_units(count: int, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45.9, "45 s"), (720, "12 min"), (3725.4, "1 h 2 min"), (187_200, "2 d 4 h")],
)
def test_uptime_is_in_its_largest_unit_and_the_next(seconds: float, text: str) -> None:
    assert format_uptime(seconds) == text


# The screens


def test_the_plain_screen_in_full() -> None:
    assert plain_screen(read_document(DOCUMENT), "127.0.0.1:9100", 1.0) == (
        "2 of 4 slots busy; 12 waiting; oldest 4.2 s on POST /report\n"
        "2 worker processes × 2 threads (thread pool) = 4 requests at a time\n"
        "127.0.0.1:9100: pid 4100, up 1 h 2 min; 120 requests (118 2xx, 2 4xx); 1 connection"
        " open; 1 restart\n"
        "sizing: requests wait 94% of their time on I/O and spend 6% on the CPU: with 2 cores,"
        " about 2 workers × 17 threads would keep the CPUs busy; you have 2 × 2\n"
        "\n"
        "WORKER  STATE    BUSY  WAITING  SERVED     P50    P99       RSS  RESTARTS\n"
        "  4101  ready     2/2       12      60  2.0 ms  50 ms  29.6 MiB         1\n"
        "  4102  booting   0/2        0       0       -      -     900 B         0\n"
        "\n"
        "     AGE  WORKER  THREAD    METHOD  PATH\n"
        "!  4.2 s    4101  corral-0  POST    /report\n"
        "   0.3 s    4101  corral-1  GET     /a\n"
    )


def test_the_plain_screen_says_when_requests_in_the_app_are_not_listed() -> None:
    document = changed("totals.in_app", 70)
    screen = plain_screen(read_document(document), "127.0.0.1:9100", 10.0)
    assert screen.endswith(
        "  4.2 s    4101  corral-0  POST    /report\n"
        "  0.3 s    4101  corral-1  GET     /a\n"
        "... and 68 more not listed\n"
    )


def test_the_plain_screen_with_nothing_in_flight() -> None:
    screen = plain_screen(read_document(changed("in_flight", [])), "127.0.0.1:9100", 1.0)
    assert screen.endswith("\n\nno request in flight\n")


def _drawn(document: dict[str, Any], slow_seconds: float) -> Console:
    console = Console(file=io.StringIO(), record=True, width=120, color_system="standard")
    console.print(live_screen(read_document(document), "127.0.0.1:9100", slow_seconds))
    return console


def test_the_live_screen_shows_the_verdict_sizing_and_rows() -> None:
    text = _drawn(DOCUMENT, 1.0).export_text()
    lines = text.splitlines()
    assert lines[0] == "2 of 4 slots busy; 12 waiting; oldest 4.2 s on POST /report"
    assert "sizing: requests wait 94% of their time on I/O" in text
    assert any(
        line.split()
        == ["4101", "ready", "2/2", "12", "60", "2.0", "ms", "50", "ms", "29.6", "MiB", "1"]
        for line in lines
    ), text
    assert any(
        line.split() == ["4.2", "s", "4101", "corral-0", "POST", "/report"] for line in lines
    ), text


def test_the_live_screen_draws_requests_past_the_threshold_in_red() -> None:
    styled = _drawn(DOCUMENT, 1.0).export_text(styles=True)
    red = [line for line in styled.splitlines()[1:] if "\x1b[1;31m" in line]
    assert len(red) == 1 and "/report" in red[0], styled
    # Waiting requests turn the verdict red; without them, all slots busy turn it yellow.
    assert styled.startswith("\x1b[1;31m2 of 4 slots busy")
    calm = changed("totals.waiting", 0)
    calm["totals"]["in_app"] = 4
    assert _drawn(calm, 1.0).export_text(styles=True).startswith("\x1b[1;33m4 of 4 slots busy")


def test_the_sizing_advice_is_yellow_only_when_far_off() -> None:
    far = _drawn(DOCUMENT, 1.0).export_text(styles=True)
    near = _drawn(changed("sizing.far_off", False), 1.0).export_text(styles=True)
    assert "\x1b[33msizing: " in far
    assert "\x1b[33msizing: " not in near and "sizing: " in near
