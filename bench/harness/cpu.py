"""Per-CPU time from /proc/stat: how busy a CPU was while a load ran.

wrk runs alone on its CPU; when that CPU is busy all along, wrk, not the server, set the
pace, and a ratio between two servers measured so says nothing about either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Busy at least this share of the run: the load generator had no time to spare.
CLIENT_BOUND_SHARE = 0.95


@dataclass(frozen=True)
class CpuTimes:
    """Clock ticks (`SC_CLK_TCK` per second) one CPU has spent since boot."""

    user: int
    """User and nice time."""
    system: int
    """Kernel time, interrupt and softirq time included: where loopback TCP delivers what
    is sent."""
    idle: int
    """Idle and I/O-wait time."""

    @property
    def total(self) -> int:
        return self.user + self.system + self.idle


def cpu_times(cpu: int) -> CpuTimes:
    """CPU `cpu`'s times from /proc/stat; RuntimeError when it has no such CPU."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system, idle, iowait, irq, softirq = map(int, line.split()[1:8])
                return CpuTimes(user + nice, system + irq + softirq, idle + iowait)
    raise RuntimeError(f"/proc/stat has no cpu{cpu}")


def busy_share(before: CpuTimes, after: CpuTimes) -> float | None:
    """The share of the time between the two readings the CPU was busy, 0.0 to 1.0; None
    when less than a clock tick passed."""
    total = after.total - before.total
    if total <= 0:
        return None
    return (after.user + after.system - before.user - before.system) / total


def tick_microseconds() -> float:
    """Microseconds per clock tick of /proc/stat."""
    return 1e6 / os.sysconf("SC_CLK_TCK")
