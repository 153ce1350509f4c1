"""Draws results.png: one horizontal bar chart per scenario and app."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs on machines without a display

import matplotlib.pyplot as plt  # noqa: E402

from harness.measurements import SERVER, Measurement  # noqa: E402
from harness.scenarios import Scenario, Workload  # noqa: E402

CORRAL_COLOUR = "#d95f02"
PEER_COLOUR = "#7f8c99"
CEILING_COLOUR = "#c9d3dd"


def _colour(row: Measurement) -> str:
    if row.kind != SERVER:
        return CEILING_COLOUR
    return CORRAL_COLOUR if row.family == "corral" else PEER_COLOUR


def draw_chart(
    path: Path, sections: list[tuple[Scenario, Workload, list[Measurement]]]
) -> bool:
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
        medians = [row.median for row in ordered]
        spread = [
            [row.median - row.minimum for row in ordered],
            [row.maximum - row.median for row in ordered],
        ]
        positions = range(len(ordered))
        axes.barh(
            positions,
            medians,
            xerr=spread,
            color=[_colour(row) for row in ordered],
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
        axes.set_yticks(list(positions), [row.label for row in ordered], fontsize=8)
        for position, row in zip(positions, ordered, strict=True):
            marker = " ⚠" if row.flags else ""
            axes.text(row.median, position, f" {row.median:,.0f}{marker}", va="center", fontsize=7)
        axes.set_title(f"{scenario.title} — {workload.app} ({workload.unit})", fontsize=9, loc="left")
        axes.tick_params(axis="x", labelsize=7)
        axes.set_xlim(0, max(row.maximum for row in ordered) * 1.18)
        if scenario.ideal_requests_per_second:
            axes.axvline(scenario.ideal_requests_per_second, color="black", linewidth=0.8,
                         linestyle="--")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
