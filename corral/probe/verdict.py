"""What a table of latencies says about a server's concurrency: pure functions, no I/O.

A server that serves k requests at a time, sent N > k at once, finishes k of them in about
the time one takes alone (L) and makes the (k+1)th wait a whole service time more: its
latency jumps to about 2L. So each request of a round either was served at once (latency
within `waiting_limit(L)`) or waited; the probe raises N until some wait, then narrows
down to the largest N that all were served at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Halfway between one service time and two: a request that queued behind another took
# about 2L, one that did not about L.
_WAITED_FACTOR = 1.5
# A floor under that margin, so that scheduling noise of a few milliseconds on a quick
# endpoint is not taken for waiting.
_NOISE_SECONDS = 0.010
# Below this an endpoint is too quick: connecting, scheduling and the client's own threads
# cost as much as serving, and waiting cannot be told from noise.
RELIABLE_ALONE_SECONDS = 0.020


@dataclass(frozen=True)
class Round:
    """N requests sent at once, each on its own connection: `latencies` in seconds, one
    per request (`clients` of them), each from sending to the last byte of the answer."""

    clients: int
    latencies: tuple[float, ...]


@dataclass(frozen=True)
class Verdict:
    """What the rounds say, in requests.

    `at_once`: the largest number of requests that were all served at once (0 when even
    one alone was slower than the time measured alone). `waiting`: the smallest larger
    number at which some request waited, None when none did up to `at_once`. `wait`: in
    seconds, how much longer than alone the slowest request took at `waiting`. `tried_up_to`:
    the most clients the probe was allowed (`--max`).
    """

    at_once: int
    waiting: int | None
    wait: float | None
    tried_up_to: int

    @property
    def settled(self) -> bool:
        """True when the rounds pin the number down: no limit up to `tried_up_to`, or
        every request served at `at_once` and some waiting at one more."""
        if self.waiting is None:
            return self.at_once >= self.tried_up_to
        return self.waiting == self.at_once + 1 and self.at_once > 0

    def sentence(self) -> str:
        """The verdict in one line, e.g. "serves 4 at a time; the 5th waits 0.25 s"."""
        if self.waiting is None:
            if self.at_once >= self.tried_up_to:
                return (
                    f"served all {self.at_once} at once (no limit up to --max {self.tried_up_to})"
                )
            return f"served all {self.at_once} at once; more were not tried"
        if self.at_once == 0:
            return (
                "even one request at a time took longer than alone: the endpoint's "
                "latency is too unsteady to tell"
            )
        if self.waiting == self.at_once + 1:
            wait = "" if self.wait is None else f" waits {format_seconds(self.wait)}"
            return f"serves {self.at_once} at a time; the {ordinal(self.waiting)}{wait}"
        return (
            f"serves at least {self.at_once} at a time and fewer than {self.waiting} "
            "(stopped before narrowing it down)"
        )


def waiting_limit(alone: float) -> float:
    """The latency in seconds past which a request is taken to have waited, when one
    request alone takes `alone` seconds."""
    return max(alone * _WAITED_FACTOR, alone + _NOISE_SECONDS)


def served_at_once(round_: Round, alone: float) -> int:
    """How many requests of `round_` were served without waiting."""
    limit = waiting_limit(alone)
    return sum(1 for latency in round_.latencies if latency <= limit)


def latest_rounds(rounds: Sequence[Round]) -> dict[int, Round]:
    """The last round measured for each number of clients: a round repeated to confirm
    a first reading replaces it."""
    return {round_.clients: round_ for round_ in rounds}


def judge(alone: float, rounds: Sequence[Round], max_clients: int) -> Verdict:
    """The verdict of `rounds` (in the order measured) for an endpoint that takes `alone`
    seconds with no other request, the probe allowed up to `max_clients` at once."""
    latest = latest_rounds(rounds)
    at_once = max(
        (clients for clients, round_ in latest.items() if served_at_once(round_, alone) == clients),
        default=0,
    )
    waiting = min((clients for clients in latest if clients > at_once), default=None)
    wait = None
    if waiting is not None:
        wait = max(latest[waiting].latencies) - alone
    return Verdict(at_once, waiting, wait, max_clients)


def next_clients(alone: float, rounds: Sequence[Round], max_clients: int) -> int | None:
    """How many requests the next round sends at once, None when the rounds settle it.

    Doubles while every request is served at once, up to `max_clients`. Once some wait at
    N, the number served at once there, k, is the likely answer: it tries k + 1 (and k)
    between the bounds, else bisects. The round that first shows waiting just past the
    largest number served at once is measured again, so that one slow request is not
    taken for a limit.
    """
    verdict = judge(alone, rounds, max_clients)
    lower, upper = verdict.at_once, verdict.waiting
    if upper is None:
        if lower >= max_clients:
            return None
        return min(max(2 * lower, 1), max_clients)
    if upper == lower + 1:
        measured = sum(1 for round_ in rounds if round_.clients == upper)
        return upper if measured < 2 else None
    hint = served_at_once(latest_rounds(rounds)[upper], alone)
    for candidate in (hint + 1, hint):
        if lower < candidate < upper:
            return candidate
    return (lower + upper) // 2


def round_seconds(clients: int, alone: float, at_once: int) -> float:
    """About how long a round of `clients` lasts on a server known to serve at least
    `at_once` at a time: one service time per batch, with room for noise."""
    batches = math.ceil(clients / max(at_once, 1))
    return batches * waiting_limit(alone)


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def format_seconds(seconds: float) -> str:
    """A duration as people read it: "3.2 ms", "0.25 s", "1.0 s", "12 s"."""
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s"


TABLE_HEADER = f"{'at once':>8}  {'fastest':>9}  {'slowest':>9}  {'waited':>6}"


def table_row(round_: Round, alone: float) -> str:
    """One line of the table, under `TABLE_HEADER`."""
    waited = round_.clients - served_at_once(round_, alone)
    return (
        f"{round_.clients:>8}  {format_seconds(min(round_.latencies)):>9}  "
        f"{format_seconds(max(round_.latencies)):>9}  {waited:>6}"
    )
