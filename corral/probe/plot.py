"""`--plot FILE.png`: each request's latency against how many were sent at once, drawn
with matplotlib (`pip install 'corral[plot]'`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from corral.probe.verdict import Round, latest_rounds, waiting_limit

INSTALL_HINT = "--plot needs matplotlib: pip install 'corral[plot]'"


class PlotUnavailable(Exception):
    """matplotlib is not installed; the message says how to install it."""


def check_plotting() -> None:
    """Raise PlotUnavailable, before anything is measured, if matplotlib is missing."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PlotUnavailable(INSTALL_HINT)


def draw(path: Path, alone: float, rounds: Sequence[Round], title: str) -> None:
    """Write the chart to `path`, its format from the suffix (.png, .svg, .pdf): one dot per
    request, the slowest of each round joined, and lines at the latency alone and at the
    limit past which a request counts as having waited. Raises PlotUnavailable without
    matplotlib, OSError or ValueError when the file cannot be written in that format."""
    try:
        # The object API draws without pyplot's global figures or a display.
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise PlotUnavailable(INSTALL_HINT) from None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for round_ in rounds:
        axes.scatter(
            [round_.clients] * len(round_.latencies),
            round_.latencies,
            s=14,
            color="tab:blue",
            alpha=0.6,
        )
    latest = sorted(latest_rounds(rounds).items())
    axes.plot(
        [clients for clients, _ in latest],
        [max(round_.latencies) for _, round_ in latest],
        color="tab:blue",
        label="slowest request",
    )
    axes.axhline(alone, color="tab:green", linestyle=":", label="one request alone")
    axes.axhline(waiting_limit(alone), color="tab:red", linestyle="--", label="waited, above this")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("requests sent at once")
    axes.set_ylabel("latency (s)")
    axes.set_ylim(bottom=0)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left")
    figure.savefig(path)
