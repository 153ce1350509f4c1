"""`corral probe`'s reading of latency tables: which round comes next, and the verdict,
for tables such as servers with a known limit would give."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.probe.verdict import (
    Round,
    Verdict,
    format_seconds,
    judge,
    next_clients,
    ordinal,
    served_at_once,
    table_row,
    waiting_limit,
)

ALONE = 0.25
MAX = 64


def queued(limit: int, service: float = ALONE) -> Callable[[int], tuple[float, ...]]:
    """Latencies from a server that serves `limit` at a time, each in `service` seconds,
    the rest waiting their turn."""

    def latencies(clients: int) -> tuple[float, ...]:
        return tuple((index // limit + 1) * service for index in range(clients))

    return latencies


def search(
    latencies: Callable[[int], tuple[float, ...]], max_clients: int = MAX
) -> tuple[Verdict, list[Round]]:
    rounds: list[Round] = []
    while (clients := next_clients(ALONE, rounds, max_clients)) is not None:
        assert 1 <= clients <= max_clients
        assert len(rounds) < 40, rounds
        rounds.append(Round(clients, latencies(clients)))
    return judge(ALONE, rounds, max_clients), rounds


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 33, 50, 63])
def test_the_search_finds_the_limit_of_a_server_that_queues(limit: int) -> None:
    verdict, rounds = search(queued(limit))
    assert (verdict.at_once, verdict.waiting) == (limit, limit + 1)
    assert verdict.wait == pytest.approx(ALONE)
    assert verdict.settled
    # Doubling then narrowing down: a handful of rounds, not one per client count.
    assert len(rounds) <= 14


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=2, max_value=200))
def test_any_limit_is_found_or_said_to_be_beyond_max(limit: int, max_clients: int) -> None:
    verdict, _ = search(queued(limit), max_clients)
    if limit < max_clients:
        assert (verdict.at_once, verdict.waiting) == (limit, limit + 1)
    else:
        assert (verdict.at_once, verdict.waiting) == (max_clients, None)


def test_a_server_without_limit_is_served_all_at_once_up_to_max() -> None:
    verdict, rounds = search(queued(10_000))
    assert [round_.clients for round_ in rounds] == [1, 2, 4, 8, 16, 32, 64]
    assert verdict == Verdict(at_once=64, waiting=None, wait=None, tried_up_to=64)
    assert verdict.sentence() == "served all 64 at once (no limit up to --max 64)"


def test_the_round_just_past_the_limit_is_measured_twice() -> None:
    _, rounds = search(queued(4))
    assert [round_.clients for round_ in rounds] == [1, 2, 4, 8, 5, 5]


def test_one_slow_request_is_not_taken_for_a_limit() -> None:
    """A server with no limit whose 8th request was once slow, as on a busy machine."""
    unlimited = queued(10_000)
    seen: set[int] = set()

    def noisy(clients: int) -> tuple[float, ...]:
        latencies = unlimited(clients)
        if clients == 8 and clients not in seen:
            seen.add(clients)
            return (*latencies[:-1], 2 * ALONE)
        return latencies

    verdict, rounds = search(noisy)
    assert 8 in [round_.clients for round_ in rounds]
    assert (verdict.at_once, verdict.waiting) == (64, None)


def test_requests_that_share_one_worker_slow_down_together() -> None:
    """Two requests at once on a CPU-bound endpoint: both take twice as long, neither is
    served at once beside the other."""
    verdict, _ = search(lambda clients: (clients * ALONE,) * clients)
    assert (verdict.at_once, verdict.waiting) == (1, 2)
    assert verdict.sentence() == "serves 1 at a time; the 2nd waits 0.25 s"


def test_the_verdict_of_a_table() -> None:
    rounds = [
        Round(1, (0.251,)),
        Round(2, (0.251, 0.252)),
        Round(4, (0.251, 0.252, 0.252, 0.253)),
        Round(8, (0.25, 0.25, 0.25, 0.25, 1.25, 1.25, 1.25, 1.25)),
        Round(5, (0.25, 0.25, 0.25, 0.25, 1.26)),
        Round(5, (0.25, 0.25, 0.25, 0.25, 1.25)),
    ]
    verdict = judge(ALONE, rounds, MAX)
    assert verdict.sentence() == "serves 4 at a time; the 5th waits 1.0 s"
    assert next_clients(ALONE, rounds, MAX) is None


def test_a_search_cut_short_says_what_it_knows() -> None:
    doubling = [Round(1, (0.25,)), Round(2, (0.25, 0.25)), Round(4, (0.25,) * 4)]
    cut_while_doubling = judge(ALONE, doubling, MAX)
    assert not cut_while_doubling.settled
    assert cut_while_doubling.sentence() == "served all 4 at once; more were not tried"
    narrowing = [*doubling, Round(16, (0.25,) * 5 + (0.5,) * 11)]
    cut_while_narrowing = judge(ALONE, narrowing, MAX)
    assert not cut_while_narrowing.settled
    assert cut_while_narrowing.sentence() == (
        "serves at least 4 at a time and fewer than 16 (stopped before narrowing it down)"
    )
    # The 5 served at once at 16 are the next guess: 6 (one waits if 5 is the limit).
    assert next_clients(ALONE, narrowing, MAX) == 6


def test_a_single_request_slower_than_alone_gives_no_verdict() -> None:
    rounds = [Round(1, (0.6,)), Round(1, (0.7,))]
    verdict = judge(ALONE, rounds, MAX)
    assert (verdict.at_once, verdict.waiting) == (0, 1)
    assert not verdict.settled
    assert "too unsteady" in verdict.sentence()
    assert next_clients(ALONE, rounds, MAX) is None


def test_waiting_means_half_a_service_time_more_and_never_less_than_10_ms() -> None:
    assert waiting_limit(0.25) == pytest.approx(0.375)
    assert waiting_limit(0.002) == pytest.approx(0.012)
    assert served_at_once(Round(3, (0.25, 0.375, 0.376)), 0.25) == 2


def test_a_table_row() -> None:
    row = table_row(Round(5, (0.251, 0.252, 0.25, 0.253, 0.502)), ALONE)
    assert row.split() == ["5", "0.25", "s", "0.50", "s", "1"]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (101, "101st"),
        (111, "111th"),
    ],
)
def test_ordinals(number: int, text: str) -> None:
    assert ordinal(number) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0032, "3.2 ms"), (0.25, "0.25 s"), (1.0, "1.0 s"), (1.04, "1.0 s"), (12.3, "12 s")],
)
def test_durations_as_people_read_them(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text
