"""`corral top ADDRESS [--interval S] [--slow S] [--once]`.

On a terminal, a live view redrawn every `--interval` seconds (rich, `corral[top]`);
elsewhere, or without rich, the same screen as plain text every interval; `--once` prints
it once. Exit status: 0 after `--once` or Ctrl-C, 1 when the stats cannot be read (one
line says why), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from corral.top.screen import plain_screen
from corral.top.stats import (
    BadAddress,
    Stats,
    StatsAddress,
    StatsFailure,
    fetch_stats,
    parse_address,
)

SHOWN = 0
FAILURE = 1
USAGE = 2

DEFAULT_INTERVAL = 1.0
DEFAULT_SLOW = 1.0
# Seconds to wait for the stats listener to connect and to answer. It answers from a
# thread of its own outside the app's concurrency, so a busy server still answers at once.
FETCH_TIMEOUT = 5.0
MIN_INTERVAL = 0.1

RICH_MISSING = "corral top: the live view needs rich: pip install 'corral[top]'; plain text follows"
DESCRIPTION = (
    "Watch a running corral's concurrency: one line per worker (state, busy/total slots, "
    "served, p50/p99, memory, restarts), one per request in flight (age, worker, thread, "
    "method, path), and a verdict at the top. ADDRESS is what the server's --stats was "
    "given: HOST:PORT, or a port alone for 127.0.0.1."
)
EPILOG = (
    "On a terminal the view is live (needs rich: pip install 'corral[top]'); otherwise, or "
    "with --once, it is plain text. Exit status: 0 after --once or Ctrl-C, 1 when the stats "
    "cannot be read (one line says why), 2 for a wrong command line."
)


class UsageError(Exception):
    """The command line is wrong; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _seconds(minimum: float) -> Callable[[str], float]:
    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not minimum <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g} seconds, not {text}")
        return value

    return seconds


def make_parser() -> argparse.ArgumentParser:
    """The `corral top` command line."""
    parser = _Parser(prog="corral top", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("address", metavar="ADDRESS", help="the server's --stats HOST:PORT")
    parser.add_argument(
        "--interval",
        type=_seconds(MIN_INTERVAL),
        default=DEFAULT_INTERVAL,
        metavar="S",
        help=f"Read the stats every S seconds (default: {DEFAULT_INTERVAL:g}).",
    )
    parser.add_argument(
        "--slow",
        type=_seconds(0.0),
        default=DEFAULT_SLOW,
        metavar="S",
        help="Mark requests that have been in the app S seconds or more "
        f"(default: {DEFAULT_SLOW:g}).",
    )
    parser.add_argument(
        "--once", action="store_true", help="Print the screen once, as plain text, and exit."
    )
    return parser


def main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `corral top` with `argv` (the words after "top"): the exit status. The screen goes
    to `out` (standard output), failures to `err` (standard error), one line each."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        arguments = make_parser().parse_args(argv)
        address = parse_address(arguments.address)
    except (UsageError, BadAddress) as error:
        print(f"corral top: error: {error}", file=err)
        return USAGE
    try:
        _show(address, arguments, out, err)
    except StatsFailure as failure:
        print(f"corral top: error: {failure}", file=err)
        return FAILURE
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader of a pipe (`corral top | head`) has gone: done. Standard output is
        # pointed at /dev/null so that flushing it at exit does not fail again.
        if out is sys.stdout:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
    return SHOWN


def _show(address: StatsAddress, arguments: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    def read() -> Stats:
        return fetch_stats(address, FETCH_TIMEOUT)

    shown = f"{address.host}:{address.port}"
    stats = read()
    if arguments.once:
        out.write(plain_screen(stats, shown, arguments.slow))
        out.flush()
        return
    if out.isatty():
        try:
            from corral.top.live import watch
        except ImportError:
            print(RICH_MISSING, file=err, flush=True)
        else:
            watch(read, stats, shown, arguments.interval, arguments.slow, out)
            return
    deadline = time.monotonic()
    while True:
        out.write(plain_screen(stats, shown, arguments.slow) + "\n")
        out.flush()
        deadline = max(deadline + arguments.interval, time.monotonic())
        time.sleep(max(0.0, deadline - time.monotonic()))
        stats = read()
