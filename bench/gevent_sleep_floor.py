"""The fastest any gevent server can answer scenario C2's app: gevent's own sleep, alone.

    bench/.venv/bin/python bench/gevent_sleep_floor.py

With gevent's monkey-patching, 100 greenlets call `time.sleep(0.02)` over and over, as
the 100 requests in flight in each of C2's two workers do, with no server and no
sockets. The median time a sleep takes bounds C2 under gevent to 200 connections /
median requests/s, whatever the server does around it.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import statistics  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

GREENLETS = 100
SLEEPS_EACH = 50
CONNECTIONS = 200


def sleeper(durations: list[float]) -> None:
    for _ in range(SLEEPS_EACH):
        started = time.perf_counter()
        time.sleep(0.02)
        durations.append(time.perf_counter() - started)


def main() -> None:
    durations: list[float] = []
    gevent.joinall([gevent.spawn(sleeper, durations) for _ in range(GREENLETS)])
    median = statistics.median(durations)
    print(
        f"{GREENLETS} greenlets, time.sleep(0.02): median {median * 1000:.2f} ms; "
        f"C2's ceiling under gevent: {CONNECTIONS / median:,.0f} requests/s"
    )


if __name__ == "__main__":
    main()
