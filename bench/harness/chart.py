"""Draws results.png: one horizontal bar chart per scenario and app."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs on machines without a display

import matplotlib.pyplot as plt

from harness.measurements import SERVER, Measurement
from harness.scenarios import Scenario, Workload

CORRAL_COLOUR = "#d95f02"
PEER_COLOUR = "#7f8c99"
CEILING_COLOUR = "#c9d3dd"


def _colour(row: Measurement) -> str:
    if row.kind != SERVER:
        return CEILING_COLOUR
    return CORRAL_COLOUR if row.family == "corral" else PEER_COLOUR


def draw_chart(path: Path, sections: list[tuple[Scenario, Workload, list[Measurement]]]) -> bool:
    """Writes the chart; returns False (and writes nothing) when no row has a figure."""
    drawable = [
        (scenario, workload, [row for row in rows if row.succeeded])
        for scenario, workload, rows in sections
    ]
    drawable = [(scenario, workload, rows) for scenario, workload, rows in drawable if rows]
    if not drawable:
        return False
    heights = [0.9 + 0.32 * len(rows) for _, _, rows in drawable]
    figure, axes_list = plt.subplots(
        len(drawable),
        1,
        figsize=(10, sum(heights) + 0.5),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axes, (scenario, workload, rows) in zip(axes_list[:, 0], drawable, strict=True):
        ordered = sorted(rows, key=lambda row: row.median)
        # Ceilings can be a hundred times any server; clipping them keeps the
        # servers' bars readable, and their label still gives the real figure.
        servers = [row for row in ordered if row.kind == SERVER] or ordered
        limit = max(row.maximum for row in servers) * 1.3
        shown = [min(row.median, limit) for row in ordered]
        spread = [
            [max(0.0, shown[index] - row.minimum) for index, row in enumerate(ordered)],
            [max(0.0, min(row.maximum, limit) - shown[index]) for index, row in enumerate(ordered)],
        ]
        positions = list(range(len(ordered)))
        axes.barh(
            positions,
            shown,
            xerr=spread,
            color=[_colour(row) for row in ordered],
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
        axes.set_yticks(positions, [row.label for row in ordered], fontsize=8)
        for position, row, length in zip(positions, ordered, shown, strict=True):
            off_scale = row.median > limit
            note = (" (off scale)" if off_scale else "") + (" ⚠ errors" if row.flags else "")
            axes.text(
                length,
                position,
                f" {row.median:,.0f}{note} ",
                va="center",
                ha="right" if off_scale else "left",
                fontsize=7,
            )
        axes.set_title(
            f"{scenario.title}: {workload.app} ({workload.unit})", fontsize=9, loc="left"
        )
        axes.tick_params(axis="x", labelsize=7)
        axes.set_xlim(0, limit * 1.15)
        if scenario.ideal_requests_per_second:
            axes.axvline(
                scenario.ideal_requests_per_second, color="black", linewidth=0.8, linestyle="--"
            )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
