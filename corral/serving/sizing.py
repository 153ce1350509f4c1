"""How much concurrency the application needs, from how its requests spend their time.

For a sample of requests the observer takes the serving thread's CPU time
(`time.thread_time`) beside the wall time. A request that spends a fraction `f` of its
time on the CPU leaves the CPU free for the rest: about `1 / f` such requests keep one
core busy (Little's law: work in progress = throughput × time in the system). CPython
runs the Python of one process on one core at a time, so the advice is one worker
process per core, each with about `1 / f` threads: a CPU-bound application (`f` near 1)
wants one thread per core, one that waits on a database 95% of the time about twenty.
gunicorn's rule of thumb, 2 × cores + 1 sync workers, is the case `f` ≈ 0.5.

Threads of one process also wait for each other (the GIL), which a request's wall time
counts as waiting: sixteen threads computing make each request look 94% idle. So `f`
comes from the requests that waited least: the 10th percentile of wall over CPU time
across the recent samples, where a request that met no contention shows its own ratio.

The advice is logged when the setting in use is more than twice off, first once enough
requests have been measured, then at most every `REPORT_INTERVAL` seconds.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.workers import cpu_cores

error_log = logging.getLogger("corral.error")

# Seconds between measured requests: the first request begun after this much time since
# the last one measured is measured. Its two reads of the thread's CPU clock cost a
# system call each, about a microsecond on a virtual machine: bounded in time, the cost
# stays at some hundred system calls a second however many requests are served, where
# one request in eight cost 2% of a hello-world's throughput at 80,000 requests/s.
SAMPLE_INTERVAL = 0.01
# Samples and seconds of serving before the first advice, and seconds between advice.
FIRST_SAMPLES = 16
FIRST_SECONDS = 3.0
REPORT_INTERVAL = 300.0
# Threads per worker the advice never goes beyond: past it, memory and the GIL's
# switching cost more than the waiting they would cover.
MAX_THREADS = 256
# Samples kept for the percentile of wall over CPU time.
RECENT = 256
# Seconds between resizings of an adaptive pool (--threads auto).
ADAPT_INTERVAL = 10.0
# An adaptive pool is resized only when the advice differs from it by this factor.
ADAPT_FACTOR = 1.5


@dataclass(frozen=True)
class Advice:
    """What the measured requests say. `cpu_fraction` is CPU time over wall time, 0 to 1."""

    samples: int
    cpu_fraction: float
    cores: int
    workers: int
    threads: int
    current_workers: int
    current_threads: int

    @property
    def concurrency(self) -> int:
        return self.workers * self.threads

    @property
    def far_off(self) -> bool:
        """True when the setting in use is more than twice off the advice, either way."""
        current = max(1, self.current_workers) * self.current_threads
        return current * 2 < self.concurrency or current > 2 * self.concurrency

    def text(self) -> str:
        waiting = 1.0 - self.cpu_fraction
        cores = f"{self.cores} core{'s' if self.cores != 1 else ''}"
        plural = "s" if self.threads != 1 else ""
        if self.current_workers:
            advice = f"{self.workers} workers × {self.threads} thread{plural}"
            current = f"{self.current_workers} × {self.current_threads}"
        else:
            advice = f"{self.threads} thread{plural} per process, one process per core"
            current = f"{self.current_threads}"
        return (
            f"requests wait {waiting:.0%} of their time on I/O and spend {self.cpu_fraction:.0%}"
            f" on the CPU: with {cores}, about {advice} would keep the CPUs busy; you have "
            f"{current}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "cpu_fraction": round(self.cpu_fraction, 4),
            "wait_fraction": round(1.0 - self.cpu_fraction, 4),
            "cores": self.cores,
            "advised_workers": self.workers,
            "advised_threads_per_worker": self.threads,
            "far_off": self.far_off,
            "text": self.text(),
        }


def advise_from_share(
    cpu_fraction: float, samples: int, cores: int, current_workers: int, current_threads: int
) -> Advice:
    """The advice for requests that spend `cpu_fraction` (0 to 1) of their time on the
    CPU: the share several processes' samples agree on (the stats report's)."""
    ratio = 1.0 / max(cpu_fraction, 1.0 / MAX_THREADS)
    threads = min(MAX_THREADS, max(1, round(ratio)))
    return Advice(
        samples, 1.0 / ratio, cores, cores, threads, current_workers, max(1, current_threads)
    )


def advise(
    ratios: list[float],
    cores: int,
    current_workers: int,
    current_threads: int,
) -> Advice:
    """The advice from requests' wall time over CPU time (`ratios`, each at least 1).

    `current_workers` is 0 for a single process; `current_threads` is the requests one
    process serves at once."""
    if ratios:
        ordered = sorted(ratios)
        ratio = max(1.0, ordered[len(ordered) // 10])
    else:
        ratio = 1.0
    threads = min(MAX_THREADS, max(1, round(ratio)))
    return Advice(
        len(ratios), 1.0 / ratio, cores, cores, threads, current_workers, max(1, current_threads)
    )


class SizingObserver:
    """CPU against wall time on a sample of requests, and the advice logged when the
    setting in use is far from it.

    Not one of the request observers: those cost every request a record and two calls.
    The connection compares a request's start with `next_sample` itself and, when it is
    due, moves `next_sample` on by `SAMPLE_INTERVAL`, reads the thread's CPU clock before
    and after the request and calls `sampled`."""

    def __init__(self, current_workers: int, current_threads: int, cores: int = 0) -> None:
        self.current_workers = current_workers
        self.current_threads = current_threads
        self.cores = cores or cpu_cores()
        self.lock = threading.Lock()
        # When (monotonic seconds) the next request begun is measured; moved on by the
        # connection without a lock: two threads that both take one sample is harmless.
        self.next_sample = 0.0
        self.samples = 0
        # Wall time over CPU time of the latest `RECENT` samples.
        self.ratios: collections.deque[float] = collections.deque(maxlen=RECENT)
        self.began = time.monotonic()
        self.next_report = self.began + FIRST_SECONDS
        self.interval = REPORT_INTERVAL
        # --threads auto: given the advice, resizes the pool to the threads advised.
        self.resize: Callable[[int], None] | None = None

    def adapt(self, resize: Callable[[int], None]) -> None:
        """Follow the advice: call `resize(threads)` when it differs enough from the
        threads in use (--threads auto), every `ADAPT_INTERVAL` seconds at most."""
        self.resize = resize
        self.interval = ADAPT_INTERVAL

    def sampled(self, cpu: float, seconds: float) -> None:
        """One sampled request took `cpu` seconds of its thread's CPU in `seconds`."""
        with self.lock:
            self.samples += 1
            # A clock tick's worth of CPU at least: a request that waited all along
            # would otherwise divide by zero.
            self.ratios.append(max(1.0, seconds / max(cpu, 1e-5)))
            due = self.samples >= FIRST_SAMPLES and time.monotonic() >= self.next_report
            if due:
                self.next_report = time.monotonic() + self.interval
        if not due:
            return
        advice = self.advice()
        if advice is None:
            return
        if self.resize is not None:
            self._follow(advice)
        elif advice.far_off:
            error_log.warning("Sizing: %s", advice.text())

    def _follow(self, advice: Advice) -> None:
        current = self.current_threads
        wanted = advice.threads
        if wanted * ADAPT_FACTOR >= current and current * ADAPT_FACTOR >= wanted:
            return
        assert self.resize is not None
        self.resize(wanted)
        self.current_threads = wanted
        error_log.info(
            "Threads: %d -> %d (--threads auto): requests wait %.0f%% of their time on I/O",
            current,
            wanted,
            100 * (1.0 - advice.cpu_fraction),
        )

    def advice(self) -> Advice | None:
        """The advice from the requests measured so far; None before any."""
        with self.lock:
            if not self.ratios:
                return None
            ratios = list(self.ratios)
        return advise(ratios, self.cores, self.current_workers, self.current_threads)
