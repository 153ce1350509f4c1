"""Command line of the harness: python -m harness [--quick] [--only ...] [--scenarios ...].

Normally started by bench/run, which first builds the bench virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType

from harness.ceilings import measure_in_process, measure_nginx
from harness.certificates import write_certificate
from harness.chart import draw_chart
from harness.environment import (
    PACKAGES,
    corral_revision,
    describe_machine,
    package_version,
    tool_versions,
)
from harness.measurements import Measurement
from harness.memory import run_memory_section
from harness.processes import LOOPBACK, find_free_port
from harness.report import RunContext, render, write_report
from harness.runner import RunSettings, measure_under_load, server_environment
from harness.scenarios import (
    Scenario,
    Workload,
    memory_selected,
    select_scenarios,
    select_workloads,
)
from harness.servers import SERVER_VARIANTS, ServerVariant, select_variants

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
FULL_RUNS, FULL_SECONDS = 3, 10.0
QUICK_RUNS, QUICK_SECONDS = 1, 3.0

Section = tuple[Scenario, Workload, list[Measurement]]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmarks corral against other WSGI servers on this machine.",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"scenario A (hello) and C, fewer peers, {QUICK_RUNS} run of {QUICK_SECONDS:g} s",
    )  # fmt: skip
    parser.add_argument(
        "--only", type=_comma_list,
        help="server families to run, e.g. corral,granian (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--scenarios", type=_comma_list,
        help="any of A,B,C,C2,D,E,T and M (memory), e.g. C2,M (default: all)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, help="timed runs per figure (median is reported)")
    parser.add_argument("--duration", type=float, help="seconds per timed run")
    parser.add_argument(
        "--output", type=Path, default=BENCH_DIR,
        help="directory for results.md, results.png, results.json and results-logs/",
    )  # fmt: skip
    return parser.parse_args(argv)


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def measure_variant(
    variant: ServerVariant, scenario: Scenario, workload: Workload, settings: RunSettings
) -> Measurement:
    measurement = Measurement(
        scenario=scenario.key,
        app=workload.app,
        label=variant.label,
        family=variant.family,
        reference=variant.reference,
    )
    if not variant.is_installed():
        measurement.failure = f"not installed ({variant.import_name} does not import)"
        return measurement
    port = find_free_port()
    argv = variant.argv(settings.python, LOOPBACK, port, workload.app, settings.certificate)
    return measure_under_load(argv, measurement, scenario, workload, settings, port)


STATS_SUFFIX = " --stats"


def measure_interleaved(
    pair: tuple[ServerVariant, ServerVariant],
    scenario: Scenario,
    workload: Workload,
    settings: RunSettings,
) -> tuple[Measurement, Measurement]:
    """A configuration and its --stats twin, alternating, a fresh instance of each for
    every timed run: the difference between them is then --stats, not which instance
    (its memory layout, its hash seed) or which minute of the machine each ran in. The
    figures of one instance differ by a few percent from another's, more than what
    --stats costs."""
    one_run = replace(settings, runs=1)
    totals: list[Measurement] = []
    for _ in range(settings.runs):
        for index, variant in enumerate(pair):
            single = measure_variant(variant, scenario, workload, one_run)
            if len(totals) <= index:
                totals.append(single)
                continue
            total = totals[index]
            if total.failure is None:
                total.failure = single.failure
            total.runs += single.runs
            total.rss_after = single.rss_after
    return totals[0], totals[1]


def _progress(measurement: Measurement, workload: Workload) -> str:
    if not measurement.succeeded:
        return f"{measurement.failure}"
    flag = "  ⚠ " + "; ".join(measurement.flags) if measurement.flags else ""
    p99 = measurement.median_p99_ms
    latency = f", p99 {p99:.1f} ms" if p99 is not None else ""
    return f"{measurement.median:,.0f} {workload.unit}{latency}{flag}"


def run_sections(
    scenarios: list[Scenario], families: set[str] | None, quick: bool, settings: RunSettings
) -> list[Section]:
    sections: list[Section] = []
    for scenario in scenarios:
        variants = select_variants(scenario.profile, families, quick)
        for workload in select_workloads(scenario, quick):
            print(f"\n== {scenario.title}: {workload.app}", flush=True)
            rows: list[Measurement] = []
            labels = {variant.label: variant for variant in variants}
            for variant in variants:
                twin = labels.get(variant.label + STATS_SUFFIX)
                if twin is not None:
                    print(f"   {variant.label:<40} and its --stats twin, alternating", flush=True)
                    pair = (variant, twin)
                    for measured in measure_interleaved(pair, scenario, workload, settings):
                        rows.append(measured)
                        print(f"   {measured.label:<40}", _progress(measured, workload), flush=True)
                    continue
                if variant.label.endswith(STATS_SUFFIX) and (
                    variant.label.removesuffix(STATS_SUFFIX) in labels
                ):
                    continue
                print(f"   {variant.label:<40}", end=" ", flush=True)
                rows.append(measure_variant(variant, scenario, workload, settings))
                print(_progress(rows[-1], workload), flush=True)
            if scenario.nginx_ceiling and workload.app == "hello":
                print(f"   {'nginx (ceiling)':<40}", end=" ", flush=True)
                rows.append(measure_nginx(scenario, workload, settings))
                print(_progress(rows[-1], workload), flush=True)
            if scenario.ideal_requests_per_second is None and scenario.in_process_ceiling:
                print(f"   {'in-process call loop (ceiling)':<40}", end=" ", flush=True)
                rows.append(measure_in_process(scenario, workload, settings))
                print(_progress(rows[-1], workload), flush=True)
            sections.append((scenario, workload, rows))
    return sections


def _stop_on_terminate(signal_number: int, frame: FrameType | None) -> None:
    # Unwinds through the try/finally blocks that stop each server.
    raise SystemExit(128 + signal_number)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    signal.signal(signal.SIGTERM, _stop_on_terminate)
    signal.signal(signal.SIGHUP, _stop_on_terminate)
    quick = arguments.quick
    try:
        scenarios = select_scenarios(arguments.scenarios, quick)
    except ValueError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    families = set(arguments.only) if arguments.only else None
    if families is not None:
        known = {variant.family for variant in SERVER_VARIANTS}
        if families - known:
            print(
                f"bench: unknown servers {sorted(families - known)}; known: {sorted(known)}",
                file=sys.stderr,
            )
            return 2
    output_dir: Path = arguments.output.resolve()
    log_dir = output_dir / "results-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Logs of servers from an earlier run would pass for this run's.
    for stale in log_dir.glob("*.log"):
        if stale.name != "setup.log":
            stale.unlink()
    settings = RunSettings(
        bench_dir=BENCH_DIR,
        log_dir=log_dir,
        python=Path(sys.executable),
        server_env=server_environment(BENCH_DIR, REPO_DIR),
        runs=arguments.runs or (QUICK_RUNS if quick else FULL_RUNS),
        seconds=arguments.duration or (QUICK_SECONDS if quick else FULL_SECONDS),
    )
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python", "-m", "harness", *argv])
    started = time.time()
    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    load_at_start = os.getloadavg()[0]
    print(f"bench: {command}\nbench: logs in {log_dir}", flush=True)
    if load_at_start > 0.5:
        # Both CPUs are in use by the benchmark; anything else running skews it.
        print(
            f"bench: warning: load average {load_at_start:.2f}; other work, or a run that"
            " just ended, may skew the figures",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="corral-bench-") as run_dir:
        if any(scenario.tls for scenario in scenarios):
            settings = replace(settings, certificate=write_certificate(Path(run_dir)))
        sections = run_sections(scenarios, families, quick, settings)
    memory_rows = (
        run_memory_section(families, settings)
        if memory_selected(arguments.scenarios, quick)
        else []
    )

    versions = {name: package_version(name) or "not installed" for name in PACKAGES}
    versions["corral"] = f"{versions['corral']} ({corral_revision(REPO_DIR)})"
    versions.update(tool_versions())
    notes = [line for line in os.environ.get("BENCH_SETUP_NOTES", "").split("\n") if line]
    context = RunContext(
        command=command,
        started_utc=started_utc,
        duration_minutes=(time.time() - started) / 60,
        machine=describe_machine(),
        load_averages=(load_at_start, os.getloadavg()[0]),
        versions=versions,
        runs=settings.runs,
        seconds=settings.seconds,
        notes=notes,
    )
    chart_path = output_dir / "results.png"
    chart_drawn = draw_chart(chart_path, sections)
    if not chart_drawn:
        chart_path.unlink(missing_ok=True)
    report_path = output_dir / "results.md"
    write_report(
        report_path,
        render(context, sections, memory_rows, chart_path.name if chart_drawn else None),
    )
    raw = [
        {"scenario": scenario.key, "app": workload.app, "unit": workload.unit,
         "rows": [asdict(row) for row in rows]}
        for scenario, workload, rows in sections
    ]  # fmt: skip
    (output_dir / "results.json").write_text(
        json.dumps(
            {
                "context": asdict(context),
                "sections": raw,
                "memory": [asdict(row) for row in memory_rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nbench: wrote {report_path}" + (f" and {chart_path}" if chart_drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
