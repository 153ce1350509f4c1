"""`corral probe URL [--max N] [--budget S] [--timeout S] [--plot FILE]`.

Prints the latency of the endpoint alone, then one table row per round of requests sent at
once, then the verdict. Exit status: 0 with a verdict, 1 when the server or the network
failed the probe (one line says how), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from corral.probe.clients import BadTarget, ProbeFailure, Target, latencies_together, latency_alone
from corral.probe.plot import PlotUnavailable, check_plotting, draw
from corral.probe.verdict import (
    RELIABLE_ALONE_SECONDS,
    TABLE_HEADER,
    Round,
    format_seconds,
    judge,
    next_clients,
    round_seconds,
    table_row,
)

VERDICT = 0
FAILURE = 1
USAGE = 2

# Enough clients to tell a pool of 32 or 50 threads from thread-per-request, few enough
# for one machine's threads and file descriptors.
DEFAULT_MAX = 64
MAX_ALLOWED = 1000
DEFAULT_BUDGET = 60.0
DEFAULT_TIMEOUT = 30.0

DESCRIPTION = (
    "Measure how many requests the server at URL really serves at once: send 1, 2, 4, ... "
    "requests together, each on its own connection, and watch for the one that waits a "
    "whole service time. Works on any HTTP server. Probe an endpoint that takes 100 ms or "
    "more, such as corral.demo's /slow?ms=250."
)
EPILOG = (
    "Exit status: 0 with a verdict, 1 when the server or the network fails (one line says "
    "how), 2 for a wrong command line."
)


class UsageError(Exception):
    """The command line is wrong; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 2 <= value <= MAX_ALLOWED:
        raise argparse.ArgumentTypeError(f"must be from 2 to {MAX_ALLOWED}, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def make_parser() -> argparse.ArgumentParser:
    """The `corral probe` command line."""
    parser = _Parser(prog="corral probe", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("url", metavar="URL", help="an http:// or https:// URL to GET")
    parser.add_argument(
        "--max",
        type=_count,
        default=DEFAULT_MAX,
        metavar="N",
        help=f"Send at most N requests at once (default: {DEFAULT_MAX}).",
    )
    parser.add_argument(
        "--budget",
        type=_seconds,
        default=DEFAULT_BUDGET,
        metavar="S",
        help=f"Start no round that would end after S seconds (default: {DEFAULT_BUDGET:g}).",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="Give up on a connection that is silent for S seconds "
        f"(default: {DEFAULT_TIMEOUT:g}).",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="Draw each request's latency to FILE.png (needs matplotlib: corral[plot]).",
    )
    return parser


def main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `corral probe` with `argv` (the words after "probe"): the exit status. The
    table and verdict go to `out` (standard output), failures to `err` (standard error),
    one line each."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        arguments = make_parser().parse_args(argv)
        target = Target.from_url(arguments.url)
        if arguments.plot is not None:
            check_plotting()
    except (UsageError, BadTarget, PlotUnavailable) as error:
        print(f"corral probe: error: {error}", file=err)
        return USAGE
    try:
        return _probe(target, arguments, out, err)
    except ProbeFailure as failure:
        print(f"corral probe: error: {failure}", file=err)
        return FAILURE


def _probe(target: Target, arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    started = time.monotonic()
    print(f"probing GET {target.url}", file=out, flush=True)
    alone = latency_alone(target, arguments.timeout)
    print(f"alone: {format_seconds(alone)} (fastest of 3)", file=out)
    too_quick = alone < RELIABLE_ALONE_SECONDS
    if too_quick:
        print(
            f"note: {format_seconds(alone)} is too quick to tell waiting from noise; probe "
            "an endpoint that takes 100 ms or more (corral's demo app has /slow?ms=250)",
            file=out,
        )
    print(TABLE_HEADER, file=out, flush=True)
    rounds: list[Round] = []
    while (clients := next_clients(alone, rounds, arguments.max)) is not None:
        at_once = judge(alone, rounds, arguments.max).at_once
        elapsed = time.monotonic() - started
        if elapsed + round_seconds(clients, alone, at_once) > arguments.budget:
            print(
                f"stopped: {clients} at once would pass --budget {arguments.budget:g} s",
                file=out,
            )
            break
        round_ = Round(clients, latencies_together(target, clients, arguments.timeout))
        rounds.append(round_)
        print(table_row(round_, alone), file=out, flush=True)
    verdict = judge(alone, rounds, arguments.max)
    sentence = verdict.sentence()
    if too_quick:
        sentence += " (unreliable: the endpoint is too quick)"
    print(sentence, file=out, flush=True)
    if arguments.plot is not None:
        try:
            draw(arguments.plot, alone, rounds, f"{target.url}: {sentence}")
        except (OSError, ValueError) as error:
            print(f"corral probe: error: cannot write {arguments.plot}: {error}", file=err)
            return FAILURE
        print(f"plot: {arguments.plot}", file=out)
    return VERDICT
