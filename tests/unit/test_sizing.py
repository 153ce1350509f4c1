"""The sizing advice from wall and CPU time (corral.serving.sizing)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from corral.serving.sizing import MAX_THREADS, SAMPLE_INTERVAL, SizingObserver, advise
from tests.socket_pair import connection_pair, serving_state


def test_an_application_waiting_on_io_is_advised_many_threads() -> None:
    # 2 ms of CPU in 50 ms: 25 requests keep a core busy.
    advice = advise([25.0] * 100, cores=2, current_workers=0, current_threads=4)
    assert (advice.workers, advice.threads) == (2, 25)
    assert advice.far_off
    assert "requests wait 96% of their time on I/O" in advice.text()
    assert "about 25 threads per process, one process per core" in advice.text()
    assert advice.text().endswith("you have 4")


def test_a_cpu_bound_application_is_advised_one_thread_per_core() -> None:
    advice = advise([1.02] * 100, cores=4, current_workers=4, current_threads=8)
    assert (advice.workers, advice.threads) == (4, 1)
    assert advice.far_off
    assert "about 4 workers × 1 thread would keep the CPUs busy; you have 4 × 8" in advice.text()


def test_waiting_for_other_threads_is_not_taken_for_io() -> None:
    # Sixteen threads computing: most requests waited for the others, a few did not.
    ratios = [16.0] * 85 + [1.1] * 15
    assert advise(ratios, cores=2, current_workers=0, current_threads=16).threads == 1


def test_a_setting_within_twice_the_advice_is_left_alone() -> None:
    advice = advise([5.0] * 10, cores=2, current_workers=2, current_threads=4)
    assert advice.concurrency == 10
    assert not advice.far_off


def test_the_advice_has_bounds() -> None:
    assert advise([1e9], 1, 0, 1).threads == MAX_THREADS
    assert advise([], 1, 0, 1).threads == 1


@contextlib.contextmanager
def _served_over_a_socket_pair(sizing: SizingObserver) -> Iterator[Callable[[int], None]]:
    """A `Connection` serving hello-world over a socket pair, `sizing` sampling it."""

    def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    state = serving_state(hello)
    state.sizing = sizing
    with connection_pair(state) as (connection, client):

        def serve(count: int) -> None:
            for _ in range(count):
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert connection.collect()
                assert connection.serve()
                assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")

        yield serve


def test_requests_are_sampled_by_time_not_by_count() -> None:
    """A sample costs two system calls: however many requests are served, the first one
    begun after each `SAMPLE_INTERVAL` is measured, and no other."""
    sizing = SizingObserver(current_workers=0, current_threads=1, cores=2)
    with _served_over_a_socket_pair(sizing) as serve:
        sizing.next_sample = time.monotonic() + 3600
        serve(50)
        assert sizing.samples == 0
        sizing.next_sample = 0.0
        before = time.monotonic()
        serve(1)
        assert sizing.samples == 1
        after = time.monotonic()
        assert before + SAMPLE_INTERVAL <= sizing.next_sample <= after + SAMPLE_INTERVAL
        sizing.next_sample = time.monotonic() + 3600
        serve(20)
        assert sizing.samples == 1
