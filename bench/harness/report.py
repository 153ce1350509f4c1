"""Writes results.md from the measurements; the file is regenerated on every run."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import memory
from harness.cpu import CLIENT_BOUND_SHARE
from harness.measurements import IN_PROCESS_CEILING, NGINX_CEILING, SERVER, Measurement
from harness.memory import MemoryMeasurement
from harness.processes import MemorySample, ProcessMemory
from harness.scenarios import Scenario, Workload
from harness.servers import REFERENCE_NAMES


@dataclass(frozen=True)
class RunContext:
    command: str
    started_utc: str
    duration_minutes: float
    machine: str
    load_averages: tuple[float, float]
    """One-minute load average at start and at end: above zero, other work shared the CPUs."""
    versions: dict[str, str]
    runs: int
    seconds: float
    notes: list[str]


# Shown where a figure does not exist; the escape keeps the source ASCII.
MISSING = "\N{EN DASH}"
# Beside a figure measured while wrk's CPU was busy all along (`Measurement.client_bound`).
CLIENT_BOUND_MARK = "\N{DOUBLE DAGGER}"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def _ratio(value: float, reference: float | None) -> str:
    if not reference:
        return MISSING
    return f"{value / reference:.2f}×"


def _milliseconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _memory(sample: MemorySample | None) -> str:
    if sample is None or sample.process_count == 0:
        return MISSING
    if sample.process_count == 1:
        return f"{sample.rss_kib / 1024:.1f} MiB"
    return (
        f"{sample.rss_kib / 1024:.1f} MiB ({sample.process_count} proc, "
        f"largest {sample.largest_kib / 1024:.1f})"
    )


def corral_best(rows: list[Measurement]) -> Measurement | None:
    candidates = [row for row in rows if row.family == "corral" and row.succeeded]
    return max(candidates, key=lambda row: row.median, default=None)


def fastest_peer(rows: list[Measurement]) -> Measurement | None:
    candidates = [
        row for row in rows if row.kind == SERVER and row.family != "corral" and row.succeeded
    ]
    return max(candidates, key=lambda row: row.median, default=None)


def reference_row(rows: list[Measurement], name: str) -> Measurement | None:
    return next((row for row in rows if row.reference == name and row.succeeded), None)


def ceiling_row(rows: list[Measurement], kind: str) -> Measurement | None:
    return next((row for row in rows if row.kind == kind and row.succeeded), None)


def _row_order(row: Measurement) -> tuple[int, float]:
    # Servers by figure, then the ceilings, then rows without figures.
    if not row.succeeded:
        return (2, 0.0)
    return (0 if row.kind == SERVER else 1, -row.median)


def _ratio_of(value: float | None, reference: float | None) -> str:
    return MISSING if value is None else _ratio(value, reference)


Column = tuple[str, Callable[[Measurement], str]]
"""A table column: its header and its cell for a row that has figures."""


def _columns(scenario: Scenario, workload: Workload, rows: list[Measurement]) -> list[Column]:
    best = corral_best(rows)
    best_figure = best.median if best else None
    ideal = scenario.ideal_requests_per_second
    peer = fastest_peer(rows) if scenario.compare_with_fastest_peer else None
    reference = reference_row(rows, scenario.compare_with) if scenario.compare_with else None
    side = scenario.side_load
    # With a side load the latencies are the main load's alone: say whose they are.
    latency = f"{scenario.main_name} " if side and scenario.main_name else ""
    columns: list[Column] = [
        (f"{workload.unit} (median)", lambda row: _number(row.median)),
        (
            "min \N{EN DASH} max",
            lambda row: f"{_number(row.minimum)} \N{EN DASH} {_number(row.maximum)}",
        ),
        ("vs corral best", lambda row: _ratio(row.median, best_figure)),
    ]
    if scenario.compare_with_fastest_peer:
        columns.append(
            ("vs fastest peer", lambda row: _ratio(row.median, peer.median if peer else None))
        )
    if scenario.compare_with:
        columns.append(
            (
                f"vs {scenario.compare_with}",
                lambda row: _ratio(row.median, reference.median if reference else None),
            )
        )
    if ideal:
        columns.append(("of ideal", lambda row: f"{row.median / ideal:.0%}"))
    columns += [
        (f"{latency}p50 ms", lambda row: _milliseconds(row.median_p50_ms)),
        (f"{latency}p99 ms", lambda row: _milliseconds(row.median_p99_ms)),
    ]
    if side and scenario.compare_with:
        reference_p99 = reference.median_p99_ms if reference else None
        columns.append(
            (
                f"{latency}p99 vs {scenario.compare_with}",
                lambda row: _ratio_of(row.median_p99_ms, reference_p99),
            )
        )
    if side:
        columns += [
            (
                f"{side.name} req/s",
                lambda row: _number_or_missing(row.median_side_requests_per_second),
            ),
            (f"{side.name} p99 ms", lambda row: _milliseconds(row.median_side_p99_ms)),
        ]
    if any(row.median_client_busy is not None for row in rows):
        columns.append(("wrk CPU busy", _client_busy))
    return columns


def _client_busy(row: Measurement) -> str:
    busy = row.median_client_busy
    if busy is None:
        return MISSING
    return f"{busy:.0%}" + (f" {CLIENT_BOUND_MARK}" if row.client_bound else "")


def _number_or_missing(value: float | None) -> str:
    return MISSING if value is None else _number(value)


def _table(scenario: Scenario, workload: Workload, rows: list[Measurement]) -> list[str]:
    best = corral_best(rows)
    columns = _columns(scenario, workload, rows)
    header = ["server", *(name for name, _ in columns), "RSS idle", "RSS after", "flags"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(rows, key=_row_order):
        label = row.label if row.kind == SERVER else f"*{row.label}*"
        if not row.succeeded:
            cells = [label, *(MISSING for _ in columns)]
            cells += [_memory(row.rss_idle), MISSING, row.failure or "no runs"]
        else:
            flags = "; ".join(filter(None, [row.failure, *row.flags]))
            cells = [f"**{label}**" if row is best else label]
            cells += [cell(row) for _, cell in columns]
            cells += [_memory(row.rss_idle), _memory(row.rss_after), f"⚠ {flags}" if flags else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _summary(
    scenarios: list[tuple[Scenario, Workload, list[Measurement]]],
) -> list[str]:
    header = ["scenario", "app", "corral best", "figure"]
    header += [f"vs {name}" for name in REFERENCE_NAMES]
    header += ["of nginx", "of in-process"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario, workload, rows in scenarios:
        best = corral_best(rows)
        if best is None:
            cells = [scenario.key, workload.app, "no result", MISSING]
            cells += [MISSING] * (len(header) - len(cells))
        else:
            cells = [
                scenario.key,
                workload.app,
                best.label,
                f"{_number(best.median)} {workload.unit}",
            ]
            for name in REFERENCE_NAMES:
                reference = reference_row(rows, name)
                ratio = _ratio(best.median, reference.median if reference else None)
                if reference is not None and best.client_bound and reference.client_bound:
                    # Both at wrk's pace: the ratio says nothing about either server.
                    ratio += f" {CLIENT_BOUND_MARK}"
                cells.append(ratio)
            for kind in (NGINX_CEILING, IN_PROCESS_CEILING):
                ceiling = ceiling_row(rows, kind)
                cells.append(f"{best.median / ceiling.median:.0%}" if ceiling else MISSING)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


STATS_SUFFIX = " --stats"


def _stats_cost(sections: list[tuple[Scenario, Workload, list[Measurement]]]) -> list[str]:
    """One row per corral configuration measured both with and without --stats (the
    slot table written, its listener open, not scraped): the change of the median
    figure, with the extremes (each run with --stats against each without)."""
    header = ["scenario", "app", "configuration", "without", "with --stats", "cost", "range"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    found = False
    for scenario, workload, rows in sections:
        by_label = {row.label: row for row in rows if row.succeeded}
        for label, with_stats in by_label.items():
            without = by_label.get(label.removesuffix(STATS_SUFFIX))
            if not label.endswith(STATS_SUFFIX) or without is None:
                continue
            found = True
            if len(with_stats.runs) == len(without.runs):
                # Measured in alternation (`measure_interleaved`): each run beside its pair.
                costs = sorted(
                    1 - stats_run.figure / plain_run.figure
                    for plain_run, stats_run in zip(without.runs, with_stats.runs, strict=True)
                )
                cost = statistics.median(costs)
                best, worst = costs[0], costs[-1]
            else:
                cost = 1 - with_stats.median / without.median
                worst = 1 - with_stats.minimum / without.maximum
                best = 1 - with_stats.maximum / without.minimum
            cells = [
                scenario.key,
                workload.app,
                f"`{without.label}`",
                f"{_number(without.median)} {workload.unit}",
                f"{_number(with_stats.median)} {workload.unit}",
                f"{cost:+.1%}",
                f"{best:+.1%} to {worst:+.1%}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines if found else []


def _mebibytes(kib: int | None) -> str:
    return MISSING if not kib else f"{kib / 1024:.1f}"


def _memory_table(rows: list[MemoryMeasurement]) -> list[str]:
    reference = next(
        (row.worker_idle for row in rows if row.reference == memory.REFERENCE and row.worker_idle),
        None,
    )
    header = [
        "server", "processes", "worker RSS idle", f"vs {memory.REFERENCE} worker",
        "worker PSS idle", "worker USS idle",
        f"worker RSS after {memory.REQUESTS_BETWEEN_SAMPLES} requests", "master RSS",
        "master + worker PSS", "notes",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        idle: ProcessMemory | None = row.worker_idle
        if idle is None:
            cells = [row.label] + [MISSING] * (len(header) - 2) + [row.failure or "no worker found"]
        else:
            after = row.worker_after
            cells = [
                row.label,
                str(row.process_count),
                _mebibytes(idle.rss_kib),
                _ratio(idle.rss_kib, reference.rss_kib if reference else None),
                _mebibytes(idle.pss_kib),
                _mebibytes(idle.uss_kib),
                _mebibytes(after.rss_kib if after else None),
                _mebibytes(row.master.rss_kib) if row.master else "no master",
                _mebibytes(idle.pss_kib + (row.master.pss_kib if row.master else 0)),
                "; ".join(row.notes),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(
    context: RunContext,
    sections: list[tuple[Scenario, Workload, list[Measurement]]],
    memory_rows: list[MemoryMeasurement],
    chart_name: str | None,
) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in context.versions.items())
    lines = [
        "# corral benchmark results",
        "",
        "Written by the harness on every run; edits are lost. How to read it: `bench/README.md`.",
        "",
        f"- Command: `{context.command}`",
        f"- Date: {context.started_utc} (took {context.duration_minutes:.1f} min)",
        f"- Machine: {context.machine}; load average {context.load_averages[0]:.2f} at "
        f"start, {context.load_averages[1]:.2f} at end",
        f"- Versions: {versions}",
        f"- Each figure is the median of {context.runs} run(s) of {context.seconds:g} s, "
        "min \N{EN DASH} max beside it, after a 1 s warm-up. Server on CPU 0 (`taskset -c 0`), "
        "`wrk -t1` on CPU 1, except in C2: there the server's processes run on both CPUs "
        "and share CPU 1 with wrk.",
        "- RSS is VmRSS from /proc, summed over the server's process tree (master and "
        "worker both counted where there are two, pages shared after fork twice; the "
        "largest single process, the worker, is given beside the sum). "
        "Idle: after start, before load. After: after the last run.",
        "- ⚠ marks runs with socket errors or non-2xx answers; their figures are suspect.",
        f"- wrk CPU busy: the share of each run CPU 1 was busy (`/proc/stat`). "
        f"{CLIENT_BOUND_MARK} marks {CLIENT_BOUND_SHARE:.0%} or more: wrk, not the server, "
        "set the pace, and in the summary a ratio between two servers both so marked "
        "measures the client alone.",
    ]
    lines += [f"- {note}" for note in context.notes]
    lines += [
        "",
        "## Summary",
        "",
        "corral's best configuration in each table, divided by each reference "
        "(above 1.00× means corral is faster), and as a share of the ceilings.",
        "",
        *_summary(sections),
    ]
    stats_cost = _stats_cost(sections)
    if stats_cost:
        lines += [
            "",
            "## The cost of --stats",
            "",
            "What seeing the concurrency costs: each configuration with the slot table "
            "written and the --stats listener open (not scraped) against the same without, "
            "measured in alternation, a fresh instance of each per run. Cost is the median "
            "over the runs of each run's drop against the run beside it (negative: faster "
            "with it); the range is the least and the most of those drops.",
            "",
            *stats_cost,
        ]
    if chart_name:
        lines += ["", f"![figures]({chart_name})"]
    current_scenario = None
    for scenario, workload, rows in sections:
        if scenario is not current_scenario:
            current_scenario = scenario
            lines += ["", f"## {scenario.title}", "", scenario.explanation]
        lines += ["", f"### {workload.app}", "", *_table(scenario, workload, rows)]
    if memory_rows:
        lines += ["", f"## {memory.TITLE}", "", memory.EXPLANATION, ""]
        lines += _memory_table(memory_rows)
    return "\n".join(lines) + "\n"


def write_report(path: Path, text: str) -> None:
    path.write_text(text)
